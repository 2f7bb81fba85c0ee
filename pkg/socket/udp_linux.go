package socket

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDPRecvBuffer is the receive buffer spip asks for on a UDP socket it opens itself (under
// systemd, spip-udp.socket's ReceiveBuffer= sets it): a burst of probes waits there while the
// event loop is busy, and what does not fit is counted (SO_RXQ_OVFL), never silently lost.
const UDPRecvBuffer = 8 << 20

// ListenUDP opens a non-blocking UDP socket on addr for running without systemd; an IPv6
// wildcard is dual-stack. PrepareUDP still has to be called on it.
func ListenUDP(addr netip.AddrPort) (int, error) {
	return bound(addr, unix.SOCK_DGRAM, "listen udp", func(fd int) (string, error) {
		// The kernel caps SO_RCVBUF at net.core.rmem_max; a smaller buffer still works.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, UDPRecvBuffer)
		return "", nil
	})
}

// IsDatagram reports whether fd is a UDP (datagram) inet socket.
func IsDatagram(fd int) bool {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_DGRAM {
		return false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	switch sa.(type) {
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
		return true
	}
	return false
}

// PrepareUDP asks the kernel for what the sensor needs with every datagram: its original
// destination (IP_ORIGDSTADDR, also for IPv4 datagrams on a dual-stack socket, and
// IPV6_ORIGDSTADDR) and the count of datagrams dropped for a full receive buffer (SO_RXQ_OVFL).
// None of it needs a privilege, so it works on the socket systemd passes.
func PrepareUDP(fd int) error {
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("udp socket: non-blocking: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_RECVORIGDSTADDR, 1); err != nil {
		return fmt.Errorf("udp socket: IP_RECVORIGDSTADDR: %w", err)
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		if _, ok := sa.(*unix.SockaddrInet6); ok {
			if err := unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_RECVORIGDSTADDR, 1); err != nil {
				return fmt.Errorf("udp socket: IPV6_RECVORIGDSTADDR: %w", err)
			}
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); err != nil {
		return fmt.Errorf("udp socket: SO_RXQ_OVFL: %w", err)
	}
	return nil
}

// ControlSpace is room enough for the control messages PrepareUDP asks for.
var ControlSpace = unix.CmsgSpace(unix.SizeofSockaddrInet6) + unix.CmsgSpace(4)

// ParseControl reads a datagram's control messages: its original destination (the zero value
// when the kernel gave none) and the receive-buffer drop counter (ok is false when absent). The
// counter is the socket's running total, not a delta.
func ParseControl(oob []byte) (dst netip.AddrPort, drops uint32, dropsOK bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if uint64(h.Len) < unix.SizeofCmsghdr || uint64(h.Len) > uint64(len(oob)) {
			return
		}
		data := oob[unix.CmsgLen(0):h.Len]
		switch {
		case h.Level == unix.SOL_IP && h.Type == unix.IP_ORIGDSTADDR && len(data) >= unix.SizeofSockaddrInet4:
			// struct sockaddr_in: family, port (network order), address.
			dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(data[4:8])), binary.BigEndian.Uint16(data[2:4]))
		case h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_ORIGDSTADDR && len(data) >= unix.SizeofSockaddrInet6:
			// struct sockaddr_in6: family, port, flowinfo, address, scope id.
			a := netip.AddrFrom16([16]byte(data[8:24])).Unmap()
			dst = netip.AddrPortFrom(a, binary.BigEndian.Uint16(data[2:4]))
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && len(data) >= 4:
			drops, dropsOK = binary.NativeEndian.Uint32(data[:4]), true
		}
		next := unix.CmsgSpace(int(h.Len) - unix.SizeofCmsghdr)
		if next >= len(oob) {
			return
		}
		oob = oob[next:]
	}
	return
}

func unsafePtr(b *byte) unsafe.Pointer { return unsafe.Pointer(b) }
