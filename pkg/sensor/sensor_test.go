package sensor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/record"
	"spip/pkg/sensor"
	"spip/pkg/socket"
)

// bound is how long a test waits for something that should happen at once. It bounds a failing
// test; no test asserts how fast anything is.
const bound = 20 * time.Second

// long is a timeout no test is meant to reach.
const long = time.Hour

// collector gathers emitted records; emit never blocks the loop.
type collector struct {
	mu   sync.Mutex
	recs []*record.Record
	more chan struct{}
}

func newCollector() *collector { return &collector{more: make(chan struct{}, 1)} }

func (c *collector) emit(r *record.Record) {
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

func (c *collector) snapshot() []*record.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*record.Record(nil), c.recs...)
}

// wait returns once n records have arrived, or fails the test after bound.
func (c *collector) wait(t *testing.T, n int) []*record.Record {
	t.Helper()
	deadline := time.After(bound)
	for {
		if rs := c.snapshot(); len(rs) >= n {
			return rs
		}
		select {
		case <-c.more:
		case <-deadline:
			t.Fatalf("got %d records, want %d", len(c.snapshot()), n)
		}
	}
}

// bySource finds the record of the connection whose client end is src.
func (c *collector) bySource(t *testing.T, src netip.AddrPort) *record.Record {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		for _, r := range c.snapshot() {
			if r.Source == src {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record from %s", src)
		}
		select {
		case <-c.more:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// harness is one sensor running in-process on a loopback socket.
type harness struct {
	addr   netip.AddrPort // where clients connect
	sens   *sensor.Sensor
	col    *collector
	cancel context.CancelFunc
	done   chan error
}

func cfg() sensor.Config {
	return sensor.Config{
		PayloadCap:       4096,
		FirstByteTimeout: long,
		IdleTimeout:      long,
		MaxDuration:      long,
		MaxSessions:      1024,
		ShutdownGrace:    0,
		CloseWithReset:   true,
	}
}

func start(t *testing.T, c sensor.Config, listen string) *harness {
	t.Helper()
	fd, err := socket.Listen(netip.MustParseAddrPort(listen))
	if err != nil {
		t.Skipf("cannot listen on %s here: %v", listen, err)
	}
	port, err := socket.LocalPort(fd)
	if err != nil {
		t.Fatal(err)
	}
	if !socket.IsListener(fd) {
		t.Fatal("IsListener = false for a listening socket")
	}
	ip := netip.MustParseAddrPort(listen).Addr()
	if ip.IsUnspecified() {
		ip = netip.MustParseAddr("127.0.0.1")
	}
	h := &harness{addr: netip.AddrPortFrom(ip, port), col: newCollector(), done: make(chan error, 1)}
	h.sens = sensor.New(c, fd, h.col.emit, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.sens.Run(ctx) }()
	t.Cleanup(func() {
		h.stop(t)
		unix.Close(fd)
	})
	return h
}

// stop ends Run and returns its error; it may be called more than once.
func (h *harness) stop(t *testing.T) error {
	t.Helper()
	h.cancel()
	select {
	case err, ok := <-h.done:
		if ok {
			close(h.done)
		}
		return err
	case <-time.After(bound):
		t.Fatal("Run did not return after its context ended")
		return nil
	}
}

func (h *harness) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", h.addr.String(), bound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// waitActive waits until the sensor reads n sessions, so the test knows it accepted them.
func (h *harness) waitActive(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for h.sens.Stats.Active.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("active sessions = %d, want %d", h.sens.Stats.Active.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dialBound connects from a port bound beforehand and returns that address, and the connection
// unless connect failed (an overloaded sensor may reset it before connect returns).
func dialBound(t *testing.T, to netip.AddrPort) (netip.AddrPort, net.Conn) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "client")
	defer f.Close()
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	src := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*unix.SockaddrInet4).Port))
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: to.Addr().As4(), Port: int(to.Port())}); err != nil {
		return src, nil
	}
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return src, c
}

func localOf(c net.Conn) netip.AddrPort {
	ap := c.LocalAddr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// waitClosed waits until the sensor has closed the connection from its side.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(bound))
	var b [64]byte
	for {
		_, err := c.Read(b[:])
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
			return
		}
		t.Fatalf("waiting for the sensor to close: %v", err)
	}
}

// checkConn asserts the fields every connection record carries.
func checkConn(t *testing.T, r *record.Record, c net.Conn, h *harness) {
	t.Helper()
	if r.Kind != record.KindConnection {
		t.Errorf("kind = %v", r.Kind)
	}
	if want := localOf(c); r.Source != want {
		t.Errorf("source = %s, want %s", r.Source, want)
	}
	if r.Destination != h.addr {
		t.Errorf("destination = %s, want %s (%s)", r.Destination, h.addr, r.DestError)
	}
	if r.DestError != "" {
		t.Errorf("destination_error = %q", r.DestError)
	}
	if r.SessionID.Version() != 7 {
		t.Errorf("session id %s is not a UUIDv7", r.SessionID)
	}
	if r.Truncated != (r.BytesReceived > uint64(len(r.Payload))) {
		t.Errorf("truncated = %v with %d bytes received and %d kept", r.Truncated, r.BytesReceived, len(r.Payload))
	}
	if r.Time.IsZero() || r.Duration < 0 {
		t.Errorf("time %v, duration %v", r.Time, r.Duration)
	}
}

func TestSessions(t *testing.T) {
	short := 300 * time.Millisecond
	tests := []struct {
		name   string
		cfg    func(*sensor.Config)
		client func(t *testing.T, c *net.TCPConn, h *harness)
		// want
		close     record.CloseReason
		payload   string // exact payload, unless prefixOf is set
		prefixOf  string // the payload is a prefix of this (the peer kept sending)
		bytes     int    // bytes_received; -1: at least len(payload)
		truncated bool
	}{
		{
			name: "eof with payload",
			client: func(t *testing.T, c *net.TCPConn, h *harness) {
				write(t, c, "GET / HTTP/1.0\r\n\r\n")
				c.Close()
			},
			close: record.CloseEOF, payload: "GET / HTTP/1.0\r\n\r\n", bytes: 18,
		},
		{
			name: "half close keeps the payload",
			client: func(t *testing.T, c *net.TCPConn, h *harness) {
				write(t, c, "\x00\xff\x00binary")
				_ = c.CloseWrite()
				waitClosed(t, c)
			},
			close: record.CloseEOF, payload: "\x00\xff\x00binary", bytes: 9,
		},
		{
			name: "silent connection closed by the peer",
			client: func(t *testing.T, c *net.TCPConn, h *harness) {
				h.waitActive(t, 1)
				c.Close()
			},
			close: record.CloseEOF, payload: "", bytes: 0,
		},
		{
			name: "silent connection hits the first-byte timeout",
			cfg:  func(c *sensor.Config) { c.FirstByteTimeout = short },
			client: func(t *testing.T, c *net.TCPConn, h *harness) {
				waitClosed(t, c)
			},
			close: record.CloseTimeout, payload: "", bytes: 0,
		},
		{
			name: "idle timeout after data",
			cfg:  func(c *sensor.Config) { c.IdleTimeout = short },
			client: func(t *testing.T, c *net.TCPConn, h *harness) {
				write(t, c, "USER root\r\n")
				waitClosed(t, c)
			},
			close: record.CloseTimeout, payload: "USER root\r\n", bytes: 11,
		},
		{
			name: "trickling peer hits max_duration",
			cfg: func(c *sensor.Config) {
				c.FirstByteTimeout = 5 * time.Second
				c.IdleTimeout = 5 * time.Second
				c.MaxDuration = short
			},
			client: func(t *testing.T, c *net.TCPConn, h *harness) {
				// One byte every 20ms never lets the idle timeout fire; only the session limit can end it.
				for i := 0; i < int(bound/(20*time.Millisecond)); i++ {
					if _, err := c.Write([]byte{'a' + byte(i%26)}); err != nil {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
				t.Error("the sensor never closed a trickling connection")
			},
			close: record.CloseLimit, prefixOf: strings.Repeat("abcdefghijklmnopqrstuvwxyz", 1000), bytes: -1,
		},
		{
			name: "payload cap truncates but counts everything",
			cfg:  func(c *sensor.Config) { c.PayloadCap = 16 },
			client: func(t *testing.T, c *net.TCPConn, h *harness) {
				write(t, c, strings.Repeat("0123456789", 1000))
				c.Close()
			},
			close: record.CloseEOF, payload: "0123456789012345", bytes: 10000, truncated: true,
		},
		{
			name: "payload cap zero keeps nothing",
			cfg:  func(c *sensor.Config) { c.PayloadCap = 0 },
			client: func(t *testing.T, c *net.TCPConn, h *harness) {
				write(t, c, "secret")
				c.Close()
			},
			close: record.CloseEOF, payload: "", bytes: 6, truncated: true,
		},
		{
			name: "payload larger than the read buffer",
			cfg:  func(c *sensor.Config) { c.PayloadCap = 65536 },
			client: func(t *testing.T, c *net.TCPConn, h *harness) {
				write(t, c, strings.Repeat("x", 200000))
				c.Close()
			},
			close: record.CloseEOF, payload: strings.Repeat("x", 65536), bytes: 200000, truncated: true,
		},
		{
			name: "peer reset",
			client: func(t *testing.T, c *net.TCPConn, h *harness) {
				h.waitActive(t, 1)
				_ = c.SetLinger(0) // close sends RST
				c.Close()
			},
			close: record.CloseReset, payload: "", bytes: 0,
		},
		{
			name: "peer reset after data keeps the data",
			client: func(t *testing.T, c *net.TCPConn, h *harness) {
				write(t, c, "EHLO x\r\n")
				h.waitActive(t, 1)
				_ = c.SetLinger(0)
				c.Close()
			},
			close: record.CloseReset, payload: "EHLO x\r\n", bytes: 8,
		},
	}
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0", "[::]:0"} {
		for _, tc := range tests {
			t.Run(listen+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				c := cfg()
				if tc.cfg != nil {
					tc.cfg(&c)
				}
				h := start(t, c, listen)
				conn := h.dial(t)
				src := localOf(conn)
				tc.client(t, conn, h)
				r := h.col.bySource(t, src)
				checkConn(t, r, conn, h)
				if r.Close != tc.close {
					t.Errorf("close_reason = %s, want %s", r.Close, tc.close)
				}
				switch {
				case tc.prefixOf != "":
					if !strings.HasPrefix(tc.prefixOf, string(r.Payload)) {
						t.Errorf("payload %q is not what the peer sent", r.Payload)
					}
				case string(r.Payload) != tc.payload:
					t.Errorf("payload = %q, want %q", trim(r.Payload), trim([]byte(tc.payload)))
				}
				if tc.bytes >= 0 && r.BytesReceived != uint64(tc.bytes) {
					t.Errorf("bytes_received = %d, want %d", r.BytesReceived, tc.bytes)
				}
				if tc.bytes < 0 && r.BytesReceived < uint64(len(r.Payload)) {
					t.Errorf("bytes_received = %d < payload %d", r.BytesReceived, len(r.Payload))
				}
				if r.Truncated != tc.truncated {
					t.Errorf("payload_truncated = %v, want %v", r.Truncated, tc.truncated)
				}
				if err := h.stop(t); err != nil {
					t.Errorf("Run: %v", err)
				}
				if n := len(h.col.snapshot()); n != 1 {
					t.Errorf("%d records for one connection", n)
				}
				if a := h.sens.Stats.Active.Load(); a != 0 {
					t.Errorf("active = %d after Run returned", a)
				}
			})
		}
	}
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(bound))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func trim(b []byte) []byte {
	if len(b) > 80 {
		return append(b[:80:80], "..."...)
	}
	return b
}

// Past max_sessions a connection is recorded with its addresses and closed unread.
func TestOverload(t *testing.T) {
	c := cfg()
	c.MaxSessions = 2
	h := start(t, c, "127.0.0.1:0")
	a, b := h.dial(t), h.dial(t)
	h.waitActive(t, 2)
	// The sensor resets an overloaded connection at once, possibly before connect returns, so
	// the client binds its port first to know its address either way.
	src, over := dialBound(t, h.addr)
	r := h.col.bySource(t, src)
	if r.Destination != h.addr || r.DestError != "" {
		t.Errorf("destination = %s (%s), want %s", r.Destination, r.DestError, h.addr)
	}
	if r.Close != record.CloseOverload || len(r.Payload) != 0 || r.BytesReceived != 0 {
		t.Errorf("overloaded connection: close %s, payload %q, %d bytes", r.Close, r.Payload, r.BytesReceived)
	}
	if over != nil {
		waitClosed(t, over)
	}
	if n := h.sens.Stats.Overload.Load(); n != 1 {
		t.Errorf("overload counter = %d, want 1", n)
	}
	// Room again once a session ends.
	write(t, a, "first")
	a.Close()
	if r := h.col.bySource(t, localOf(a)); r.Close != record.CloseEOF || string(r.Payload) != "first" {
		t.Errorf("first session: close %s, payload %q", r.Close, r.Payload)
	}
	h.waitActive(t, 1)
	d := h.dial(t)
	write(t, d, "after")
	d.Close()
	if r := h.col.bySource(t, localOf(d)); r.Close != record.CloseEOF || string(r.Payload) != "after" {
		t.Errorf("session after overload: close %s, payload %q", r.Close, r.Payload)
	}
	b.Close()
	h.col.bySource(t, localOf(b))
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := len(h.col.snapshot()); n != 4 {
		t.Errorf("%d records for 4 connections", n)
	}
}

// Stopping cuts open sessions after the grace, records them as shutdown, and Run returns.
func TestShutdown(t *testing.T) {
	c := cfg()
	c.ShutdownGrace = 200 * time.Millisecond
	h := start(t, c, "[::]:0")
	var conns []*net.TCPConn
	for i := 0; i < 5; i++ {
		conns = append(conns, h.dial(t))
	}
	write(t, conns[0], "partial")
	h.waitActive(t, 5)
	if err := h.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rs := h.col.snapshot()
	if len(rs) != 5 {
		t.Fatalf("%d records for 5 open sessions", len(rs))
	}
	for _, conn := range conns {
		r := h.col.bySource(t, localOf(conn))
		checkConn(t, r, conn, h)
		if r.Close != record.CloseShutdown {
			t.Errorf("close_reason = %s, want shutdown", r.Close)
		}
		if conn == conns[0] && !strings.HasPrefix("partial", string(r.Payload)) {
			t.Errorf("payload = %q", r.Payload)
		}
		waitClosed(t, conn)
	}
	if a := h.sens.Stats.Active.Load(); a != 0 {
		t.Errorf("active = %d after shutdown", a)
	}
}

// A session that ends by itself within the grace keeps its own close reason.
func TestShutdownGraceLetsSessionsFinish(t *testing.T) {
	c := cfg()
	c.ShutdownGrace = bound
	h := start(t, c, "127.0.0.1:0")
	conn := h.dial(t)
	h.waitActive(t, 1)
	h.cancel()
	// While it waits for the session, a stopping loop sleeps: it wakes for events and timers (at
	// least once a second), not in a spin. (A spinning loop made hundreds of thousands of turns here.)
	time.Sleep(50 * time.Millisecond) // let the stop signal reach the loop
	before := h.sens.Stats.Loops.Load()
	time.Sleep(300 * time.Millisecond)
	if turns := h.sens.Stats.Loops.Load() - before; turns > 100 {
		t.Errorf("the stopping loop turned %d times while nothing happened", turns)
	}
	write(t, conn, "late")
	conn.Close()
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	r := h.col.bySource(t, localOf(conn))
	if r.Close != record.CloseEOF || string(r.Payload) != "late" {
		t.Errorf("close %s, payload %q; want eof, \"late\"", r.Close, r.Payload)
	}
}

// Many connections at once: exactly one record each, with its own payload and a unique id.
func TestConcurrentConnections(t *testing.T) {
	const n = 300
	c := cfg()
	c.FirstByteTimeout = bound
	h := start(t, c, "[::]:0")
	var wg sync.WaitGroup
	srcs := make([]netip.AddrPort, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", h.addr.String(), bound)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			srcs[i] = localOf(conn)
			if i%5 == 0 {
				return // silent
			}
			_ = conn.SetWriteDeadline(time.Now().Add(bound))
			if _, err := fmt.Fprintf(conn, "conn-%d\x00\xff", i); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rs := h.col.wait(t, n)
	bySrc := map[netip.AddrPort]*record.Record{}
	ids := map[[16]byte]bool{}
	for _, r := range rs {
		if bySrc[r.Source] != nil {
			t.Errorf("two records from %s", r.Source)
		}
		bySrc[r.Source] = r
		if ids[r.SessionID] {
			t.Errorf("session id %s used twice", r.SessionID)
		}
		ids[r.SessionID] = true
	}
	for i, src := range srcs {
		r := bySrc[src]
		if r == nil {
			t.Errorf("connection %d from %s not recorded", i, src)
			continue
		}
		want := fmt.Sprintf("conn-%d\x00\xff", i)
		if i%5 == 0 {
			want = ""
		}
		if string(r.Payload) != want || r.Close != record.CloseEOF {
			t.Errorf("connection %d: payload %q close %s, want %q eof", i, r.Payload, r.Close, want)
		}
	}
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := len(h.col.snapshot()); got != n {
		t.Errorf("%d records for %d connections", got, n)
	}
	st := &h.sens.Stats
	if st.Accepted.Load() != n || st.Recorded.Load() != n || st.Active.Load() != 0 {
		t.Errorf("stats: accepted %d recorded %d active %d", st.Accepted.Load(), st.Recorded.Load(), st.Active.Load())
	}
}

// An admitter that refuses closes the connection unread and unrecorded.
type refuseAll struct {
	mu sync.Mutex
	n  int
}

func (a *refuseAll) Admit(netip.Addr, time.Duration) bool {
	a.mu.Lock()
	a.n++
	a.mu.Unlock()
	return false
}

func TestAdmitterRefuses(t *testing.T) {
	fd, err := socket.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	port, _ := socket.LocalPort(fd)
	col := newCollector()
	adm := &refuseAll{}
	s := sensor.New(cfg(), fd, col.emit, adm, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	_, conn := dialBound(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	if conn != nil {
		waitClosed(t, conn)
	}
	for deadline := time.Now().Add(bound); s.Stats.RateLimited.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(col.snapshot()); n != 0 {
		t.Errorf("%d records for a refused connection", n)
	}
	if s.Stats.RateLimited.Load() != 1 {
		t.Errorf("ratelimited = %d, want 1", s.Stats.RateLimited.Load())
	}
}

func TestListenRefusesBadSockets(t *testing.T) {
	if socket.IsListener(-1) {
		t.Error("IsListener(-1) = true")
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if socket.IsListener(fd) {
		t.Error("IsListener = true for a socket that does not listen")
	}
	ln, err := socket.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ln)
	port, _ := socket.LocalPort(ln)
	if _, err := socket.Listen(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)); err == nil {
		t.Error("a second Listen on a port in use succeeded")
	}
}

// eventpolls lists this process's epoll descriptors.
func eventpolls(t *testing.T) map[int]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "anon_inode:[eventpoll]" {
			var fd int
			fmt.Sscan(e.Name(), &fd)
			out[fd] = true
		}
	}
	return out
}

// An error that ends the event loop (here its epoll set stops being one) must not make the open
// sessions vanish: each is recorded, cut as at a stop, before Run returns the error.
func TestLoopErrorRecordsOpenSessions(t *testing.T) {
	before := eventpolls(t)
	h := start(t, cfg(), "127.0.0.1:0")
	var conns []*net.TCPConn
	for i := 0; i < 3; i++ {
		conns = append(conns, h.dial(t))
	}
	write(t, conns[1], "open")
	h.waitActive(t, 3)
	var ep []int
	for fd := range eventpolls(t) {
		if !before[fd] {
			ep = append(ep, fd)
		}
	}
	if len(ep) != 1 {
		t.Fatalf("found %d new epoll descriptors, want the sensor's one: %v", len(ep), ep)
	}
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(null)
	if err := unix.Dup3(null, ep[0], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.done:
		close(h.done)
		if err == nil {
			t.Fatal("Run returned no error with its epoll set gone")
		}
		t.Logf("Run: %v", err)
	case <-time.After(bound):
		t.Fatal("Run did not return after its epoll set went")
	}
	rs := h.col.snapshot()
	if len(rs) != 3 {
		t.Fatalf("%d records for 3 open sessions when the loop failed", len(rs))
	}
	for _, r := range rs {
		if r.Close != record.CloseShutdown {
			t.Errorf("close_reason %s, want shutdown", r.Close)
		}
	}
	if a := h.sens.Stats.Active.Load(); a != 0 {
		t.Errorf("active = %d after the loop failed", a)
	}
}
