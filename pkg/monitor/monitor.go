// Package monitor reports spip's health: the STATUS= line, watchdog pings and periodic summary records.
package monitor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"spip/pkg/record"
	"spip/pkg/sensor"
	"spip/pkg/sink"
)

// stallAfter is how long the event loop may show no progress before the watchdog is starved.
// The loop wakes at least once a second, so three seconds of silence means it is wedged.
const stallAfter = 3 * time.Second

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

	lastLoops    uint64
	lastProgress time.Time
	lastRecorded uint64
	lastStatusAt time.Time
	lastLost     map[string]uint64
	lastOverload uint64
	lastLimited  uint64
}

// Run reports until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	now := time.Now()
	m.lastProgress, m.lastStatusAt = now, now
	m.lastLost = map[string]uint64{}
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
			if loops := m.Sensor.Loops.Load(); loops != m.lastLoops {
				m.lastLoops, m.lastProgress = loops, now
			}
			if m.WatchdogInterval > 0 && now.Sub(lastPing) >= m.WatchdogInterval && m.Healthy(now) {
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

// Healthy reports whether the event loop made progress recently. A slow sink does not count
// against it: restarting spip would not make journald faster.
func (m *Monitor) Healthy(now time.Time) bool { return now.Sub(m.lastProgress) < stallAfter }

// StatusLine is the STATUS= text: what an operator needs at a glance in systemctl status.
func (m *Monitor) StatusLine(now time.Time) string {
	rec := m.Sensor.Recorded.Load()
	rate := 0.0
	if dt := now.Sub(m.lastStatusAt).Seconds(); dt > 0 {
		rate = float64(rec-m.lastRecorded) / dt
	}
	m.lastRecorded, m.lastStatusAt = rec, now
	var b strings.Builder
	fmt.Fprintf(&b, "STATUS=recorded %d (%.0f/s), active %d/%d", rec, rate, m.Sensor.Active.Load(), m.MaxSessions)
	if o := m.Sensor.Overload.Load(); o > 0 {
		fmt.Fprintf(&b, ", overload %d", o)
	}
	if l := m.Sensor.RateLimited.Load(); l > 0 {
		fmt.Fprintf(&b, ", rate-limited %d", l)
	}
	for _, s := range m.Sinks() {
		fmt.Fprintf(&b, "; %s: %d written, %d lost", s.Name, s.Written, s.Lost())
		if s.Faulty {
			fmt.Fprintf(&b, " (failing: %s)", s.LastErr)
		}
	}
	if !m.Healthy(now) {
		b.WriteString("; EVENT LOOP STALLED")
	}
	return b.String()
}

// Summarize emits one summary record per kind of loss since the last call, if there was any.
func (m *Monitor) Summarize(now time.Time) {
	for _, s := range m.Sinks() {
		lost := s.Lost()
		if d := lost - m.lastLost[s.Name]; d > 0 {
			m.lastLost[s.Name] = lost
			reason := "queue full: the sink is slower than the connection rate"
			if s.Failed > 0 && s.LastErr != "" {
				reason = "queue full or write failed: " + s.LastErr
			}
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
