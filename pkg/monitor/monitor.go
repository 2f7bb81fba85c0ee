// Package monitor reports spip's health: the STATUS= line, watchdog pings and periodic summary records.
package monitor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"spip/pkg/record"
	"spip/pkg/sensor"
	"spip/pkg/sink"
)

// stallAfter is how long the event loop may show no progress before the watchdog is starved.
// The loop wakes at least once a second, so three seconds of silence means it is wedged.
const stallAfter = 3 * time.Second

// sinkStallAfter is how long a sink's writer goroutine may show no sign of life. It wakes every
// two seconds when idle and on every send timeout while its output stalls, so only a goroutine
// that is stuck (a deadlock) stays silent this long outside an output write. A slow, blocked or
// stalled output is not stuck: it is reported in STATUS= and in summaries, and a restart would
// not make it faster.
const sinkStallAfter = 10 * time.Second

// Suppressor reports connections suppressed by the per-source budget since its last report.
type Suppressor interface {
	// TakeTop returns up to n sources with the most suppressed connections since the last call,
	// formatted "addr=count", and resets the per-source counts.
	TakeTop(n int) []string
}

// Monitor watches the sensor and the sinks.
type Monitor struct {
	Sensor          *sensor.Stats
	Sinks           func() []sink.Stats
	Emit            func(*record.Record)
	Notify          func(state ...string) error
	Suppressed      Suppressor // may be nil
	MaxSessions     int
	StatusInterval  time.Duration
	SummaryInterval time.Duration
	// WatchdogInterval is how often to ping (half of WatchdogSec=); 0 turns pinging off.
	WatchdogInterval time.Duration
	// Warnings are standing problems found at start (a listener the capture mode cannot use):
	// each ends every STATUS= line until spip restarts. Set before Run; never changed.
	Warnings []string
	// StallAfter and SinkStallAfter override stallAfter and sinkStallAfter (tests).
	StallAfter, SinkStallAfter time.Duration

	// mu guards what follows: serve calls StatusLine from its SIGHUP handler while Run runs.
	mu           sync.Mutex
	started      bool
	lastLoops    uint64
	lastProgress time.Time
	lastRecorded uint64
	lastStatusAt time.Time
	lastLost     map[string]uint64
	lastFailed   map[string]uint64
	sinkBeats    map[string]uint64
	sinkProgress map[string]time.Time
	sinkBlocked  map[string]time.Duration
	lastOverload uint64
	lastLimited  uint64
	lastUDPLimit uint64
	lastUDPKern  uint64
}

// Run reports until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	now := time.Now()
	m.mu.Lock()
	m.start(now)
	m.mu.Unlock()
	status := time.NewTicker(m.StatusInterval)
	defer status.Stop()
	summary := time.NewTicker(m.SummaryInterval)
	defer summary.Stop()
	// The progress check runs often so that one late loop wake-up never costs a ping.
	check := time.NewTicker(250 * time.Millisecond)
	defer check.Stop()
	var lastPing time.Time
	_ = m.Notify(m.StatusLine(now))
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-check.C:
			m.mu.Lock()
			m.observe(now)
			healthy := len(m.stuck(now)) == 0
			m.mu.Unlock()
			if m.WatchdogInterval > 0 && now.Sub(lastPing) >= m.WatchdogInterval && healthy {
				_ = m.Notify("WATCHDOG=1")
				lastPing = now
			}
		case now := <-status.C:
			_ = m.Notify(m.StatusLine(now))
		case now := <-summary.C:
			m.Summarize(now)
		}
	}
}

// start sets up the state, once; the caller holds mu.
func (m *Monitor) start(now time.Time) {
	if m.started {
		return
	}
	m.started = true
	m.lastProgress, m.lastStatusAt = now, now
	m.lastLost, m.lastFailed = map[string]uint64{}, map[string]uint64{}
	m.sinkBeats, m.sinkProgress = map[string]uint64{}, map[string]time.Time{}
	m.sinkBlocked = map[string]time.Duration{}
}

// observe notes which parts made progress since the last look; the caller holds mu.
func (m *Monitor) observe(now time.Time) {
	if loops := m.Sensor.Loops.Load(); loops != m.lastLoops {
		m.lastLoops, m.lastProgress = loops, now
	}
	for _, s := range m.Sinks() {
		if last, seen := m.sinkBeats[s.Name]; !seen || s.Beats != last {
			m.sinkBeats[s.Name], m.sinkProgress[s.Name] = s.Beats, now
		}
		m.sinkBlocked[s.Name] = s.Blocked
	}
}

// Healthy reports whether the event loop and every sink's writer made progress recently. A slow
// or stalled output does not count against it (its writer keeps beating while it retries):
// restarting spip would not make journald faster.
func (m *Monitor) Healthy(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.start(now)
	return len(m.stuck(now)) == 0
}

// stuck names the parts that stopped making progress; the caller holds mu.
func (m *Monitor) stuck(now time.Time) []string {
	var out []string
	if now.Sub(m.lastProgress) >= m.stallAfter() {
		out = append(out, "EVENT LOOP STALLED")
	}
	for name, at := range m.sinkProgress {
		// A writer waiting inside its output's write is slow, not stuck: STATUS= says so.
		if now.Sub(at) >= m.sinkStallAfter() && m.sinkBlocked[name] == 0 {
			out = append(out, name+" WRITER STUCK")
		}
	}
	sort.Strings(out)
	return out
}

func (m *Monitor) stallAfter() time.Duration {
	if m.StallAfter > 0 {
		return m.StallAfter
	}
	return stallAfter
}

func (m *Monitor) sinkStallAfter() time.Duration {
	if m.SinkStallAfter > 0 {
		return m.SinkStallAfter
	}
	return sinkStallAfter
}

// StatusLine is the STATUS= text: what an operator needs at a glance in systemctl status.
func (m *Monitor) StatusLine(now time.Time) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.start(now)
	rec := m.Sensor.Recorded.Load()
	rate := 0.0
	if dt := now.Sub(m.lastStatusAt).Seconds(); dt > 0 {
		rate = float64(rec-m.lastRecorded) / dt
	}
	m.lastRecorded, m.lastStatusAt = rec, now
	var b strings.Builder
	fmt.Fprintf(&b, "STATUS=recorded %d (%.0f/s), active %d/%d", rec, rate, m.Sensor.Active.Load(), m.MaxSessions)
	if r := m.Sensor.Restored.Load(); r > 0 {
		// Counters start again with each process; these sessions were open when it started.
		fmt.Fprintf(&b, ", taken over %d", r)
	}
	if o := m.Sensor.Overload.Load(); o > 0 {
		fmt.Fprintf(&b, ", overload %d", o)
	}
	if l := m.Sensor.RateLimited.Load(); l > 0 {
		fmt.Fprintf(&b, ", rate-limited %d", l)
	}
	if f := m.Sensor.FDExhausted.Load(); f > 0 {
		fmt.Fprintf(&b, ", out of file descriptors %d times", f)
	}
	if d := m.Sensor.Datagrams.Load(); d > 0 {
		fmt.Fprintf(&b, "; udp: %d datagrams, %d flows, active %d", d, m.Sensor.UDPFlows.Load(), m.Sensor.ActiveUDP.Load())
		if o := m.Sensor.UDPOverLimit.Load(); o > 0 {
			fmt.Fprintf(&b, ", %d dropped over max_udp_flows", o)
		}
	}
	if k := m.Sensor.UDPKernelDrops.Load(); k > 0 {
		fmt.Fprintf(&b, "; udp receive buffer overflowed: %d datagrams lost", k)
	}
	for _, s := range m.Sinks() {
		fmt.Fprintf(&b, "; %s: %d written, %d lost", s.Name, s.Written, s.Lost())
		if s.Faulty {
			fmt.Fprintf(&b, " (failing: %s)", s.LastErr)
		}
		if s.Blocked >= time.Second {
			fmt.Fprintf(&b, " (output blocked for %s)", s.Blocked.Round(time.Second))
		}
	}
	for _, s := range m.stuck(now) {
		b.WriteString("; " + s)
	}
	for _, w := range m.Warnings {
		b.WriteString("; warning: " + w)
	}
	return b.String()
}

// Summarize emits one summary record per kind of loss since the last call, if there was any.
func (m *Monitor) Summarize(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.start(now)
	for _, s := range m.Sinks() {
		lost := s.Lost()
		if d := lost - m.lastLost[s.Name]; d > 0 {
			failed := s.Failed - m.lastFailed[s.Name]
			m.lastLost[s.Name], m.lastFailed[s.Name] = lost, s.Failed
			var why []string
			if dropped := d - failed; dropped > 0 {
				why = append(why, fmt.Sprintf("%d dropped because the queue was full (the output is slower than the connection rate)", dropped))
			}
			if failed > 0 {
				why = append(why, fmt.Sprintf("%d lost by failing writes (last error: %s)", failed, s.LastErr))
			}
			reason := strings.Join(why, "; ")
			m.Emit(&record.Record{
				Kind:    record.KindSummary,
				Time:    now,
				Message: fmt.Sprintf("%s sink lost %d records (%d since start): %s", s.Name, d, lost, reason),
				Fields: []record.Field{
					record.Str(record.KeySink, s.Name),
					record.Int(record.KeyDropped, int64(d)),
					record.Int(record.KeyDroppedTotal, int64(lost)),
					record.Str(record.KeyReason, reason),
					record.Int(record.KeyIntervalSeconds, int64(m.SummaryInterval.Seconds())),
				},
			})
		}
	}
	m.summarizeUDP(now)
	overload := m.Sensor.Overload.Load()
	limited := m.Sensor.RateLimited.Load()
	if overload == m.lastOverload && limited == m.lastLimited {
		return
	}
	fields := []record.Field{
		record.Int(record.KeyOverloadTotal, int64(overload)),
		record.Int(record.KeyRateLimited, int64(limited-m.lastLimited)),
		record.Int(record.KeyRateLimitedTotal, int64(limited)),
		record.Int(record.KeyIntervalSeconds, int64(m.SummaryInterval.Seconds())),
	}
	msg := fmt.Sprintf("%d connections recorded unread (overload), %d suppressed by the per-source budget", overload-m.lastOverload, limited-m.lastLimited)
	if m.Suppressed != nil {
		if top := m.Suppressed.TakeTop(10); len(top) > 0 {
			fields = append(fields, record.Str(record.KeyTopSources, strings.Join(top, " ")))
			msg += "; top sources: " + strings.Join(top, " ")
		}
	}
	m.lastOverload, m.lastLimited = overload, limited
	m.Emit(&record.Record{Kind: record.KindSummary, Time: now, Message: msg, Fields: fields})
}

// summarizeUDP emits a summary of the datagrams lost since the last call, if any: those of new
// flows past session.max_udp_flows and those the kernel dropped for a full receive buffer. The
// caller holds mu.
func (m *Monitor) summarizeUDP(now time.Time) {
	limit, kern := m.Sensor.UDPOverLimit.Load(), m.Sensor.UDPKernelDrops.Load()
	dl, dk := limit-m.lastUDPLimit, kern-m.lastUDPKern
	if dl == 0 && dk == 0 {
		return
	}
	m.lastUDPLimit, m.lastUDPKern = limit, kern
	reason := fmt.Sprintf("%d over session.max_udp_flows, %d by the kernel for a full receive buffer", dl, dk)
	m.Emit(&record.Record{
		Kind:    record.KindSummary,
		Time:    now,
		Message: fmt.Sprintf("%d UDP datagrams dropped unrecorded (%d since start): %s", dl+dk, limit+kern, reason),
		Fields: []record.Field{
			record.Int(record.KeyUDPDropped, int64(dl+dk)),
			record.Int(record.KeyUDPDroppedTotal, int64(limit+kern)),
			record.Str(record.KeyReason, reason),
			record.Int(record.KeyIntervalSeconds, int64(m.SummaryInterval.Seconds())),
		},
	})
}
