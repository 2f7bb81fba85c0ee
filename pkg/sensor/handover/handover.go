// Package handover encodes the open sessions one spip process hands to the next across a restart.
package handover

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"time"
)

// Version is the format Encode writes. Decode reads every version up to it: a newer process
// must take over sessions from an older one, so a version once released is read forever.
const Version = 1

// Limits on what Decode accepts. The blob comes from PID 1's fd store, which only spip's main
// process can fill, but it is read as hostile input all the same.
const (
	MaxSessions   = 1 << 20 // config.MaxSessions
	MaxPayload    = 64 << 10
	MaxDestError  = 1 << 10
	headerSize    = 4 + 2 + 2 + 8 + 8 + 4
	fixedPerEntry = 16 + 8 + 3*19 + 8 + 8 + 8 + 2 + 4
	trailerSize   = 4
)

var magic = [4]byte{'S', 'P', 'H', 'O'}

// ErrFormat is wrapped by every error Decode returns for a blob it cannot trust.
var ErrFormat = errors.New("hand-over state: invalid")

// Session is one open connection as the old process leaves it.
type Session struct {
	ID       [16]byte
	Accepted time.Time // wall clock, as the record's timestamp
	Peer     netip.AddrPort
	// Local is getsockname at hand-over: with Peer it names the connection, so the next
	// process finds this state for a descriptor by its addresses, not by name or order.
	Local   netip.AddrPort
	Dst     netip.AddrPort // the original destination, as recorded
	DestErr string
	Payload []byte
	Bytes   uint64
	Due     time.Duration // until the current timeout (first byte or idle), from the hand-over
	End     time.Duration // until the session's maximum length, from the hand-over
}

// Key is the connection's pair of addresses, unmapped.
type Key struct{ Local, Peer netip.AddrPort }

// KeyOf returns the key of a connection from its two addresses.
func KeyOf(local, peer netip.AddrPort) Key {
	return Key{unmap(local), unmap(peer)}
}

func unmap(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// State is everything handed over.
type State struct {
	// Mono is CLOCK_MONOTONIC at the hand-over: the next process subtracts it from its own
	// reading to know how much of each deadline has passed meanwhile.
	Mono     time.Duration
	Wall     time.Time
	Sessions []Session
}

// Encode returns the blob for st in the current version.
func Encode(st *State) []byte {
	n := headerSize + trailerSize
	for i := range st.Sessions {
		n += fixedPerEntry + len(st.Sessions[i].DestErr) + len(st.Sessions[i].Payload)
	}
	b := make([]byte, 0, n)
	b = append(b, magic[:]...)
	b = binary.LittleEndian.AppendUint16(b, Version)
	b = binary.LittleEndian.AppendUint16(b, 0) // flags, none yet
	b = binary.LittleEndian.AppendUint64(b, uint64(st.Mono))
	b = binary.LittleEndian.AppendUint64(b, uint64(st.Wall.UnixNano()))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(st.Sessions)))
	for i := range st.Sessions {
		s := &st.Sessions[i]
		b = append(b, s.ID[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(s.Accepted.UnixNano()))
		b = appendAddr(b, s.Peer)
		b = appendAddr(b, s.Local)
		b = appendAddr(b, s.Dst)
		b = binary.LittleEndian.AppendUint64(b, uint64(s.Due))
		b = binary.LittleEndian.AppendUint64(b, uint64(s.End))
		b = binary.LittleEndian.AppendUint64(b, s.Bytes)
		derr := s.DestErr
		if len(derr) > MaxDestError {
			derr = derr[:MaxDestError]
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(len(derr)))
		b = append(b, derr...)
		p := s.Payload
		if len(p) > MaxPayload {
			p = p[:MaxPayload]
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendAddr writes an address as 16 bytes, a port and a family byte (0 none, 4, 6).
func appendAddr(b []byte, a netip.AddrPort) []byte {
	a = unmap(a)
	var fam byte
	switch {
	case !a.Addr().IsValid():
	case a.Addr().Is4():
		fam = 4
	default:
		fam = 6
	}
	a16 := a.Addr().As16()
	if fam == 0 {
		a16 = [16]byte{}
	}
	b = append(b, a16[:]...)
	b = binary.LittleEndian.AppendUint16(b, a.Port())
	return append(b, fam)
}

// Decode checks and reads a blob. maxSessions bounds how many sessions it may hold (the fds
// that came with it); a blob over any bound, cut short, with trailing bytes, a wrong checksum
// or an unknown version is refused whole.
func Decode(b []byte, maxSessions int) (*State, error) {
	if len(b) < headerSize+trailerSize {
		return nil, fmt.Errorf("%w: %d bytes is shorter than a header", ErrFormat, len(b))
	}
	if [4]byte(b[:4]) != magic {
		return nil, fmt.Errorf("%w: not a spip hand-over blob", ErrFormat)
	}
	body, sum := b[:len(b)-trailerSize], binary.LittleEndian.Uint32(b[len(b)-trailerSize:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrFormat)
	}
	r := reader{b: body[4:]}
	if v := r.u16(); v < 1 || v > Version {
		return nil, fmt.Errorf("%w: version %d, this spip reads 1 to %d", ErrFormat, v, Version)
	}
	if f := r.u16(); f != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrFormat, f)
	}
	st := &State{Mono: time.Duration(r.u64())}
	st.Wall = time.Unix(0, int64(r.u64()))
	n := int(r.u32())
	if n < 0 || n > min(maxSessions, MaxSessions) || n > len(r.b)/fixedPerEntry {
		return nil, fmt.Errorf("%w: %d sessions (at most %d here)", ErrFormat, n, min(maxSessions, MaxSessions))
	}
	st.Sessions = make([]Session, n)
	for i := range st.Sessions {
		s := &st.Sessions[i]
		copy(s.ID[:], r.bytes(16))
		s.Accepted = time.Unix(0, int64(r.u64()))
		s.Peer, s.Local, s.Dst = r.addr(), r.addr(), r.addr()
		s.Due, s.End = time.Duration(r.u64()), time.Duration(r.u64())
		s.Bytes = r.u64()
		dl := int(r.u16())
		if dl > MaxDestError {
			return nil, fmt.Errorf("%w: session %d: destination error of %d bytes", ErrFormat, i, dl)
		}
		s.DestErr = string(r.bytes(dl))
		pl := int(r.u32())
		if pl > MaxPayload {
			return nil, fmt.Errorf("%w: session %d: payload of %d bytes", ErrFormat, i, pl)
		}
		if p := r.bytes(pl); pl > 0 {
			s.Payload = append([]byte(nil), p...)
		}
		if r.err != nil {
			return nil, fmt.Errorf("%w: session %d: %v", ErrFormat, i, r.err)
		}
		if !s.Peer.IsValid() || !s.Local.IsValid() {
			return nil, fmt.Errorf("%w: session %d: no address", ErrFormat, i)
		}
		if s.Bytes < uint64(len(s.Payload)) {
			return nil, fmt.Errorf("%w: session %d: %d bytes received but a payload of %d", ErrFormat, i, s.Bytes, len(s.Payload))
		}
		if s.Due < 0 || s.End < 0 || s.Due > s.End {
			// Written as what is left of each, clamped at zero, and the timeout never outlasts the session.
			return nil, fmt.Errorf("%w: session %d: deadlines %v and %v", ErrFormat, i, s.Due, s.End)
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last session", ErrFormat, len(r.b))
	}
	seen := make(map[Key]bool, n)
	for i := range st.Sessions {
		k := KeyOf(st.Sessions[i].Local, st.Sessions[i].Peer)
		if seen[k] {
			return nil, fmt.Errorf("%w: two sessions for %s→%s", ErrFormat, k.Peer, k.Local)
		}
		seen[k] = true
	}
	return st, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n > len(r.b) {
		if r.err == nil {
			r.err = errors.New("cut short")
		}
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u16() uint16 {
	if p := r.bytes(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.bytes(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if p := r.bytes(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (r *reader) addr() netip.AddrPort {
	p := r.bytes(16)
	port := r.u16()
	fam := r.bytes(1)
	if p == nil || fam == nil {
		return netip.AddrPort{}
	}
	switch fam[0] {
	case 4:
		a := netip.AddrFrom16([16]byte(p))
		if !a.Is4In6() {
			r.err = errors.New("an IPv4 address that is not v4-mapped")
			return netip.AddrPort{}
		}
		return netip.AddrPortFrom(a.Unmap(), port)
	case 6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(p)), port)
	case 0:
		return netip.AddrPort{}
	}
	r.err = fmt.Errorf("address family %d", fam[0])
	return netip.AddrPort{}
}
