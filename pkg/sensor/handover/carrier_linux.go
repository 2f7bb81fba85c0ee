package handover

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// perMessage is how many descriptors one datagram carries (the kernel's SCM_MAX_FD).
const perMessage = 253

// Pack puts the connections into one carrier: a datagram socket whose receive queue holds
// them in flight, 253 to a message, so PID 1's store holds one descriptor instead of one per
// connection. (systemd 252 compares each descriptor it is given with every one it already
// stores: storing connections one by one grew with the square of their number, over 5 s for
// 1,000 on a busy machine.) It returns the carrier and how many of fds, from the first, it
// holds; the caller keeps its own copies and closes them. The carrier's own sending end is
// closed: nothing can be added later, and the queue stays readable.
func Pack(fds []int) (carrier, n int, err error) {
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("hand-over carrier: socketpair: %w", err)
	}
	defer unix.Close(p[0])
	for n < len(fds) {
		batch := fds[n:min(len(fds), n+perMessage)]
		if err := unix.Sendmsg(p[0], []byte{1}, unix.UnixRights(batch...), nil, unix.MSG_NOSIGNAL); err != nil {
			if errors.Is(err, unix.EAGAIN) {
				// The queue is full (net.unix.max_dgram_qlen): the rest stay with the caller.
				return p[1], n, nil
			}
			unix.Close(p[1])
			return -1, 0, fmt.Errorf("hand-over carrier: %w", err)
		}
		n += len(batch)
	}
	return p[1], n, nil
}

// Unpack takes every connection out of a carrier (non-blocking: it stops when the queue is
// empty), at most limit of them; the rest are closed with the carrier.
func Unpack(carrier, limit int) ([]int, error) {
	if err := unix.SetNonblock(carrier, true); err != nil {
		return nil, fmt.Errorf("hand-over carrier: %w", err)
	}
	var fds []int
	buf := make([]byte, 16)
	oob := make([]byte, unix.CmsgSpace(perMessage*4))
	for len(fds) < limit {
		_, oobn, flags, _, err := unix.Recvmsg(carrier, buf, oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return fds, nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fds, fmt.Errorf("hand-over carrier: %w", err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return fds, fmt.Errorf("hand-over carrier: %w", err)
		}
		for _, m := range msgs {
			rights, err := unix.ParseUnixRights(&m)
			if err != nil {
				continue
			}
			for _, fd := range rights {
				if len(fds) < limit {
					fds = append(fds, fd)
				} else {
					unix.Close(fd)
				}
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return fds, errors.New("hand-over carrier: descriptors cut off")
		}
	}
	return fds, nil
}
