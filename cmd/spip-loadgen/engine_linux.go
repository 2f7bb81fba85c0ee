package main

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// connectTimeout: a connection not established by then counts as failed (the SYN is retried at
// 1 s and 3 s, so a sensor whose backlog overflowed shows up here).
const connectTimeout = 5 * time.Second

// pending is a connection in progress, in launch order.
type pending struct {
	fd    int
	seq   int
	start time.Time
}

// engine makes connections with non-blocking sockets on one epoll set, on one thread: the load
// generator must cost far less per connection than the sensor, or it measures itself.
type engine struct {
	o       options
	ep      int
	bySeq   []int32 // fd → seq+1 of the connection it carries, 0 when free
	fifo    []pending
	head    int
	state   []uint8
	ports   []uint16
	payload []byte
	errMsg  string
}

func (e *engine) fail(seq int, err error) {
	e.state[seq] = stFailed
	if e.errMsg == "" {
		e.errMsg = err.Error()
	}
}

// launch starts connection seq; it returns false when out of descriptors (try again later).
func (e *engine) launch(seq int, dst netip.AddrPort, now time.Time) bool {
	family := unix.AF_INET6
	var sa unix.Sockaddr
	if dst.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
			return false
		}
		e.fail(seq, fmt.Errorf("socket: %w", err))
		return true
	}
	err = unix.Connect(fd, sa)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		e.fail(seq, fmt.Errorf("connect: %w", err))
		return true
	}
	ev := unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(fd)}
	if err := unix.EpollCtl(e.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		e.fail(seq, fmt.Errorf("epoll_ctl: %w", err))
		return true
	}
	for fd >= len(e.bySeq) {
		e.bySeq = append(e.bySeq, make([]int32, len(e.bySeq)+1024)...)
	}
	e.bySeq[fd] = int32(seq + 1)
	e.fifo = append(e.fifo, pending{fd: fd, seq: seq, start: now})
	return true
}

// ready finishes the connection on fd: established → send the payload and close.
func (e *engine) ready(fd int) {
	seq := int(e.bySeq[fd]) - 1
	if seq < 0 {
		return
	}
	e.bySeq[fd] = 0
	defer unix.Close(fd)
	if soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
		if err == nil {
			err = unix.Errno(soerr)
		}
		e.fail(seq, fmt.Errorf("connect: %w", err))
		return
	}
	if !e.o.silent {
		// The client's own port, as the kernel chose it, so the check can tell a port NAT rewrote.
		var sport int
		switch sa, _ := unix.Getsockname(fd); sa := sa.(type) {
		case *unix.SockaddrInet4:
			sport = sa.Port
		case *unix.SockaddrInet6:
			sport = sa.Port
		}
		e.payload = payloadTo(append(e.payload[:0], e.o.prefix(seq)...), e.o.tag, seq, e.ports[seq], sport)
		if n, err := unix.Write(fd, e.payload); err != nil || n != len(e.payload) {
			e.fail(seq, fmt.Errorf("write: %d of %d bytes: %v", n, len(e.payload), err))
			return
		}
	}
	e.state[seq] = stSent
}

// expire fails connections still not established after connectTimeout, and trims the FIFO.
func (e *engine) expire(now time.Time) {
	for e.head < len(e.fifo) {
		p := e.fifo[e.head]
		if int(e.bySeq[p.fd])-1 != p.seq {
			e.head++ // done already (the fd may carry a newer connection)
			continue
		}
		if now.Sub(p.start) < connectTimeout {
			break
		}
		e.bySeq[p.fd] = 0
		unix.Close(p.fd)
		e.fail(p.seq, errors.New("connect: timed out"))
		e.head++
	}
	if e.head > 4096 && e.head*2 > len(e.fifo) {
		e.fifo = append(e.fifo[:0], e.fifo[e.head:]...)
		e.head = 0
	}
}

func (e *engine) inflight() int { return len(e.fifo) - e.head }

// run offers n connections, paced at o.rate (0: as fast as o.concurrency allows).
func (e *engine) run(n int) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	defer unix.Close(ep)
	e.ep = ep
	events := make([]unix.EpollEvent, 512)
	start := time.Now()
	next := 0
	for next < n || e.inflight() > 0 {
		now := time.Now()
		for next < n && e.inflight() < e.o.concurrency {
			if e.o.rate > 0 && now.Before(start.Add(time.Duration(float64(next)/e.o.rate*float64(time.Second)))) {
				break
			}
			dst, err := e.o.target(next)
			if err != nil {
				return err
			}
			e.ports[next] = dst.Port()
			if !e.launch(next, dst, now) {
				break
			}
			next++
		}
		wait := 100
		if next < n && e.inflight() < e.o.concurrency {
			wait = 0
			if e.o.rate > 0 {
				due := start.Add(time.Duration(float64(next) / e.o.rate * float64(time.Second)))
				wait = int(time.Until(due).Milliseconds())
				wait = max(wait, 0)
			}
		}
		k, err := unix.EpollWait(ep, events, wait)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for i := 0; i < k; i++ {
			e.ready(int(events[i].Fd))
		}
		e.expire(time.Now())
	}
	return nil
}
