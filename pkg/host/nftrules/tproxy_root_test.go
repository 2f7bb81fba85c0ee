package nftrules_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/host/nftrules"
	"spip/pkg/test/netns"
)

// setTransparent does what spip.socket's Transparent=yes has PID 1 do: IPV6_TRANSPARENT on the
// dual-stack listener (the flag is shared with IPv4), inherited by every accepted socket.
func setTransparent(fd int) error {
	return unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
}

// dialFrom connects from namespace ns with the client socket bound to local port sport, writes
// payload and closes.
func dialFrom(ns string, sport uint16, to netip.AddrPort, payload string) error {
	return netns.In(ns, func() error {
		d := net.Dialer{
			Timeout:   5 * time.Second,
			LocalAddr: &net.TCPAddr{Port: int(sport)},
			Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
				if err != nil {
					return err
				}
				return serr
			},
		}
		c, err := d.Dial("tcp", to.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = io.WriteString(c, payload)
		return err
	})
}

// masquerade lets the container behind the sensor reach the client network through the sensor's
// address, as Docker's and libvirt's masquerade do: replies come back to the sensor's address
// and an ephemeral port, which spip's rules must leave to conntrack.
func masquerade(t *testing.T, ns string) {
	t.Helper()
	const rules = "table ip fakemasq { chain postrouting { type nat hook postrouting priority srcnat; policy accept; ip saddr 198.51.100.128/25 oifname \"s0\" masquerade; }; }"
	if out, err := netns.Exec(ns, "nft", rules); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

const tproxyConfig = `[listen]
address = "[::]:12345"
[capture]
mode = "tproxy"
exclude_ports = ["22", "5000-5010"]
exclude_sshd = true
`

// TestTProxyInNetns loads the tproxy ruleset that `spip nft` renders and proves: captured ports
// reach spip with the original destination and the client's exact source port (also when the
// client reuses a port at once, which NAT would rewrite), spip's flows leave no conntrack entry,
// excluded ports, sshd and loopback are untouched, the sensor host's own outbound connections,
// a Docker-style DNAT and a masqueraded container keep working, also behind an administrator's
// `ct state established,related accept` firewall, and unloading leaves nothing behind.
func TestTProxyInNetns(t *testing.T) {
	netns.Require(t, "nft", "ip", "conntrack")
	p := netns.NewPair(t, "tpx")
	ctr := fakeDockerContainer(t, p)
	masquerade(t, p.Sensor)

	cfgPath := filepath.Join(t.TempDir(), "spip.toml")
	if err := os.WriteFile(cfgPath, []byte(tproxyConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	recs := startSensor(t, p.Sensor, 12345, true)
	for _, port := range []int{22, 5001, 8080} {
		serveBanner(t, p.Sensor, fmt.Sprintf("[::]:%d", port), fmt.Sprintf("real-%d", port))
	}
	startFakeSSHD(t, p.Sensor, 2222)
	serveBanner(t, ctr, "198.51.100.130:80", "container-80")
	serveBanner(t, p.Client, "[::]:8090", "client-8090")

	for i := 0; i < 2; i++ { // loading twice replaces the table
		if out, err := spip(t, p.Sensor, "nft", "--config", cfgPath, "--load"); err != nil {
			t.Fatalf("load %d: %v\n%s", i, err, out)
		}
	}
	if _, err := netns.Exec(p.Sensor, "conntrack", "-F"); err != nil {
		t.Fatal(err)
	}

	checkTProxy := func(t *testing.T, round string) {
		for _, dst := range []netip.Addr{netns.SensorV4, netns.SensorV6} {
			at := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(dst, port) }
			for port, want := range map[uint16]string{22: "real-22", 2222: "sshd-2222", 5001: "real-5001"} {
				if got := banner(t, p.Client, at(port)); got != want {
					t.Errorf("%s: got %q, want the real listener's %q", at(port), got, want)
				}
			}
			client := map[bool]netip.Addr{true: netns.ClientV4, false: netns.ClientV6}[dst.Is4()]
			// The same client port twice in a row, to different ports: NAT would rewrite the second.
			sport := uint16(map[bool]int{true: 41000, false: 41001}[dst.Is4()])
			for _, port := range []uint16{8080, 31337, 1} {
				payload := fmt.Sprintf("%s probe %s", round, at(port))
				if err := dialFrom(p.Client, sport, at(port), payload); err != nil {
					t.Errorf("%s: %v (not captured?)", at(port), err)
					continue
				}
				rec, ok := recs.wait(t, payload)
				if !ok {
					t.Errorf("%s: no record from spip", at(port))
					continue
				}
				if got := netip.AddrPortFrom(rec.Destination.Addr().Unmap(), rec.Destination.Port()); got != at(port) {
					t.Errorf("%s: record destination %s (error %q)", at(port), rec.Destination, rec.DestError)
				}
				if got, want := netip.AddrPortFrom(rec.Source.Addr().Unmap(), rec.Source.Port()), netip.AddrPortFrom(client, sport); got != want {
					t.Errorf("%s: record source %s, want exactly %s", at(port), got, want)
				}
			}
		}
		// Loopback inside the sensor namespace is never captured.
		for _, lo := range []string{"127.0.0.1", "::1"} {
			to := netip.AddrPortFrom(netip.MustParseAddr(lo), 8080)
			if got := banner(t, p.Sensor, to); got != "real-8080" {
				t.Errorf("%s from the sensor itself: got %q, want real-8080", to, got)
			}
		}
		// The sensor host's own outbound connections: the replies come to a local, non-excluded
		// port and must reach the connecting socket.
		for _, srv := range []string{"198.51.100.1", "fd00:5be::1"} {
			to := netip.AddrPortFrom(netip.MustParseAddr(srv), 8090)
			if got := banner(t, p.Sensor, to); got != "client-8090" {
				t.Errorf("outbound %s from the sensor: got %q", to, got)
			}
		}
		// Docker-style published port and a masqueraded container reaching out.
		if got := banner(t, p.Client, netip.AddrPortFrom(netns.SensorV4, 8081)); got != "container-80" {
			t.Errorf("docker-style published port: got %q, want container-80", got)
		}
		if got := banner(t, ctr, netip.MustParseAddrPort("198.51.100.1:8090")); got != "client-8090" {
			t.Errorf("masqueraded container to the client: got %q", got)
		}
	}

	t.Run("open", func(t *testing.T) { checkTProxy(t, "open") })

	// spip's flows bypassed conntrack: only their SYN's entry remains, never answered (SYN_SENT)
	// and short-lived, while the host's own outbound and masqueraded flows are tracked as always.
	out, err := netns.Exec(p.Sensor, "conntrack", "-L")
	if err != nil {
		t.Fatalf("conntrack -L: %v\n%s", err, out)
	}
	syns := 0
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.Contains(l, "sport=4100") {
			continue
		}
		syns++
		var left int
		if f := strings.Fields(l); len(f) < 4 || !strings.Contains(l, "SYN_SENT") || !strings.Contains(l, "[UNREPLIED]") {
			t.Errorf("conntrack tracked more of spip's flow than its SYN: %s", l)
		} else if _, err := fmt.Sscan(f[2], &left); err != nil || left > 2 {
			t.Errorf("spip's SYN entry has %s s left, not the policy's 2 at most: %s", f[2], l)
		}
	}
	t.Logf("%d SYN_SENT entries of spip's flows in conntrack:\n%s", syns, out)
	if !strings.Contains(string(out), "dport=8090") {
		t.Errorf("conntrack lost the host's own and masqueraded flows:\n%s", out)
	}

	// An administrator's stateful input firewall: established,related for everything tracked, and
	// the one rule spip's untracked flows need.
	const fw = "table inet fw { chain input { type filter hook input priority filter; policy drop; " +
		"ct state established,related accept; iif lo accept; tcp dport { 22, 2222, 5001, 8080 } accept; meta mark 0x5350 accept; }; }"
	if out, err := netns.Exec(p.Sensor, "nft", fw); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Run("stateful-firewall", func(t *testing.T) { checkTProxy(t, "fw") })
	if out, err := netns.Exec(p.Sensor, "nft", "delete", "table", "inet", "fw"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	for i := 0; i < 2; i++ {
		if out, err := spip(t, p.Sensor, "nft", "--unload"); err != nil {
			t.Fatalf("unload %d: %v\n%s", i, err, out)
		}
	}
	tables, err := netns.Exec(p.Sensor, "nft", "list", "tables")
	if err != nil || strings.Contains(string(tables), "inet spip") {
		t.Fatalf("tables after unload: %s %v", tables, err)
	}
	for _, fam := range []string{"-4", "-6"} {
		rules, err := netns.Exec(p.Sensor, "ip", fam, "rule", "list")
		if err != nil || strings.Contains(string(rules), "fwmark") {
			t.Errorf("ip %s rule after unload: %s %v", fam, rules, err)
		}
	}
	for _, dst := range []netip.Addr{netns.SensorV4, netns.SensorV6} {
		if got := banner(t, p.Client, netip.AddrPortFrom(dst, 8080)); got != "real-8080" {
			t.Errorf("%s:8080 after unload: got %q, want the real listener", dst, got)
		}
		if got := banner(t, p.Client, netip.AddrPortFrom(dst, 31337)); !strings.Contains(got, "refused") {
			t.Errorf("%s:31337 after unload: got %q, want connection refused", dst, got)
		}
	}
	_ = nftrules.Mark
}
