package flood

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"spip/pkg/record"
	"spip/pkg/sensor"
	"spip/pkg/sink"
	"spip/pkg/socket"
)

// inProc is a sensor on a loopback port with a fanout over one JSON sink, run in this process so
// the test reads the exact counters.
type inProc struct {
	sens   *sensor.Sensor
	fan    *sink.Fanout
	port   uint16
	cancel context.CancelFunc
	done   chan error
	warns  atomic.Int64
}

func startInProc(t *testing.T, cfg sensor.Config, jsonPath string, queue int) *inProc {
	t.Helper()
	fd, err := socket.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	port, err := socket.LocalPort(fd)
	if err != nil {
		t.Fatal(err)
	}
	js, err := sink.NewJSON(jsonPath, record.NewEncoder("floodtest"), queue)
	if err != nil {
		t.Fatal(err)
	}
	p := &inProc{fan: sink.NewFanout(), port: port, done: make(chan error, 1)}
	p.fan.Add(js)
	p.fan.Start()
	p.sens = sensor.New(cfg, fd, func(r *record.Record) { p.fan.Emit(r) }, nil, func(string) { p.warns.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.done <- p.sens.Run(ctx) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends the sensor, then drains the sink, and returns the sink's final counters.
func (p *inProc) stop(t *testing.T) sink.Stats {
	if p.cancel == nil {
		return p.fan.Stats()[0]
	}
	p.cancel()
	p.cancel = nil
	if err := <-p.done; err != nil {
		t.Errorf("sensor: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p.fan.Stop(ctx)
	return p.fan.Stats()[0]
}

// until polls cond, bounded so a broken sensor fails the test instead of hanging it.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Connections arriving faster than max_sessions allows each still get a record: the excess
// is recorded unread with close_reason overload, and the counts add up exactly.
func TestFloodOverload(t *testing.T) {
	const (
		maxSessions = 64
		conns       = 5000
	)
	raiseNoFile(t, 2*conns+1000)
	out := filepath.Join(t.TempDir(), "records.json")
	p := startInProc(t, sensor.Config{
		PayloadCap: 4096, FirstByteTimeout: time.Hour, IdleTimeout: time.Hour, MaxDuration: 2 * time.Hour,
		MaxSessions: maxSessions, CloseWithReset: true,
	}, out, 1<<16)
	st := &p.sens.Stats

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	d := newDialer(t, p.port, loopbacks(2, 10)...)
	for len(d.fds) < conns {
		for i := 0; i < 500 && len(d.fds) < conns; i++ {
			d.dial()
		}
		want := uint64(len(d.fds))
		until(t, "accepts", func() bool { return st.Accepted.Load() == want })
	}
	if a, o := st.Active.Load(), st.Overload.Load(); a != maxSessions || o != conns-maxSessions {
		t.Errorf("%d connections held open: %d active, %d overload; want %d and %d", conns, a, o, maxSessions, conns-maxSessions)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("heap in use: %d KiB before the flood, %d KiB with %d sessions and %d overload records written",
		before.HeapInuse>>10, after.HeapInuse>>10, maxSessions, conns-maxSessions)

	// A new connection still gets in once a slot frees up.
	d.closeAll()
	until(t, "every record", func() bool { return st.Recorded.Load() == conns && st.Active.Load() == 0 })
	nd := newDialer(t, p.port, loopbacks(50, 1)...)
	fd := nd.dial()
	nd.send(fd, []byte("after the flood"))
	nd.closeAll()
	until(t, "the late connection's record", func() bool { return st.Recorded.Load() == conns+1 })

	fin := p.stop(t)
	if st.Accepted.Load() != st.Recorded.Load() {
		t.Errorf("accepted %d, recorded %d", st.Accepted.Load(), st.Recorded.Load())
	}
	if fin.Written+fin.Lost() != st.Recorded.Load() {
		t.Errorf("sink wrote %d and lost %d, the sensor recorded %d", fin.Written, fin.Lost(), st.Recorded.Load())
	}

	// Every client connection is in the file exactly once, by its source address and port. A
	// port can be used twice: an overload close resets the client, which frees its port.
	seen := map[netip.AddrPort]int{}
	reasons := map[string]int{}
	late := 0
	for _, r := range readRecords(t, out) {
		seen[netip.AddrPortFrom(netip.MustParseAddr(r.SourceIP), uint16(r.SourcePort))]++
		reasons[r.CloseReason]++
		if r.Payload == "after the flood" {
			late++
		}
	}
	dialed := map[netip.AddrPort]int{}
	for _, ap := range append(d.local, nd.local...) {
		dialed[ap]++
	}
	for ap, n := range dialed {
		if seen[ap] != n {
			t.Fatalf("%s connected %d times, %d records", ap, n, seen[ap])
		}
	}
	if n := reasons["overload"]; n != conns-maxSessions || late != 1 || len(dialed) != len(seen) {
		t.Errorf("records by close reason %v (late %d), want %d overload and the late one", reasons, late, conns-maxSessions)
	}
}

// A flood of connections at twice and ten times what the sink can write: the sink writes at its
// pace, the excess is dropped and counted, and written + dropped is exactly what was recorded.
// The sink is a FIFO read at a fixed pace; the figures are logged for BENCHMARKS.md.
func TestFloodSinkCapacity(t *testing.T) {
	if testing.Short() {
		t.Skip("floods for several seconds")
	}
	const (
		capacity = 200 // records per second the reader takes: low, so the client reaches 10x on a busy machine
		seconds  = 8
		queue    = 256
	)
	raiseNoFile(t, 20000)
	for _, factor := range []int{2, 10} {
		t.Run(fmt.Sprintf("%dx", factor), func(t *testing.T) {
			dir := t.TempDir()
			fifo := filepath.Join(dir, "records.fifo")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			// Non-blocking, so the runtime polls it and Close ends a blocked read.
			rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			p := startInProc(t, sensor.Config{
				PayloadCap: 4096, FirstByteTimeout: time.Hour, IdleTimeout: time.Hour, MaxDuration: 2 * time.Hour,
				MaxSessions: 16384, CloseWithReset: true,
			}, fifo, queue)
			st := &p.sens.Stats

			// The reader: capacity lines a second until told to hurry (to drain at the end).
			var lines, conns atomic.Int64
			var hurry atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				sc := bufio.NewScanner(rd)
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				tick := time.NewTicker(time.Second / capacity)
				defer tick.Stop()
				for sc.Scan() {
					var r rec
					if json.Unmarshal(sc.Bytes(), &r) == nil && r.SessionID != "" {
						conns.Add(1)
					}
					lines.Add(1)
					if !hurry.Load() {
						<-tick.C
					}
				}
			}()

			var peak uint64
			var ms runtime.MemStats
			d := newDialer(t, p.port, loopbacks(2, 20)...)
			rate := capacity * factor
			start := time.Now()
			sent := 0
			for sec := 0; sec < seconds; sec++ {
				// rate connections per second in slices of 10 ms; each closes at once (an EOF record).
				for slice := 0; slice < 100; slice++ {
					for i := 0; i < rate/100; i++ {
						fd := d.dial()
						if d.established(fd) {
							sent++
						}
						_ = syscall.Close(fd)
					}
					d.fds = d.fds[:0]
					if wait := time.Until(start.Add(time.Duration(sec)*time.Second + time.Duration(slice+1)*10*time.Millisecond)); wait > 0 {
						time.Sleep(wait)
					}
				}
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			elapsed := time.Since(start)
			until(t, "every connection accounted", func() bool { return st.Recorded.Load() == uint64(sent) })
			mid := p.fan.Stats()[0]
			hurry.Store(true)
			fin := p.stop(t)
			rd.Close()
			wg.Wait()

			if st.Accepted.Load() != uint64(sent) || st.Recorded.Load() != uint64(sent) {
				t.Errorf("sent %d connections: accepted %d, recorded %d", sent, st.Accepted.Load(), st.Recorded.Load())
			}
			if fin.Written+fin.Lost() != uint64(sent) {
				t.Errorf("written %d + lost %d != recorded %d", fin.Written, fin.Lost(), sent)
			}
			if got := uint64(conns.Load()); got > fin.Written {
				t.Errorf("the reader got %d records, the sink says it wrote %d", got, fin.Written)
			}
			if fin.Dropped == 0 {
				t.Errorf("a flood at %dx the sink's capacity dropped nothing: the test is not measuring a flood", factor)
			}
			t.Logf("%dx (achieved %.1fx): %d connections in %.1fs (%.0f/s) against a sink read at %d/s with queue %d: %d written, %d dropped (%.1f%% kept); at the flood's end %d written, %d dropped; peak heap %d KiB",
				factor, float64(sent)/elapsed.Seconds()/capacity, sent, elapsed.Seconds(), float64(sent)/elapsed.Seconds(), capacity, queue, fin.Written, fin.Lost(),
				100*float64(fin.Written)/float64(sent), mid.Written, mid.Lost(), peak>>10)
			if f := os.Getenv("FLOODTEST_FIGURES"); f != "" {
				appendFile(t, f, fmt.Sprintf("flood %dx: sent=%d rate=%.0f/s capacity=%d/s queue=%d written=%d dropped=%d peak_heap_kib=%d\n",
					factor, sent, float64(sent)/elapsed.Seconds(), capacity, queue, fin.Written, fin.Lost(), peak>>10))
			}
		})
	}
}
