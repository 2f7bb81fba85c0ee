package sensor

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"spip/pkg/record"
	"spip/pkg/sensor/handover"
	"spip/pkg/socket"
)

// HandOff stores open sessions for the next process: the connections' descriptors and st,
// which describes them in the same order. It returns how many of them, from the first, the
// next process will take over; the sensor finishes the rest itself. It must leave nothing in
// the store for sessions it does not count.
type HandOff func(st *handover.State, fds []int) (int, error)

// HandOverOnStop makes the coming stop hand every open session to f instead of finishing it.
// Call it before cancelling Run's context; without it a stop records open sessions as shutdown.
func (s *Sensor) HandOverOnStop(f HandOff) { s.handOff.Store(&f) }

// Adopt gives Run the sessions a previous process handed over: the connections' descriptors,
// which the sensor now owns, and the state that describes them (nil if there was none, or it
// did not pass validation). Run matches each descriptor to its state by the connection's own
// addresses, carries on with it as if nothing had happened, and records at once, as
// shutdown, a descriptor with no state (its bytes so far are not known). A state whose
// descriptor is missing is recorded as reset: PID 1 drops a stored connection that hangs up.
// Call it before Run.
func (s *Sensor) Adopt(st *handover.State, fds []int) {
	s.adoptState, s.adoptFDs = st, fds
}

// monoNow is CLOCK_MONOTONIC, the clock a hand-over's deadlines are measured on: the same for
// both processes, unlike the runtime's own monotonic readings.
func monoNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// handOver offers every open session to f. The ones it takes leave the loop unrecorded; the
// others stay and end under the shutdown grace as on any stop.
func (l *loop) handOver(f HandOff) {
	open := append([]*session(nil), l.timers.s...)
	if len(open) == 0 {
		return
	}
	start := time.Now()
	st := &handover.State{Mono: monoNow(), Wall: l.now, Sessions: make([]handover.Session, 0, len(open))}
	fds := make([]int, 0, len(open))
	for _, s := range open {
		local, err := socket.Local(s.fd)
		if err != nil {
			continue // not a connection we can name: it ends here
		}
		// Out of the epoll set: what arrives from now on waits in the socket for the next process.
		_ = l.ctl(unix.EPOLL_CTL_DEL, s.fd, 0)
		st.Sessions = append(st.Sessions, handover.Session{
			ID: s.id, Accepted: s.accepted, Peer: s.peer, Local: local, Dst: s.dst, DestErr: s.destErr,
			Payload: s.payload, Bytes: s.bytes,
			Due: max(s.due-l.mono, 0), End: max(s.end-l.mono, 0),
		})
		fds = append(fds, s.fd)
	}
	n, err := f(st, fds)
	n = min(max(n, 0), len(fds))
	handed := 0
	for _, s := range open {
		if handed < n && s.fd == fds[handed] {
			handed++
			l.timers.remove(s)
			l.sessions[s.fd] = nil
			l.Stats.Active.Add(-1)
			l.Stats.HandedOver.Add(1)
			// A plain close: PID 1 holds the connection now, and SO_LINGER would be the socket's, not this copy's.
			_ = closeRaw(s.fd)
			continue
		}
		// Back in the epoll set (EEXIST for the few never taken out): it ends under the grace.
		_ = l.ctl(unix.EPOLL_CTL_ADD, s.fd, unix.EPOLLIN|unix.EPOLLRDHUP)
	}
	if err != nil {
		l.warn(fmt.Sprintf("hand-over: %d of %d open sessions handed to the next process, the rest end here: %v", n, len(open), err))
	} else if n < len(open) {
		l.warn(fmt.Sprintf("hand-over: %d of %d open sessions handed to the next process (FileDescriptorStoreMax=), the rest end here", n, len(open)))
	}
	l.Stats.HandOverTime.Store(int64(time.Since(start)))
}

// adopt takes over what Adopt was given.
func (l *loop) adopt() {
	st, fds := l.adoptState, l.adoptFDs
	l.adoptState, l.adoptFDs = nil, nil
	byKey := map[handover.Key]*handover.Session{}
	elapsed := time.Duration(0)
	if st != nil {
		for i := range st.Sessions {
			byKey[handover.KeyOf(st.Sessions[i].Local, st.Sessions[i].Peer)] = &st.Sessions[i]
		}
		elapsed = max(monoNow()-st.Mono, 0)
	}
	for _, fd := range fds {
		_ = unix.SetNonblock(fd, true)
		local, lerr := socket.Local(fd)
		psa, perr := unix.Getpeername(fd)
		peer := socket.FromSockaddr(psa)
		if lerr != nil || perr != nil || !peer.IsValid() {
			// Not a connected inet socket (or no longer connected): nothing to read or record.
			l.closeFD(fd)
			continue
		}
		key := handover.KeyOf(local, peer)
		h := byKey[key]
		if h == nil {
			// No state: the connection is recorded as cut, from what the socket itself says.
			s := &session{fd: fd, accepted: l.now, peer: key.Peer, heapIdx: -1}
			s.id, _ = uuid.NewV7()
			l.destination(s)
			l.closeFD(fd)
			l.record(s, record.CloseShutdown)
			continue
		}
		delete(byKey, key)
		s := l.restored(h, fd)
		if err := l.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLRDHUP); err != nil {
			l.closeFD(fd)
			l.record(s, record.CloseReset)
			continue
		}
		for fd >= len(l.sessions) {
			l.sessions = append(l.sessions, make([]*session, max(fd+1-len(l.sessions), 1024))...)
		}
		l.sessions[fd] = s
		l.Stats.Active.Add(1)
		l.Stats.Restored.Add(1)
		s.due = l.mono + max(h.Due-elapsed, 0)
		s.end = l.mono + max(h.End-elapsed, 0)
		l.timers.push(s)
	}
	// Left over: sessions whose connection PID 1 dropped while it held it, which it does when
	// the connection hangs up (a reset). Recorded in the order they were handed over.
	if st != nil {
		for i := range st.Sessions {
			h := &st.Sessions[i]
			if byKey[handover.KeyOf(h.Local, h.Peer)] == h {
				l.record(l.restored(h, -1), record.CloseReset)
			}
		}
	}
}

// restored rebuilds a session from its handed-over state.
func (l *loop) restored(h *handover.Session, fd int) *session {
	s := &session{fd: fd, heapIdx: -1, accepted: h.Accepted, id: h.ID, peer: h.Peer, dst: h.Dst, destErr: h.DestErr, bytes: h.Bytes}
	if h.Dst.IsValid() {
		s.dst = netip.AddrPortFrom(h.Dst.Addr().Unmap(), h.Dst.Port())
	}
	if len(h.Payload) > 0 {
		s.payload = h.Payload[:min(len(h.Payload), l.cfg.PayloadCap)]
	}
	return s
}
