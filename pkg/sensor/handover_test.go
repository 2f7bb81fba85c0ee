package sensor_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/record"
	"spip/pkg/sensor"
	"spip/pkg/sensor/handover"
	"spip/pkg/socket"
)

// store stands in for PID 1's fd store: it keeps a duplicate of each descriptor and the blob.
type store struct {
	fds  []int
	blob []byte
	take int // how many to take, -1 for all
}

func (s *store) handOff(st *handover.State, fds []int) (int, error) {
	n := len(fds)
	if s.take >= 0 {
		n = min(n, s.take)
	}
	for _, fd := range fds[:n] {
		d, err := unix.Dup(fd)
		if err != nil {
			return 0, err
		}
		s.fds = append(s.fds, d)
	}
	st.Sessions = st.Sessions[:n]
	s.blob = handover.Encode(st)
	return n, nil
}

type proc struct {
	sens   *sensor.Sensor
	col    *collector
	cancel context.CancelFunc
	done   chan error
}

func run(c sensor.Config, ln int, setup func(*sensor.Sensor)) *proc {
	p := &proc{col: newCollector(), done: make(chan error, 1)}
	p.sens = sensor.New(c, ln, p.col.emit, nil, nil)
	if setup != nil {
		setup(p.sens)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.done <- p.sens.Run(ctx) }()
	return p
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(bound):
		t.Fatal("Run did not return")
	}
}

// A restart that hands over: the first process records nothing for the open sessions, the
// second finishes each as if nothing had happened (one record, the whole payload, the real
// close reason, the original session id and accept time), and what the peer sent in between
// is not lost. The first process may take only some: it finishes the rest itself.
func TestHandOver(t *testing.T) {
	ln, err := socket.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Skipf("cannot listen here: %v", err)
	}
	defer unix.Close(ln)
	port, _ := socket.LocalPort(ln)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := cfg()
	c.ShutdownGrace = 0

	const n, took = 40, 30
	st := &store{take: took}
	a := run(c, ln, nil)
	conns := make([]net.Conn, n)
	for i := range conns {
		conn, err := net.DialTimeout("tcp", addr, bound)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns[i] = conn
		if _, err := fmt.Fprintf(conn, "before %d;", i); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(bound)
	for a.sens.Stats.Active.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("active %d, want %d", a.sens.Stats.Active.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let the first process read the first bytes
	a.sens.HandOverOnStop(st.handOff)
	a.stop(t)
	if got := a.sens.Stats.HandedOver.Load(); got != took {
		t.Errorf("handed over %d, want %d", got, took)
	}
	// The ones not taken ended here, as shutdown, on the first process.
	first := a.col.snapshot()
	if len(first) != n-took {
		t.Fatalf("the first process recorded %d, want the %d it kept", len(first), n-took)
	}
	for _, r := range first {
		if r.Close != record.CloseShutdown {
			t.Errorf("kept session %s: %v, want shutdown", r.Source, r.Close)
		}
	}
	// Between the processes the peers go on sending.
	for i, conn := range conns {
		fmt.Fprintf(conn, "between %d;", i)
	}
	decoded, err := handover.Decode(st.blob, len(st.fds))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[netip.AddrPort]handover.Session{}
	for _, s := range decoded.Sessions {
		ids[s.Peer] = s
	}
	b := run(c, ln, func(s *sensor.Sensor) { s.Adopt(decoded, st.fds) })
	defer b.stop(t)
	for i, conn := range conns {
		fmt.Fprintf(conn, "after %d;", i)
		conn.(*net.TCPConn).CloseWrite()
	}
	recs := b.col.wait(t, took)
	time.Sleep(100 * time.Millisecond)
	if len(b.col.snapshot()) != took {
		t.Errorf("the second process recorded %d, want %d", len(b.col.snapshot()), took)
	}
	if got := b.sens.Stats.Restored.Load(); got != took {
		t.Errorf("restored %d, want %d", got, took)
	}
	for _, r := range recs {
		h, ok := ids[r.Source]
		if !ok {
			t.Errorf("record from %s, which was not handed over", r.Source)
			continue
		}
		var i int
		fmt.Sscanf(string(r.Payload), "before %d;", &i)
		want := fmt.Sprintf("before %d;between %d;after %d;", i, i, i)
		if string(r.Payload) != want || r.BytesReceived != uint64(len(want)) {
			t.Errorf("%s: payload %q (%d bytes), want %q", r.Source, r.Payload, r.BytesReceived, want)
		}
		if r.Close != record.CloseEOF || r.SessionID != h.ID || !r.Time.Equal(h.Accepted) {
			t.Errorf("%s: %v, id %s, time %v; want eof, id %x, time %v", r.Source, r.Close, r.SessionID, r.Time, h.ID, h.Accepted)
		}
	}
	// Each peer sees its connection close once the second process is done with it.
	for _, conn := range conns {
		conn.SetReadDeadline(time.Now().Add(bound))
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s: read data, want the close", conn.LocalAddr())
		}
	}
}

// A descriptor without state (a blob that failed validation) is recorded at once as
// shutdown and closed; a state whose descriptor is missing is recorded as reset.
func TestAdoptWithoutState(t *testing.T) {
	ln, err := socket.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Skipf("cannot listen here: %v", err)
	}
	defer unix.Close(ln)
	port, _ := socket.LocalPort(ln)
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), bound)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fd, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	gone := handover.Session{
		ID: [16]byte{9}, Accepted: time.Now().Add(-time.Minute),
		Peer:  netip.MustParseAddrPort("198.51.100.1:1"),
		Local: netip.MustParseAddrPort("203.0.113.1:2"), Dst: netip.MustParseAddrPort("203.0.113.1:2"),
		Payload: []byte("x"), Bytes: 1,
	}
	p := run(cfg(), ln, func(s *sensor.Sensor) {
		s.Adopt(&handover.State{Sessions: []handover.Session{gone}}, []int{fd})
	})
	defer p.stop(t)
	recs := p.col.wait(t, 2)
	for _, r := range recs {
		switch r.Source.Addr().String() {
		case "127.0.0.1":
			if r.Close != record.CloseShutdown {
				t.Errorf("descriptor without state: %v, want shutdown", r.Close)
			}
		case "198.51.100.1":
			if r.Close != record.CloseReset || string(r.Payload) != "x" || r.SessionID != gone.ID {
				t.Errorf("state without descriptor: %v %q %s, want reset, its payload and id", r.Close, r.Payload, r.SessionID)
			}
		default:
			t.Errorf("unexpected record from %s", r.Source)
		}
	}
	conn.SetReadDeadline(time.Now().Add(bound))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Errorf("the peer of a descriptor without state read data, want its close")
	}
}
