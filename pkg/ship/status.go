package ship

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"spip/pkg/export"
)

// monitor measures the lag and sends STATUS= every StatusInterval, and pings the watchdog
// while the shipping loop shows signs of life (it beats while it waits, reads and retries; a
// wedged loop stops the pings and systemd restarts the shipper).
func (s *Shipper) monitor(ctx context.Context) {
	status := time.NewTicker(s.cfg.StatusInterval)
	defer status.Stop()
	var wd <-chan time.Time
	if s.cfg.WatchdogInterval > 0 {
		t := time.NewTicker(s.cfg.WatchdogInterval)
		defer t.Stop()
		wd = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-wd:
			// The loop beats at least every FlushInterval and every retry (at most maxBackoff
			// apart) and after each INSERT (bounded by the HTTP client's timeout).
			if time.Since(time.Unix(0, s.heartbeat.Load())) < 3*time.Minute {
				s.notify("WATCHDOG=1")
			}
		case <-status.C:
			s.measureLag(ctx)
			s.notify(s.statusLine())
		}
	}
}

// measureLag asks journalctl for the newest spip record and compares it with the last one
// ClickHouse acknowledged. Sequence numbers count every journal entry, not only spip's, so the
// number behind is an upper bound; it is exact when spip writes most of the journal.
func (s *Shipper) measureLag(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	args := append(s.journalArgs(), "-n", "1", "SYSLOG_IDENTIFIER=spip")
	out, err := exec.CommandContext(ctx, s.cfg.Journalctl, args...).Output()
	behind, lag := int64(-1), 0.0
	if err == nil {
		e, rerr := export.NewReader(strings.NewReader(string(out))).Next()
		s.mu.Lock()
		acked := s.acked
		s.mu.Unlock()
		switch {
		case rerr != nil: // an empty journal: nothing to ship
			behind = 0
		case !acked.ok:
			behind = -1
		default:
			newest := parseCursor(e.String("__CURSOR"))
			if newest.ok && newest.seqnumID == acked.seqnumID {
				behind = 0
				if newest.seqnum > acked.seqnum {
					behind = int64(newest.seqnum - acked.seqnum)
					lag = newest.realtime.Sub(acked.realtime).Seconds()
				}
			}
		}
	}
	s.mu.Lock()
	s.behind, s.lagSec = behind, max(lag, 0)
	s.mu.Unlock()
}

// Lag returns the last measured lag: journal entries after the last acknowledged one (-1 when
// unknown) and the seconds between them.
func (s *Shipper) Lag() (int64, float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.behind, s.lagSec
}

// statusLine is the STATUS= line: what was shipped, how far behind, retries, the last error
// and the last journal gap.
func (s *Shipper) statusLine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	if !s.failing.IsZero() {
		fmt.Fprintf(&b, "failing since %s, retrying; ", s.failing.UTC().Format("15:04:05"))
	}
	fmt.Fprintf(&b, "shipped %d connections, %d events", s.Stats.Connections.Load(), s.Stats.Events.Load())
	switch {
	case s.behind < 0:
		b.WriteString("; behind: unknown")
	default:
		fmt.Fprintf(&b, "; behind %d entries, %.1fs", s.behind, s.lagSec)
	}
	fmt.Fprintf(&b, "; retries %d", s.Stats.Retries.Load())
	if m := s.Stats.Malformed.Load(); m > 0 {
		fmt.Fprintf(&b, "; malformed values %d", m)
	}
	if s.lastErr != "" {
		e := s.lastErr
		if len(e) > 200 {
			e = e[:200] + "…"
		}
		fmt.Fprintf(&b, "; last error %s: %s", s.lastErrAt.UTC().Format("15:04:05"), e)
	}
	if s.gap != "" {
		fmt.Fprintf(&b, "; journal %s (records lost before shipping)", s.gap)
	}
	return "STATUS=" + strings.ReplaceAll(b.String(), "\n", " ")
}
