package nftrules_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"spip/pkg/socket"
	"spip/pkg/test/netns"
)

// serveTransparentBanner is another TPROXY user of the host (HAProxy, Envoy, Squid): a
// transparent listener, without spip's mark, on a port spip excludes.
func serveTransparentBanner(t *testing.T, ns string, port int, banner string) {
	t.Helper()
	var ln net.Listener
	if err := netns.In(ns, func() error {
		fd, err := socket.Listen(netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(port)))
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), "neighbour")
		defer f.Close()
		if err := setTransparent(fd); err != nil {
			return err
		}
		ln, err = net.FileListener(f)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, banner)
			c.Close()
		}
	}()
}

// TestTransparentNeighbour: spip's table must touch only spip's own socket and the captured
// ports. A transparent listener of another program on an excluded port keeps answering, behind
// the common `ct state invalid drop`, in both modes: before, tproxy mode's notrack_out untracked
// every transparent socket's replies, conntrack then found the client's ACK invalid, and the
// client timed out.
func TestTransparentNeighbour(t *testing.T) {
	netns.Require(t, "nft", "ip", "conntrack")
	for _, c := range []struct {
		name, mode string
		mark       bool // spip.socket's Mark=; false is a socket an older package started
	}{{"tproxy", "tproxy", true}, {"tproxy-unmarked-socket", "tproxy", false}, {"redirect", "redirect", false}} {
		mode := c.mode
		t.Run(c.name, func(t *testing.T) {
			p := netns.NewPair(t, "nbr-"+c.name[:5]+map[bool]string{true: "m", false: "u"}[c.mark])
			cfgPath := filepath.Join(t.TempDir(), "spip.toml")
			cfg := fmt.Sprintf("[capture]\nmode = %q\nexclude_ports = [\"22\", \"5001\"]\nexclude_sshd = false\n", mode)
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			recs := startSensorMark(t, p.Sensor, 12345, mode == "tproxy", c.mark)
			serveTransparentBanner(t, p.Sensor, 5001, "neighbour-5001")
			const fw = "table inet fw { chain input { type filter hook input priority filter; policy accept; ct state invalid drop; }; }"
			if out, err := netns.Exec(p.Sensor, "nft", fw); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if out, err := spip(t, p.Sensor, "nft", "--config", cfgPath, "--load"); err != nil {
				t.Fatalf("load: %v\n%s", err, out)
			}
			for _, dst := range []netip.Addr{netns.SensorV4, netns.SensorV6} {
				if got := banner(t, p.Client, netip.AddrPortFrom(dst, 5001)); got != "neighbour-5001" {
					t.Errorf("%s: the transparent neighbour on an excluded port answered %q, want its banner", netip.AddrPortFrom(dst, 5001), got)
				}
				// spip still records a captured port behind the same firewall.
				to := netip.AddrPortFrom(dst, 8080)
				payload := fmt.Sprintf("%s behind invalid-drop %s", mode, to)
				if err := dialFrom(p.Client, uint16(42000+len(payload)%100), to, payload); err != nil {
					t.Errorf("%s: %v", to, err)
					continue
				}
				if rec, ok := recs.wait(t, payload); !ok || rec.Destination.Port() != 8080 {
					t.Errorf("%s: not recorded (%v) or wrong destination %s", to, ok, rec.Destination)
				}
			}
		})
	}
}
