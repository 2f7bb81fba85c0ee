package sensor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"spip/pkg/record"
	"spip/pkg/socket"
)

const (
	acceptBatch  = 256         // accepts per wake-up before sessions get their turn
	maxWait      = time.Second // the loop wakes at least this often, so its heartbeat means something
	fdBackoff    = 100 * time.Millisecond
	readBufSize  = 64 << 10         // one buffer for the whole loop: idle sessions hold none
	warnInterval = 10 * time.Second // at most one warning of a kind this often
)

// session is one connection being read. It is owned by the loop; nothing else touches it.
type session struct {
	fd       int
	heapIdx  int
	accepted time.Time
	due      time.Duration // when the current timeout fires, on the loop's monotonic clock
	end      time.Duration // when the session hits its maximum length
	id       uuid.UUID
	peer     netip.AddrPort
	dst      netip.AddrPort
	destErr  string
	payload  []byte
	bytes    uint64
	// UDP flows (fd -1): the last datagram's time and how many came.
	udp       bool
	last      time.Time
	datagrams uint64
	more      [][]byte // a QUIC flow's second and third datagrams (quicKeep)
}

type loop struct {
	*Sensor
	ep       int
	epf      *os.File        // ep, registered with the Go netpoller
	rc       syscall.RawConn // ep's
	wake     int
	base     time.Time
	now      time.Time
	mono     time.Duration
	sessions []*session // indexed by fd
	timers   timerHeap
	buf      []byte
	listenOn bool
	backoff  time.Duration // when to listen again after running out of fds
	stopping bool
	stopAt   time.Duration
	lnPort   uint16 // the listener's own port; 0 when unknown
	lastWarn map[string]time.Duration
	udp      udpState
}

// Run serves connections until ctx ends, then stops accepting (new connections wait in the
// socket's backlog for the next process), hands open sessions to the next process if
// HandOverOnStop said so, lets the others finish within the shutdown grace, records those it
// cuts, and returns. It first takes over what Adopt gave it.
func (s *Sensor) Run(ctx context.Context) error {
	if err := unix.SetNonblock(s.ln, true); err != nil {
		return fmt.Errorf("sensor: listener: %w", err)
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("sensor: epoll: %w", err)
	}
	// The loop waits for its epoll set to become readable in the Go netpoller instead of
	// blocking in epoll_wait: see wait.
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return fmt.Errorf("sensor: epoll: %w", err)
	}
	epf := os.NewFile(uintptr(ep), "epoll")
	defer epf.Close()
	rc, err := epf.SyscallConn()
	if err != nil {
		return fmt.Errorf("sensor: epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("sensor: eventfd: %w", err)
	}
	defer unix.Close(wake)
	l := &loop{Sensor: s, ep: ep, epf: epf, rc: rc, wake: wake, base: time.Now(), buf: make([]byte, readBufSize), lastWarn: map[string]time.Duration{}}
	l.lnPort, _ = socket.LocalPort(s.ln)
	if err := l.ctl(unix.EPOLL_CTL_ADD, wake, unix.EPOLLIN); err != nil {
		return err
	}
	if err := l.listen(true); err != nil {
		return err
	}
	if err := l.initUDP(); err != nil {
		return err
	}
	l.tick()
	l.adopt()
	stop := context.AfterFunc(ctx, func() {
		var one = [8]byte{1}
		_, _ = unix.Write(wake, one[:])
	})
	defer stop()
	err = l.run()
	if err != nil {
		// Whatever ends the loop, every accepted connection still gets its record: the open
		// sessions are cut as at the end of a stop.
		l.tick()
		for l.timers.Len() > 0 {
			l.finish(l.timers.s[0], record.CloseShutdown)
		}
	}
	return err
}

func (l *loop) ctl(op, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := epollCtl(l.ep, op, fd, &ev); err != nil {
		return fmt.Errorf("sensor: epoll_ctl: %w", err)
	}
	return nil
}

func (l *loop) listen(on bool) error {
	if on == l.listenOn {
		return nil
	}
	l.listenOn = on
	if on {
		return l.ctl(unix.EPOLL_CTL_ADD, l.ln, unix.EPOLLIN)
	}
	return l.ctl(unix.EPOLL_CTL_DEL, l.ln, 0)
}

func (l *loop) tick() {
	l.now = time.Now()
	l.mono = l.now.Sub(l.base)
	l.Stats.Loops.Add(1)
}

func (l *loop) run() error {
	events := make([]unix.EpollEvent, 512)
	for {
		l.tick()
		wait := maxWait
		if next, ok := l.timers.next(); ok {
			wait = min(wait, max(next-l.mono, 0))
		}
		if l.backoff > 0 {
			wait = min(wait, max(l.backoff-l.mono, 0))
		}
		if l.stopping {
			wait = min(wait, max(l.stopAt-l.mono, 0))
		}
		n, err := l.wait(events, wait)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("sensor: epoll_wait: %w", err)
		}
		l.tick()
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			switch {
			case fd == l.ln:
				l.accept()
			case fd == l.udp.fd:
				l.recvUDP()
			case fd == l.wake:
				// Drain the eventfd: left readable, it would wake every epoll_wait at once and
				// spin the loop for the whole shutdown grace.
				var b [8]byte
				_, _ = unix.Read(l.wake, b[:])
				l.beginStop()
			default:
				if fd < len(l.sessions) && l.sessions[fd] != nil {
					l.read(l.sessions[fd])
				}
			}
		}
		l.expire()
		if l.backoff > 0 && l.mono >= l.backoff && !l.stopping {
			l.backoff = 0
			if err := l.listen(true); err != nil {
				return err
			}
		}
		if l.stopping {
			if l.mono >= l.stopAt {
				for l.timers.Len() > 0 {
					l.finish(l.timers.s[0], record.CloseShutdown)
				}
			}
			if l.timers.Len() == 0 {
				return nil
			}
		}
	}
}

// wait returns the ready events, waiting at most d for some. It takes what is ready with a
// non-blocking epoll_wait and otherwise parks the goroutine in the Go netpoller until the epoll
// set is readable or d has passed. Blocking in epoll_wait itself held the only P (on one CPU)
// in a system call, which sysmon took back every time, polling every 20 µs forever: a large
// share of spip's CPU under load (BENCHMARKS.md, where spip's time goes).
func (l *loop) wait(events []unix.EpollEvent, d time.Duration) (int, error) {
	n, err := epollReady(l.ep, events)
	if n > 0 || d <= 0 || (err != nil && !errors.Is(err, unix.EINTR)) {
		return n, err
	}
	if err := l.epf.SetReadDeadline(time.Now().Add(d)); err != nil {
		return 0, fmt.Errorf("sensor: epoll deadline: %w", err)
	}
	var werr error
	err = l.rc.Read(func(fd uintptr) bool {
		n, werr = epollReady(int(fd), events)
		if errors.Is(werr, unix.EINTR) {
			werr = nil
		}
		return n > 0 || werr != nil
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sensor: epoll wait: %w", err)
	}
	return n, werr
}

func (l *loop) beginStop() {
	if l.stopping {
		return
	}
	l.stopping = true
	l.stopAt = l.mono + l.cfg.ShutdownGrace
	_ = l.listen(false)
	l.stopUDP()
	if f := l.handOff.Load(); f != nil {
		l.handOver(*f)
	}
}

func (l *loop) accept() {
	for i := 0; i < acceptBatch; i++ {
		fd, peer, err := accept4(l.ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			switch {
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
				return
			case errors.Is(err, unix.ECONNABORTED):
				continue
			case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE), errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENOMEM):
				// Out of descriptors or memory: stop polling the listener for a moment instead of
				// spinning on it; the kernel holds new connections in the backlog meanwhile.
				l.Stats.FDExhausted.Add(1)
				l.backoff = l.mono + fdBackoff
				_ = l.listen(false)
				l.warnOnce("accept", fmt.Sprintf("accept: %v: pausing for %v (raise LimitNOFILE= or lower session.max_sessions)", err, fdBackoff))
				return
			default:
				l.Stats.AcceptErrors.Add(1)
				l.warnOnce("accept-other", fmt.Sprintf("accept: %v", err))
				return
			}
		}
		l.Stats.Accepted.Add(1)
		l.start(fd, peer)
	}
}

func (l *loop) start(fd int, peer netip.AddrPort) {
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if l.admit != nil && !l.admit.Admit(peer.Addr(), l.mono) {
		l.Stats.RateLimited.Add(1)
		l.closeFD(fd)
		return
	}
	s := &session{fd: fd, accepted: l.now, peer: peer, heapIdx: -1}
	s.id, _ = uuid.NewV7()
	l.destination(s)

	if l.Stats.Active.Load() >= int64(l.cfg.MaxSessions) {
		l.Stats.Overload.Add(1)
		l.closeFD(fd)
		l.record(s, record.CloseOverload)
		return
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLRDHUP); err != nil {
		l.closeFD(fd)
		l.record(s, record.CloseReset)
		return
	}
	for fd >= len(l.sessions) {
		l.sessions = append(l.sessions, make([]*session, max(fd+1-len(l.sessions), 1024))...)
	}
	l.sessions[fd] = s
	l.Stats.Active.Add(1)
	s.end = l.mono + l.cfg.MaxDuration
	s.due = min(l.mono+l.cfg.FirstByteTimeout, s.end)
	l.timers.push(s)
}

// destination finds where the peer meant to connect from what the kernel knows, whatever the
// capture mode: NAT's original destination when conntrack has one (a redirect, the packaged one
// or a hand-made one), else the accepted socket's local address (TPROXY, or a direct
// connection). The address fields are always filled; destErr says when they are not to be trusted.
func (l *loop) destination(s *session) {
	nat, natErr := socket.Redirected(s.fd, s.peer.Addr())
	if natErr == nil {
		if nat = unmapped(nat); nat != s.peer {
			s.dst = nat
			return
		}
		// An entry that conntrack began with spip's own reply (a SYN-ACK it tracked while the
		// SYN was not) has this flow the wrong way round: its "original destination" is the
		// peer. Nothing was NATed then; the local address is the destination.
		natErr = socket.ErrNotRedirected
	}
	local, err := socket.Local(s.fd)
	s.dst = unmapped(local)
	switch {
	case err != nil:
	case !errors.Is(natErr, socket.ErrNotRedirected):
		err = natErr
	case l.cfg.RedirectMode && l.lnPort != 0 && local.Port() == l.lnPort:
		err = fmt.Errorf("original destination unknown: the connection reached spip's own port %d with no NAT entry (redirected, but the entry expired before spip accepted it)", l.lnPort)
	}
	if err != nil {
		l.Stats.DestErrors.Add(1)
		s.destErr = err.Error()
	}
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (l *loop) read(s *session) {
	n, err := read(s.fd, l.buf)
	switch {
	case n > 0:
		s.bytes += uint64(n)
		if room := l.cfg.PayloadCap - len(s.payload); room > 0 {
			take := l.buf[:min(n, room)]
			if s.payload == nil {
				s.payload = make([]byte, 0, len(take))
			}
			s.payload = append(s.payload, take...)
		}
		s.due = min(l.mono+l.cfg.IdleTimeout, s.end)
		l.timers.fix(s)
	case n == 0 && err == nil:
		l.finish(s, record.CloseEOF)
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
	default:
		l.finish(s, record.CloseReset)
	}
}

// expire ends every session whose timeout or maximum length has come.
func (l *loop) expire() {
	for l.timers.Len() > 0 {
		s := l.timers.s[0]
		if s.due > l.mono {
			return
		}
		reason := record.CloseTimeout
		if s.due >= s.end {
			reason = record.CloseLimit
		}
		l.finish(s, reason)
	}
}

func (l *loop) finish(s *session, reason record.CloseReason) {
	if s.udp {
		l.finishUDP(s, reason)
		return
	}
	l.timers.remove(s)
	l.sessions[s.fd] = nil
	l.Stats.Active.Add(-1)
	l.closeFD(s.fd) // closing also takes it out of the epoll set
	l.record(s, reason)
}

func (l *loop) closeFD(fd int) {
	if l.cfg.CloseWithReset {
		// An abortive close: no TIME_WAIT here, and conntrack forgets a reset flow in seconds.
		_ = lingerZero(fd)
	}
	_ = closeRaw(fd)
}

func (l *loop) record(s *session, reason record.CloseReason) {
	duration := l.now.Sub(s.accepted)
	transport := record.TCP
	if s.udp {
		// From the first datagram to the last: the idle wait after it is spip's, not the peer's.
		duration, transport = s.last.Sub(s.accepted), record.UDP
	}
	r := &record.Record{
		Kind:          record.KindConnection,
		Transport:     transport,
		Datagrams:     s.datagrams,
		Time:          s.accepted,
		SessionID:     s.id,
		Source:        s.peer,
		Destination:   s.dst,
		DestError:     s.destErr,
		Payload:       s.payload,
		BytesReceived: s.bytes,
		Truncated:     s.bytes > uint64(len(s.payload)),
		Duration:      duration,
		Close:         reason,
	}
	l.describe(r)
	if len(s.more) > 0 {
		l.describeQUIC(r, s.more)
	}
	l.Stats.Recorded.Add(1)
	l.emit(r)
}

func (l *loop) warnOnce(kind, msg string) {
	if last, ok := l.lastWarn[kind]; ok && l.mono-last < warnInterval {
		return
	}
	l.lastWarn[kind] = l.mono
	l.warn(msg)
}
