package journald

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxBatch is the most entries one WriteBatch hands the kernel in one system call.
const MaxBatch = 128

// batcher holds sendmmsg's message headers, made once per writer: a batch allocates nothing.
type batcher struct {
	raw  syscall.RawConn
	path string
	name unix.RawSockaddrUnix
	nlen uint32
	hdrs [MaxBatch]unix.Mmsghdr
	iovs [MaxBatch]unix.Iovec
	// connected: the socket is connected to journald's, so a datagram names no address and
	// the kernel looks no path up per entry (13% of spip's CPU when every send named it).
	connected bool
}

// connect connects the socket to journald's, or leaves it unconnected (each header names the
// socket) when journald is not there: the send then fails with the kernel's own error.
func (b *batcher) connect() {
	var err error
	if cerr := b.raw.Control(func(fd uintptr) {
		err = unix.Connect(int(fd), &unix.SockaddrUnix{Name: b.path})
	}); cerr != nil {
		err = cerr
	}
	b.connected = err == nil
	for i := range b.hdrs {
		if b.connected {
			b.hdrs[i].Hdr.Name, b.hdrs[i].Hdr.Namelen = nil, 0
		} else {
			b.hdrs[i].Hdr.Name, b.hdrs[i].Hdr.Namelen = (*byte)(unsafe.Pointer(&b.name)), b.nlen
		}
	}
}

func newBatcher(conn interface {
	SyscallConn() (syscall.RawConn, error)
}, path string) (*batcher, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batcher{raw: raw, path: path}
	if len(path) >= len(b.name.Path) {
		return nil, fmt.Errorf("journald: socket path too long: %q", path)
	}
	b.name.Family = unix.AF_UNIX
	for i := 0; i < len(path); i++ {
		b.name.Path[i] = int8(path[i])
	}
	b.nlen = uint32(unsafe.Offsetof(b.name.Path)) + uint32(len(path)) + 1
	for i := range b.hdrs {
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.Iovlen = 1
	}
	b.connect()
	return b, nil
}

// WriteBatch sends entries, each one datagram, in order, with one sendmmsg per MaxBatch of them.
// It returns how many were sent. On an error entries[sent] is the entry that failed: ErrTimeout
// when journald took nothing for the writer's timeout (the deadline moves on whenever journald
// takes entries: a journald that reads slowly is slow, not stalled), another error when the
// kernel refused it (the caller may skip it and go on).
func (w *Writer) WriteBatch(entries [][]byte) (int, error) {
	if w.timeout > 0 {
		_ = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	b := w.batch
	if !b.connected {
		b.connect() // journald may have come up since
	}
	sent, retried := 0, false
	for sent < len(entries) {
		chunk := entries[sent:min(len(entries), sent+MaxBatch)]
		for i, e := range chunk {
			b.iovs[i].Base = unsafe.SliceData(e)
			b.iovs[i].SetLen(len(e))
		}
		var n uintptr
		var errno syscall.Errno
		err := b.raw.Write(func(fd uintptr) bool {
			// Raw: the socket is non-blocking, so the call never waits, and the runtime is not
			// told of a system call it would hand the P off from (sysmon, polling every 20 µs
			// to retake it, was a fifth of spip's CPU in the profile).
			n, _, errno = unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(chunk)), 0, 0, 0)
			return errno != unix.EAGAIN
		})
		for i := range chunk {
			b.iovs[i].Base = nil // keep no entry alive past the call
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return sent, ErrTimeout
			}
			return sent, fmt.Errorf("journald: send: %w", err)
		}
		if (errno == unix.ECONNREFUSED || errno == unix.ENOTCONN) && b.connected && !retried {
			// journald's socket was made anew (systemd-journald.socket restarted, or a journald
			// that binds its own): another inode. Connect to it and resend.
			retried = true
			b.connect()
			continue
		}
		if errno != 0 {
			return sent, fmt.Errorf("journald: send: %w", errno)
		}
		if n == 0 {
			return sent, errors.New("journald: send: no entry taken")
		}
		sent += int(n)
		retried = false
		if w.timeout > 0 && sent < len(entries) {
			_ = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
		}
	}
	return sent, nil
}
