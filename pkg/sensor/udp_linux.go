package sensor

import (
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"spip/pkg/record"
	"spip/pkg/socket"
)

// The UDP side of the loop: one record per flow, a flow being (source address and port,
// original destination address and port). spip only ever reads from its UDP socket: not one
// byte goes back, so a probe can never make this host a reflector.

const (
	udpBatch   = 32 // datagrams per recvmmsg
	udpBatches = 8  // recvmmsg calls per wake-up before TCP gets its turn again
	// udpMinBuf is the smallest per-datagram buffer: the protocol parsers see at least this
	// much of a first datagram even with a small payload_cap (the record keeps only the cap).
	udpMinBuf = 2048
)

// A QUIC client's ClientHello may span its first two or three datagrams (a post-quantum key
// share makes it about 1.7 KB): a flow whose first datagram looks like a QUIC Initial keeps the
// next ones, up to quicKeep bytes each, for the protocol facts. Payload stays the first one's.
const (
	quicDatagrams = 3
	quicKeep      = 1500
)

// looksQUIC: a long-header packet padded as a client's first flight must be (RFC 9000 §14.1).
func looksQUIC(p []byte) bool { return len(p) >= 1200 && p[0]&0xc0 == 0xc0 }

// flowKey identifies a UDP flow.
type flowKey struct{ src, dst netip.AddrPort }

// udpState is the loop's UDP side: the socket, the flow table and recvmmsg's buffers.
type udpState struct {
	fd      int
	on      bool
	flows   map[flowKey]*session
	hdrs    []unix.Mmsghdr
	iovs    []unix.Iovec
	bufs    [][]byte
	names   []unix.RawSockaddrInet6
	oobs    [][]byte
	local   netip.AddrPort // the socket's own address, for a datagram without IP_ORIGDSTADDR
	ovfl    uint32         // the kernel's running drop counter, as last seen
	ovflSet bool
}

// SetUDP hands the sensor a UDP socket to record flows from, before Run. The caller keeps
// owning fd; socket.PrepareUDP must have been called on it.
func (s *Sensor) SetUDP(fd int) { s.udpFD = fd }

func (l *loop) initUDP() error {
	l.udp.fd = -1
	if l.udpFD < 0 {
		return nil
	}
	u := &l.udp
	u.fd = l.udpFD
	u.flows = make(map[flowKey]*session)
	size := max(l.cfg.PayloadCap, udpMinBuf)
	u.hdrs = make([]unix.Mmsghdr, udpBatch)
	u.iovs = make([]unix.Iovec, udpBatch)
	u.bufs = make([][]byte, udpBatch)
	u.names = make([]unix.RawSockaddrInet6, udpBatch)
	u.oobs = make([][]byte, udpBatch)
	for i := range u.hdrs {
		u.bufs[i] = make([]byte, size)
		u.oobs[i] = make([]byte, socket.ControlSpace)
		u.iovs[i].Base = &u.bufs[i][0]
		u.iovs[i].SetLen(size)
	}
	if sa, err := unix.Getsockname(u.fd); err == nil {
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			u.local = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			u.local = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
		}
	}
	return l.udpListen(true)
}

func (l *loop) udpListen(on bool) error {
	if l.udp.fd < 0 || on == l.udp.on {
		return nil
	}
	l.udp.on = on
	if on {
		return l.ctl(unix.EPOLL_CTL_ADD, l.udp.fd, unix.EPOLLIN)
	}
	return l.ctl(unix.EPOLL_CTL_DEL, l.udp.fd, 0)
}

// recvUDP takes what is queued on the UDP socket, a bounded number of batches per wake-up so
// that a UDP flood cannot starve the TCP side; epoll is level-triggered and comes back for the rest.
func (l *loop) recvUDP() {
	u := &l.udp
	for b := 0; b < udpBatches; b++ {
		for i := range u.hdrs {
			h := &u.hdrs[i].Hdr
			h.Name = (*byte)(unsafe.Pointer(&u.names[i]))
			h.Namelen = unix.SizeofSockaddrInet6
			h.Iov = &u.iovs[i]
			h.Iovlen = 1
			h.Control = &u.oobs[i][0]
			h.SetControllen(len(u.oobs[i]))
			h.Flags = 0
			u.hdrs[i].Len = 0
		}
		n, err := recvmmsg(u.fd, u.hdrs, unix.MSG_DONTWAIT|unix.MSG_TRUNC)
		if err != nil {
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				l.Stats.UDPErrors.Add(1)
				l.warnOnce("udp-recv", fmt.Sprintf("udp: recvmmsg: %v", err))
			}
			return
		}
		for i := 0; i < n; i++ {
			l.datagram(i)
		}
		if n < udpBatch {
			return
		}
	}
}

// datagram accounts for the i-th datagram of the last batch.
func (l *loop) datagram(i int) {
	u := &l.udp
	h := &u.hdrs[i]
	size := int(h.Len) // the datagram's real length: MSG_TRUNC
	l.Stats.Datagrams.Add(1)
	src := peerAddr((*unix.RawSockaddrAny)(unsafe.Pointer(&u.names[i])))
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst, drops, dropsOK := socket.ParseControl(u.oobs[i][:h.Hdr.Controllen])
	if dropsOK {
		// A running total per socket; the first one seen may include drops from before this
		// process (the socket outlives restarts), and they are losses all the same.
		if d := drops - u.ovfl; d > 0 && (u.ovflSet || drops > 0) {
			l.Stats.UDPKernelDrops.Add(uint64(d))
		}
		u.ovfl, u.ovflSet = drops, true
	}
	destErr := ""
	if !dst.IsValid() {
		dst, destErr = u.local, "the kernel gave no original destination (IP_RECVORIGDSTADDR)"
		l.Stats.DestErrors.Add(1)
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	key := flowKey{src, dst}
	if s, ok := u.flows[key]; ok {
		if s.datagrams < quicDatagrams && looksQUIC(s.payload) {
			s.more = append(s.more, append([]byte(nil), u.bufs[i][:min(size, len(u.bufs[i]), quicKeep)]...))
		}
		s.datagrams++
		s.bytes += uint64(size)
		s.last = l.now
		s.due = min(l.mono+l.cfg.UDPIdleTimeout, s.end)
		l.timers.fix(s)
		return
	}
	if len(u.flows) >= l.cfg.MaxUDPFlows || l.stopping {
		l.Stats.UDPOverLimit.Add(1)
		return
	}
	s := &session{fd: -1, udp: true, heapIdx: -1, accepted: l.now, last: l.now, peer: src, dst: dst, destErr: destErr, datagrams: 1, bytes: uint64(size)}
	s.id, _ = uuid.NewV7()
	if keep := min(size, l.cfg.PayloadCap, len(u.bufs[i])); keep > 0 {
		s.payload = append(make([]byte, 0, keep), u.bufs[i][:keep]...)
	}
	u.flows[key] = s
	l.Stats.UDPFlows.Add(1)
	l.Stats.ActiveUDP.Add(1)
	s.end = l.mono + l.cfg.MaxDuration
	s.due = min(l.mono+l.cfg.UDPIdleTimeout, s.end)
	l.timers.push(s)
}

// finishUDP ends a flow: out of the table and the timers, and recorded.
func (l *loop) finishUDP(s *session, reason record.CloseReason) {
	l.timers.remove(s)
	delete(l.udp.flows, flowKey{s.peer, s.dst})
	l.Stats.ActiveUDP.Add(-1)
	l.record(s, reason)
}

// stopUDP stops reading the socket (what arrives meanwhile waits in it for the next process)
// and records every open flow as cut by the shutdown.
func (l *loop) stopUDP() {
	if l.udp.fd < 0 {
		return
	}
	_ = l.udpListen(false)
	for _, s := range l.udp.flows {
		l.finishUDP(s, record.CloseShutdown)
	}
}

func recvmmsg(fd int, hdrs []unix.Mmsghdr, flags int) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
