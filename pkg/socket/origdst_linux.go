package socket

import (
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Neither constant is in x/sys/unix: SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h) share the value 80.
const (
	soOriginalDst     = 80
	ip6tSoOriginalDst = 80
)

// Redirected returns the original destination of the accepted socket fd from the kernel's NAT
// record. peer decides the family: IPv4 peers (also v4-mapped ones on a dual-stack socket) are
// looked up at SOL_IP, IPv6 peers at SOL_IPV6.
func Redirected(fd int, peer netip.Addr) (netip.AddrPort, error) {
	if peer.Unmap().Is4() {
		var sa unix.RawSockaddrInet4
		if err := getsockopt(fd, unix.SOL_IP, soOriginalDst, unsafe.Pointer(&sa), unix.SizeofSockaddrInet4); err != nil {
			return netip.AddrPort{}, err
		}
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), netPort(&sa.Port)), nil
	}
	var sa unix.RawSockaddrInet6
	if err := getsockopt(fd, unix.SOL_IPV6, ip6tSoOriginalDst, unsafe.Pointer(&sa), unix.SizeofSockaddrInet6); err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), netPort(&sa.Port)), nil
}

// netPort reads a port stored in network byte order.
func netPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// getsockopt is a raw system call: it never blocks, and the sensor makes one per connection.
func getsockopt(fd, level, opt int, p unsafe.Pointer, size uint32) error {
	l := size
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	switch {
	case e == unix.ENOENT, e == unix.ENOPROTOOPT:
		// ENOPROTOOPT: conntrack is not loaded at all, so nothing was NATed either.
		return ErrNotRedirected
	case e != 0:
		return fmt.Errorf("origdst: getsockopt: %w", e)
	case l != size:
		return fmt.Errorf("origdst: getsockopt returned %d bytes, want %d", l, size)
	}
	return nil
}

// Local returns the socket's local address: the original destination when nothing was NATed
// (TPROXY, or a direct connection).
func Local(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("origdst: getsockname: %w", err)
	}
	ap := FromSockaddr(sa)
	if !ap.IsValid() {
		return netip.AddrPort{}, errors.New("origdst: getsockname: not an inet socket")
	}
	return ap, nil
}

// FromSockaddr converts an inet sockaddr; anything else gives the zero AddrPort.
func FromSockaddr(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}
