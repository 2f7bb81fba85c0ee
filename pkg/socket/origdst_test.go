package socket_test

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/socket"
	"spip/pkg/test/netns"
)

func TestFromSockaddr(t *testing.T) {
	tests := []struct {
		sa   unix.Sockaddr
		want string
	}{
		{&unix.SockaddrInet4{Addr: [4]byte{198, 51, 100, 2}, Port: 80}, "198.51.100.2:80"},
		{&unix.SockaddrInet6{Addr: netip.MustParseAddr("fd00:5be::2").As16(), Port: 65535}, "[fd00:5be::2]:65535"},
		// Mapped stays mapped here; callers unmap where they print.
		{&unix.SockaddrInet6{Addr: netip.MustParseAddr("::ffff:198.51.100.1").As16(), Port: 1}, "[::ffff:198.51.100.1]:1"},
		{&unix.SockaddrUnix{Name: "/run/x"}, "invalid AddrPort"},
		{nil, "invalid AddrPort"},
	}
	for _, tc := range tests {
		if got := socket.FromSockaddr(tc.sa).String(); got != tc.want {
			t.Errorf("FromSockaddr(%#v) = %s, want %s", tc.sa, got, tc.want)
		}
	}
}

// accepted returns the fd of the server side of a fresh loopback connection to ln.
func accepted(t testing.TB, ln net.Listener, dialFrom func() (net.Conn, error)) (int, net.Conn) {
	t.Helper()
	cc := make(chan net.Conn, 1)
	errc := make(chan error, 1)
	go func() {
		c, err := dialFrom()
		if err != nil {
			errc <- err
			return
		}
		cc <- c
	}()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Second))
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var c net.Conn
	select {
	case c = <-cc:
	case err := <-errc:
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f, err := s.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd()), c
}

// Without a redirect the kernel has no NAT record; the local address is the destination.
func TestNotRedirected(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Skip(err)
			}
			defer ln.Close()
			fd, c := accepted(t, ln, func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) })
			local, err := socket.Local(fd)
			if err != nil {
				t.Fatal(err)
			}
			if want := ln.Addr().(*net.TCPAddr).AddrPort(); local != want {
				t.Errorf("Local = %s, want %s", local, want)
			}
			peer := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr()
			got, err := socket.Redirected(fd, peer)
			// With conntrack active in this namespace the lookup finds the untranslated tuple.
			if err != nil && !errors.Is(err, socket.ErrNotRedirected) {
				t.Fatalf("Redirected: %v", err)
			}
			if err == nil && got != local {
				t.Errorf("Redirected = %s on a connection that was not redirected to %s", got, local)
			}
		})
	}
}

func TestNotASocket(t *testing.T) {
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := socket.Redirected(p[0], netip.MustParseAddr("198.51.100.1")); err == nil || errors.Is(err, socket.ErrNotRedirected) {
		t.Errorf("Redirected on a pipe: %v, want a real error", err)
	}
	if _, err := socket.Local(p[0]); err == nil {
		t.Error("Local on a pipe: no error")
	}
}

// Through a real nftables redirect, both families (IPv4 also v4-mapped on a dual-stack socket)
// report the port the client dialled, not the listener's.
func TestRedirected(t *testing.T) {
	netns.Require(t, "nft", "ip")
	p := netns.NewPair(t, "origdst")
	nft := exec.Command("ip", "netns", "exec", p.Sensor, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(`table inet spip {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type != local return
		meta l4proto tcp redirect to :12345
	}
}`)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	var ln net.Listener
	if err := netns.In(p.Sensor, func() (err error) { ln, err = net.Listen("tcp", "[::]:12345"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, dst := range []netip.AddrPort{
		netip.AddrPortFrom(netns.SensorV4, 23),
		netip.AddrPortFrom(netns.SensorV4, 65535),
		netip.AddrPortFrom(netns.SensorV6, 443),
		netip.AddrPortFrom(netns.SensorV6, 1),
	} {
		t.Run(dst.String(), func(t *testing.T) {
			fd, c := accepted(t, ln, func() (conn net.Conn, err error) {
				err = netns.In(p.Client, func() error {
					conn, err = net.DialTimeout("tcp", dst.String(), 20*time.Second)
					return err
				})
				return conn, err
			})
			peer := c.LocalAddr().(*net.TCPAddr).AddrPort()
			// The dual-stack listener sees IPv4 peers v4-mapped: the lookup must still take SOL_IP.
			mapped := peer.Addr()
			if mapped.Is4() {
				mapped = netip.AddrFrom16(mapped.As16())
			}
			got, err := socket.Redirected(fd, mapped)
			if err != nil {
				t.Fatal(err)
			}
			if got != dst {
				t.Errorf("Redirected = %s, want %s", got, dst)
			}
			local, err := socket.Local(fd)
			if err != nil {
				t.Fatal(err)
			}
			if local.Port() != 12345 {
				t.Errorf("Local = %s, want the listener's port 12345", local)
			}
		})
	}
}
