package hostcheck

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// SSHD is how sshd is set up to run on this host, read from systemd's unit files: whether it is
// enabled, as a service (it binds its own ports) or from ssh.socket (PID 1 binds them), and
// ssh.socket's ports. Debian names the units ssh.service and ssh.socket (sshd.service is an
// alias of ssh.service).
type SSHD struct {
	ServiceEnabled bool
	SocketEnabled  bool
	// SocketPorts are ssh.socket's ListenStream= ports, drop-ins applied: when PID 1 owns the
	// listener, these are sshd's ports.
	SocketPorts []uint16
}

// Enabled reports whether sshd starts at boot by either way.
func (s SSHD) Enabled() bool { return s.ServiceEnabled || s.SocketEnabled }

// unitDirs are systemd's unit search path on Debian, most important first.
var unitDirs = []string{"etc/systemd/system", "run/systemd/system", "lib/systemd/system", "usr/lib/systemd/system"}

// ReadSSHD reads the units under root ("/" on a host).
func ReadSSHD(root string) SSHD {
	var s SSHD
	wanted := func(target, unit string) bool {
		for _, d := range unitDirs[:2] {
			if _, err := os.Lstat(filepath.Join(root, d, target+".wants", unit)); err == nil {
				return true
			}
		}
		return false
	}
	s.ServiceEnabled = wanted("multi-user.target", "ssh.service") || wanted("multi-user.target", "sshd.service")
	s.SocketEnabled = wanted("sockets.target", "ssh.socket")
	s.SocketPorts = socketPorts(root, "ssh.socket")
	return s
}

// socketPorts reads a socket unit's ListenStream= ports: the first unit file found on the
// search path, then its drop-ins in name order; an empty ListenStream= clears the list.
func socketPorts(root, unit string) []uint16 {
	var files []string
	for _, d := range unitDirs {
		p := filepath.Join(root, d, unit)
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
			break
		}
	}
	byName := map[string]string{}
	for i := len(unitDirs) - 1; i >= 0; i-- { // a drop-in in /etc overrides one of the same name in /lib
		ds, _ := filepath.Glob(filepath.Join(root, unitDirs[i], unit+".d", "*.conf"))
		for _, p := range ds {
			byName[filepath.Base(p)] = p
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, byName[n])
	}
	var ports []uint16
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		section := ""
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(line, "[") {
				section = line
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok || section != "[Socket]" || strings.TrimSpace(k) != "ListenStream" {
				continue
			}
			v = strings.TrimSpace(v)
			if v == "" {
				ports = nil
				continue
			}
			if port, ok := listenPort(v); ok {
				ports = append(ports, port)
			}
		}
		f.Close()
	}
	return ports
}

// listenPort reads the port of a ListenStream= value: "22", "[::]:2222", "0.0.0.0:2222".
// A path (a Unix socket) has none.
func listenPort(v string) (uint16, bool) {
	if n, err := strconv.ParseUint(v, 10, 16); err == nil && n > 0 {
		return uint16(n), true
	}
	if ap, err := netip.ParseAddrPort(v); err == nil && ap.Port() > 0 {
		return ap.Port(), true
	}
	return 0, false
}
