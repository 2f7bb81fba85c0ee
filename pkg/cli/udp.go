package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"spip/pkg/config"
	"spip/pkg/host/hostcheck"
	"spip/pkg/socket"
)

// udpSocket returns the UDP socket to record flows from, or -1: the one spip-udp.socket passed,
// or, when spip opened its own TCP listener and capture.udp is on, one it opens on
// listen.address. A missing socket under systemd while capture.udp is on is a warning, never a
// reason to stop recording TCP.
func udpSocket(cfg *config.Config, passed *os.File, underSystemd bool) (fd int, how string, warnings []string, err error) {
	if passed != nil {
		fd = int(passed.Fd())
		if !socket.IsDatagram(fd) {
			passed.Close()
			return -1, "", []string{"the socket named spip-udp is not a UDP socket (check ListenDatagram= in spip-udp.socket): recording TCP only"}, nil
		}
		if err := socket.PrepareUDP(fd); err != nil {
			passed.Close()
			return -1, "", []string{err.Error() + ": recording TCP only"}, nil
		}
		how = "the socket passed by systemd"
		if port, err := socket.LocalPort(fd); err == nil {
			how = fmt.Sprintf("port %d (spip-udp.socket)", port)
			if want := cfg.ListenAddr().Port(); port != want {
				warnings = append(warnings, fmt.Sprintf("spip-udp.socket listens on port %d but listen.address says %d: the UDP capture targets %d", port, want, want))
			}
		}
		if on, err := socket.Transparent(fd); err != nil || !on {
			warnings = append(warnings, "the UDP socket systemd passed is not transparent (set Transparent=yes in spip-udp.socket): captured datagrams cannot reach it")
		}
		if !cfg.Capture.UDP {
			how += ", capture.udp off: direct datagrams only"
		}
		return fd, how, warnings, nil
	}
	if !cfg.Capture.UDP {
		return -1, "", nil, nil
	}
	if underSystemd {
		return -1, "", []string{"capture.udp is on but systemd passed no UDP socket: the ruleset drops captured datagrams unrecorded; run systemctl enable --now spip-udp.socket, then systemctl restart spip.service (TCP is recorded as before)"}, nil
	}
	fd, err = socket.ListenUDP(cfg.ListenAddr())
	if err != nil {
		return -1, "", nil, err
	}
	how = cfg.Listen.Address
	if err := socket.SetTransparent(fd); err != nil {
		if !errors.Is(err, unix.EPERM) {
			unix.Close(fd)
			return -1, "", nil, err
		}
		warnings = append(warnings, fmt.Sprintf("udp: %v: recording datagrams sent to the port directly; captured ones need a transparent socket", err))
		how += " (not transparent)"
	}
	if err := socket.PrepareUDP(fd); err != nil {
		unix.Close(fd)
		return -1, "", nil, err
	}
	return fd, how, warnings, nil
}

func closeUDP(fd int, passed *os.File) {
	if passed != nil {
		passed.Close()
		return
	}
	unix.Close(fd)
}

// udpNotes lists, when capture.udp is on, every UDP socket bound to a port that is not
// excluded. They are notes, not warnings: the capture leaves a datagram that such a socket would
// take to it (the ruleset's `socket mark != 0x5350 return`), so nothing is cut off while the
// service runs; but while it is stopped or restarting its port is spip's.
func udpNotes(cfg *config.Config) []string {
	if !cfg.Capture.UDP {
		return nil
	}
	scan, err := hostcheck.UDPListeners(hostcheck.Proc)
	if err != nil {
		return []string{fmt.Sprintf("cannot read the UDP sockets: %v", err)}
	}
	ap := cfg.ListenAddr()
	ipv4Only := ap.Addr() == netip.IPv4Unspecified()
	excluded := cfg.ExcludedUDPPorts()
	var out []string
	ls := scan.Listeners
	for i := 0; i < len(ls); {
		port := ls[i].Port
		var who []string
		for ; i < len(ls) && ls[i].Port == port; i++ {
			l := ls[i]
			if l.Loopback() || (ipv4Only && l.Addr.Is6() && !l.Addr.IsUnspecified() && !l.Addr.Is4In6()) {
				continue
			}
			owner := strings.Join(l.Commands, ",")
			if owner == "" {
				owner = "?"
			}
			who = append(who, fmt.Sprintf("%s on %s", owner, l.Addr))
		}
		if len(who) == 0 || port == ap.Port() || udpExcluded(excluded, port) {
			continue
		}
		out = append(out, fmt.Sprintf("udp port %d is not excluded (%s): the UDP capture leaves its datagrams to this socket while it is bound, "+
			"but takes them while it is not; if it is a service, add it to capture.exclude_udp_ports", port, strings.Join(who, ", ")))
	}
	return out
}

func udpExcluded(rs []config.PortRange, port uint16) bool {
	for _, r := range rs {
		if r.Contains(port) {
			return true
		}
	}
	return false
}
