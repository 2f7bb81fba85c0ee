package monitor_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"spip/pkg/monitor"
	"spip/pkg/record"
	"spip/pkg/sd"
	"spip/pkg/sensor"
	"spip/pkg/sink"
)

// notified is what arrived on a real NOTIFY_SOCKET the test bound.
type notified struct {
	mu   sync.Mutex
	msgs []msg
}

type msg struct {
	at   time.Time
	text string
}

func (n *notified) all() []msg {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]msg(nil), n.msgs...)
}

func (n *notified) count(prefix string) int {
	c := 0
	for _, m := range n.all() {
		for _, line := range strings.Split(m.text, "\n") {
			if strings.HasPrefix(line, prefix) {
				c++
			}
		}
	}
	return c
}

func (n *notified) last(prefix string) string {
	out := ""
	for _, m := range n.all() {
		for _, line := range strings.Split(m.text, "\n") {
			if strings.HasPrefix(line, prefix) {
				out = line
			}
		}
	}
	return out
}

// notifySocket binds a unixgram socket, points NOTIFY_SOCKET at it and collects messages.
func notifySocket(t *testing.T) *notified {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	n := &notified{}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := c.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, msg{time.Now(), string(buf[:k])})
			n.mu.Unlock()
		}
	}()
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// loop stands in for the event loop's proof of life: it advances Loops until frozen.
func loop(stats *sensor.Stats, frozen *atomic.Bool, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-time.After(20 * time.Millisecond):
			if !frozen.Load() {
				stats.Loops.Add(1)
			}
		}
	}
}

func connection(i int) *record.Record {
	return &record.Record{
		Kind: record.KindConnection, Time: time.Now(),
		Source:      netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(1024+i)),
		Destination: netip.MustParseAddrPort("198.51.100.2:23"),
		Payload:     []byte("x"),
	}
}

// TestWatchdog runs the monitor against a real NOTIFY_SOCKET, with WATCHDOG_USEC read the way
// serve reads it, and a journald sink whose reader has stopped reading: pings arrive while the
// loop advances, despite the stalled sink; they stop when the loop is wedged and come back when
// it moves again. STATUS= carries the counters and the fault, and the drops become summary records.
func TestWatchdog(t *testing.T) {
	n := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", "")
	os.Unsetenv("WATCHDOG_PID")
	interval := sd.WatchdogInterval()
	if interval != 500*time.Millisecond {
		t.Fatalf("WatchdogInterval() = %v with WATCHDOG_USEC=1000000, want half: 500ms", interval)
	}

	// A journald that never reads: the slow sink.
	jpath := filepath.Join(t.TempDir(), "journal")
	jc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: jpath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	js, err := sink.NewJournal(jpath, record.NewEncoder("t"), 32)
	if err != nil {
		t.Fatal(err)
	}
	fan := sink.NewFanout()
	fan.Add(js)
	fan.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		fan.Stop(ctx)
	}()
	const offered = 500
	for i := 0; i < offered; i++ {
		fan.Emit(connection(i))
	}

	var stats sensor.Stats
	stats.Recorded.Store(offered)
	stats.Active.Store(3)
	var frozen atomic.Bool
	done := make(chan struct{})
	defer close(done)
	go loop(&stats, &frozen, done)

	var emu sync.Mutex
	var emitted []*record.Record
	m := &monitor.Monitor{
		Sensor: &stats,
		Sinks:  fan.Stats,
		Emit: func(r *record.Record) {
			emu.Lock()
			emitted = append(emitted, r)
			emu.Unlock()
			fan.Emit(r)
		},
		Notify:           sd.Notify,
		MaxSessions:      1024,
		StatusInterval:   200 * time.Millisecond,
		SummaryInterval:  300 * time.Millisecond,
		WatchdogInterval: interval,
		StallAfter:       time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	mdone := make(chan struct{})
	go func() { defer close(mdone); m.Run(ctx) }()
	defer func() { cancel(); <-mdone }()

	// Alive, with a stalled sink: pings keep coming.
	waitFor(t, "three pings while the loop advances and journald is stalled", func() bool { return n.count("WATCHDOG=1") >= 3 })
	waitFor(t, "STATUS= to show the stalled journald", func() bool {
		return strings.Contains(n.last("STATUS="), "failing: journald: send timed out")
	})
	status := n.last("STATUS=")
	t.Logf("status: %s", status)
	for _, want := range []string{"recorded 500", "active 3/1024", "journald: "} {
		if !strings.Contains(status, want) {
			t.Errorf("STATUS= %q lacks %q", status, want)
		}
	}
	var pings []time.Time
	for _, m := range n.all() {
		if m.text == "WATCHDOG=1" {
			pings = append(pings, m.at)
		}
	}
	for i := 1; i < len(pings); i++ {
		t.Logf("ping interval %v (WATCHDOG_USEC 1s)", pings[i].Sub(pings[i-1]).Round(time.Millisecond))
	}

	// Wedged: once the monitor has seen it, no more pings.
	frozen.Store(true)
	waitFor(t, "STATUS= to report the wedged loop", func() bool { return strings.Contains(n.last("STATUS="), "EVENT LOOP STALLED") })
	before := n.count("WATCHDOG=1")
	time.Sleep(4 * interval)
	if after := n.count("WATCHDOG=1"); after != before {
		t.Errorf("%d pings arrived while the event loop was wedged", after-before)
	}
	if m.Healthy(time.Now()) {
		t.Error("Healthy with a wedged loop")
	}

	// Moving again: pings come back.
	frozen.Store(false)
	waitFor(t, "pings to resume", func() bool { return n.count("WATCHDOG=1") > before })

	// The drops became summary records with the counts, at warning priority.
	waitFor(t, "a summary record for the journald drops", func() bool {
		emu.Lock()
		defer emu.Unlock()
		for _, r := range emitted {
			if r.Kind == record.KindSummary {
				return true
			}
		}
		return false
	})
	emu.Lock()
	defer emu.Unlock()
	var total int64
	for _, r := range emitted {
		if r.Kind != record.KindSummary {
			continue
		}
		if r.Priority() != record.PriWarning || r.Kind.MessageID() != "87cddb7d282c49c7bcd0a732159362c0" {
			t.Errorf("summary priority %d, id %s", r.Priority(), r.Kind.MessageID())
		}
		f := fields(r)
		if f[record.KeySink].Str != "journald" || !strings.Contains(f[record.KeyReason].Str, "queue was full") {
			t.Errorf("summary %q: fields %+v", r.Message, f)
		}
		total += f[record.KeyDropped].Int
		if got := f[record.KeyDroppedTotal].Int; got != total {
			t.Errorf("dropped_total %d, want the running sum %d", got, total)
		}
		t.Logf("summary: %s", r.Message)
	}
	if total == 0 || uint64(total) > js.Stats().Lost() {
		t.Errorf("summaries count %d lost, the sink %d", total, js.Stats().Lost())
	}
}

func fields(r *record.Record) map[record.Key]record.Field {
	out := map[record.Key]record.Field{}
	for _, f := range r.Fields {
		out[f.Key] = f
	}
	return out
}

// TestBlockedOutputIsNotStuck: a JSON sink writing into a FIFO nobody reads blocks inside its
// write for good. That is a slow output: STATUS= says so, and the watchdog keeps pinging.
func TestBlockedOutputIsNotStuck(t *testing.T) {
	n := notifySocket(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	js, err := sink.NewJSON(fifo, record.NewEncoder("t"), 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	fan := sink.NewFanout()
	fan.Add(js)
	fan.Start()
	// The fan is never stopped: its writer is blocked for good; the test process ends it.
	for i := 0; i < 20000; i++ {
		fan.Emit(connection(i % 60000))
	}
	var stats sensor.Stats
	var frozen atomic.Bool
	done := make(chan struct{})
	defer close(done)
	go loop(&stats, &frozen, done)
	m := &monitor.Monitor{
		Sensor: &stats, Sinks: fan.Stats, Emit: func(r *record.Record) { fan.Emit(r) }, Notify: sd.Notify,
		MaxSessions: 10, StatusInterval: 200 * time.Millisecond, SummaryInterval: time.Hour,
		WatchdogInterval: 100 * time.Millisecond, StallAfter: time.Second, SinkStallAfter: time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	mdone := make(chan struct{})
	go func() { defer close(mdone); m.Run(ctx) }()
	defer func() { cancel(); <-mdone }()
	waitFor(t, "STATUS= to report the blocked output", func() bool {
		return strings.Contains(n.last("STATUS="), "output blocked for")
	})
	before := n.count("WATCHDOG=1")
	waitFor(t, "pings past the sink stall limit", func() bool { return n.count("WATCHDOG=1") >= before+15 })
	t.Logf("status: %s", n.last("STATUS="))
	if !m.Healthy(time.Now()) {
		t.Error("a blocked output made the monitor unhealthy")
	}
}

// TestStuckWriter: a sink writer that stops beating outside any output write is a stuck
// goroutine (a deadlock): the pings stop and STATUS= names it. The sink's counters are
// replayed frozen here; a real deadlock can't be made on purpose without planting one.
func TestStuckWriter(t *testing.T) {
	n := notifySocket(t)
	var stats sensor.Stats
	var frozen atomic.Bool
	done := make(chan struct{})
	defer close(done)
	go loop(&stats, &frozen, done)
	var beats atomic.Uint64
	m := &monitor.Monitor{
		Sensor: &stats,
		Sinks: func() []sink.Stats {
			return []sink.Stats{{Name: "json", Beats: beats.Load()}}
		},
		Emit: func(*record.Record) {}, Notify: sd.Notify,
		MaxSessions: 10, StatusInterval: 100 * time.Millisecond, SummaryInterval: time.Hour,
		WatchdogInterval: 100 * time.Millisecond, StallAfter: time.Second, SinkStallAfter: time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	mdone := make(chan struct{})
	go func() { defer close(mdone); m.Run(ctx) }()
	defer func() { cancel(); <-mdone }()
	waitFor(t, "STATUS= to name the stuck writer", func() bool {
		return strings.Contains(n.last("STATUS="), "json WRITER STUCK")
	})
	before := n.count("WATCHDOG=1")
	time.Sleep(500 * time.Millisecond)
	if after := n.count("WATCHDOG=1"); after != before {
		t.Errorf("%d pings with a stuck writer", after-before)
	}
	beats.Add(1)
	waitFor(t, "pings to resume once the writer beats", func() bool { return n.count("WATCHDOG=1") > before })
}

// A standing warning from start-up (a listener tproxy mode cannot use) stays in every STATUS=.
func TestStatusLineCarriesWarnings(t *testing.T) {
	m := &monitor.Monitor{
		Sensor: &sensor.Stats{}, Sinks: func() []sink.Stats { return nil }, MaxSessions: 1,
		Warnings: []string{"socket not transparent (set Transparent=yes)"},
	}
	for i := 0; i < 2; i++ {
		if got := m.StatusLine(time.Now()); !strings.HasSuffix(got, "; warning: socket not transparent (set Transparent=yes)") {
			t.Errorf("STATUS= line %q does not end with the warning", got)
		}
	}
}
