package sd

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// MaxFDsPerMessage is how many descriptors one notify datagram can carry (the kernel's SCM_MAX_FD).
const MaxFDsPerMessage = 253

// sendTimeout bounds each datagram to PID 1: a stuck manager must not hold a stop forever.
const sendTimeout = 5 * time.Second

// ErrNoNotifySocket says spip does not run under systemd: there is no store to use.
var ErrNoNotifySocket = errors.New("sd_notify: NOTIFY_SOCKET is not set")

// notifier is an unconnected datagram socket to NOTIFY_SOCKET. Unconnected and autobound:
// a connected one cannot carry ancillary data through Go's WriteMsgUnix, and PID 1 answers
// nothing, so the socket needs no name of its own.
type notifier struct {
	fd   int
	addr unix.Sockaddr
}

func newNotifier() (*notifier, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil, ErrNoNotifySocket
	}
	if path[0] != '/' && path[0] != '@' {
		return nil, fmt.Errorf("sd_notify: NOTIFY_SOCKET %q is not a path or an abstract name", path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sd_notify: socket: %w", err)
	}
	tv := unix.NsecToTimeval(sendTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sd_notify: SO_SNDTIMEO: %w", err)
	}
	return &notifier{fd: fd, addr: &unix.SockaddrUnix{Name: path}}, nil
}

func (n *notifier) close() { unix.Close(n.fd) }

func (n *notifier) send(state string, fds []int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(n.fd, []byte(state), oob, n.addr, unix.MSG_NOSIGNAL); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// barrier waits until PID 1 has handled every message sent before it (sd_notify_barrier(3)):
// a process that exits right after sending could otherwise have its messages dropped, since
// PID 1 no longer finds the sender's unit.
func (n *notifier) barrier(timeout time.Duration) error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("sd_notify barrier: %w", err)
	}
	defer unix.Close(p[0])
	err := n.send("BARRIER=1", p[1:])
	unix.Close(p[1])
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("sd_notify barrier: PID 1 did not answer within %v", timeout)
		}
		fds := []unix.PollFd{{Fd: int32(p[0]), Events: 0}}
		k, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sd_notify barrier: poll: %w", err)
		}
		if k > 0 && fds[0].Revents&unix.POLLHUP != 0 {
			return nil
		}
	}
}

// Store hands fds to PID 1's file descriptor store under name (FDSTORE=1, FDNAME=), at most
// MaxFDsPerMessage to a message, and waits until PID 1 has taken them. It returns how many it
// sent; on an error those are already in the store (Remove takes them out). The caller keeps
// its own copies and closes them.
func Store(name string, fds []int) (int, error) {
	n, err := newNotifier()
	if err != nil {
		return 0, err
	}
	defer n.close()
	sent := 0
	for sent < len(fds) {
		batch := fds[sent:min(len(fds), sent+MaxFDsPerMessage)]
		if err := n.send("FDSTORE=1\nFDNAME="+name, batch); err != nil {
			return sent, fmt.Errorf("storing %d descriptors as %s: %w", len(batch), name, err)
		}
		sent += len(batch)
	}
	if err := n.barrier(sendTimeout); err != nil {
		return sent, err
	}
	return sent, nil
}

// Remove empties the store of every descriptor named name (FDSTOREREMOVE=1) and waits until
// PID 1 has done it. While PID 1 holds a copy, closing a connection sends the peer nothing.
func Remove(names ...string) error {
	n, err := newNotifier()
	if err != nil {
		return err
	}
	defer n.close()
	for _, name := range names {
		if err := n.send("FDSTOREREMOVE=1\nFDNAME="+name, nil); err != nil {
			return fmt.Errorf("removing %s from the store: %w", name, err)
		}
	}
	return n.barrier(sendTimeout)
}
