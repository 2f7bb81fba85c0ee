package socket

import (
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzParseControl: whatever the control buffer holds, ParseControl returns without panicking.
func FuzzParseControl(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, unix.SizeofCmsghdr))
	v4 := make([]byte, unix.CmsgSpace(unix.SizeofSockaddrInet4))
	h := (*unix.Cmsghdr)(unsafePtr(&v4[0]))
	h.Level, h.Type = unix.SOL_IP, unix.IP_ORIGDSTADDR
	h.SetLen(unix.CmsgLen(unix.SizeofSockaddrInet4))
	copy(v4[unix.CmsgLen(0):], []byte{2, 0, 0, 53, 198, 51, 100, 2})
	f.Add(v4)
	f.Fuzz(func(t *testing.T, oob []byte) {
		b := make([]byte, len(oob)+8) // aligned like a kernel buffer
		copy(b, oob)
		ParseControl(b[:len(oob)])
	})
}

func TestParseControlOrigDst(t *testing.T) {
	v4 := make([]byte, unix.CmsgSpace(unix.SizeofSockaddrInet4)+unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafePtr(&v4[0]))
	h.Level, h.Type = unix.SOL_IP, unix.IP_ORIGDSTADDR
	h.SetLen(unix.CmsgLen(unix.SizeofSockaddrInet4))
	copy(v4[unix.CmsgLen(0):], []byte{2, 0, 0, 53, 198, 51, 100, 2})
	o := unix.CmsgSpace(unix.SizeofSockaddrInet4)
	h2 := (*unix.Cmsghdr)(unsafePtr(&v4[o]))
	h2.Level, h2.Type = unix.SOL_SOCKET, unix.SO_RXQ_OVFL
	h2.SetLen(unix.CmsgLen(4))
	v4[o+unix.CmsgLen(0)] = 7
	dst, drops, ok := ParseControl(v4)
	if dst.String() != "198.51.100.2:53" || drops != 7 || !ok {
		t.Errorf("ParseControl = %v, %d, %v", dst, drops, ok)
	}
}
