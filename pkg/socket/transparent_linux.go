package socket

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// SetTransparent sets IP_TRANSPARENT on a listening socket, as spip.socket's Transparent=yes
// has PID 1 do: the tproxy rules only hand connections to a transparent listener, and every
// accepted socket inherits the flag. It needs CAP_NET_ADMIN.
func SetTransparent(fd int) error {
	level, opt := unix.SOL_IP, unix.IP_TRANSPARENT
	if sa, err := unix.Getsockname(fd); err == nil {
		if _, ok := sa.(*unix.SockaddrInet6); ok {
			level, opt = unix.SOL_IPV6, unix.IPV6_TRANSPARENT // one flag, shared by both families
		}
	}
	if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
		return fmt.Errorf("setting IP_TRANSPARENT (needs CAP_NET_ADMIN; under systemd, spip.socket's Transparent=yes sets it): %w", err)
	}
	return nil
}

// Transparent reports whether IP_TRANSPARENT is set on fd; reading it needs no privilege.
func Transparent(fd int) (bool, error) {
	v, err := unix.GetsockoptInt(fd, unix.SOL_IP, unix.IP_TRANSPARENT)
	if err != nil {
		return false, fmt.Errorf("reading IP_TRANSPARENT: %w", err)
	}
	return v != 0, nil
}

// Mark returns the socket's SO_MARK (spip.socket's Mark=); reading it needs no privilege.
func Mark(fd int) (uint32, error) {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK)
	if err != nil {
		return 0, fmt.Errorf("reading SO_MARK: %w", err)
	}
	return uint32(v), nil
}
