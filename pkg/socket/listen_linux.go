package socket

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Backlog is the listen queue asked for; the kernel caps it at net.core.somaxconn. It is what
// holds new connections while the service restarts.
const Backlog = 4096

// Listen opens a non-blocking listening TCP socket on addr for running without systemd. An
// IPv6 wildcard ("[::]:PORT") is dual-stack and serves IPv4 clients too.
func Listen(addr netip.AddrPort) (int, error) {
	fd, err := bound(addr, unix.SOCK_STREAM, "listen", func(fd int) (string, error) {
		return "SO_REUSEADDR", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	if err != nil {
		return -1, err
	}
	if err := unix.Listen(fd, Backlog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen %s: listen: %w", addr, err)
	}
	return fd, nil
}

// bound opens a non-blocking socket of type typ bound to addr, dual-stack when addr is an IPv6
// address; setup runs before the bind and names its step for the error. Errors start with what.
func bound(addr netip.AddrPort, typ int, what string, setup func(fd int) (string, error)) (int, error) {
	family := unix.AF_INET6
	if addr.Addr().Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("%s %s: socket: %w", what, addr, err)
	}
	fail := func(step string, err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s %s: %s: %w", what, addr, step, err)
	}
	if step, err := setup(fd); err != nil {
		return fail(step, err)
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fail("IPV6_V6ONLY", err)
		}
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	return fd, nil
}

// LocalPort returns the port a listening socket is bound to.
func LocalPort(fd int) (uint16, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("getsockname: %w", err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return uint16(a.Port), nil
	case *unix.SockaddrInet6:
		return uint16(a.Port), nil
	}
	return 0, fmt.Errorf("listening socket is not an inet socket")
}

// IsListener reports whether fd is a listening TCP socket, so a wrongly passed fd is refused
// at start-up rather than failing with the first accept.
func IsListener(fd int) bool {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_STREAM {
		return false
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	return err == nil && acc == 1
}
