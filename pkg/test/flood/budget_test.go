package flood

import (
	"fmt"
	"strings"
	"testing"
)

// One noisy source over its budget has its extra connections closed unread and counted in a
// summary record; every other source is still fully recorded. Without the [ratelimit] section
// (the default) every connection of the noisy source is recorded too.
func TestPerSourceBudget(t *testing.T) {
	const (
		noisyConns = 300
		quiet      = 10 // sources
		quietConns = 5  // each, within the burst
		burst      = 5
	)
	cases := []struct {
		name   string
		config string
		on     bool
	}{
		{"off by default", "", false},
		{"on", fmt.Sprintf("[ratelimit]\nper_source_rate = 0.5\nper_source_burst = %d\n", burst), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := startSpip(t, `
[session]
first_byte_timeout = "1h"
idle_timeout = "1h"
[output]
status_interval = "100ms"
summary_interval = "1h"
`+c.config)
			noisy := newDialer(t, s.port, loopbacks(9, 1)...)
			for i := 0; i < noisyConns; i++ {
				fd := noisy.dial()
				// Wait for the handshake; spip may already have reset a connection over budget.
				noisy.established(fd)
				_, _ = writeString(fd, "noise")
				noisy.closeAll()
			}
			q := newDialer(t, s.port, loopbacks(10, quiet)...)
			for i := 0; i < quiet*quietConns; i++ {
				fd := q.dial()
				q.send(fd, []byte(fmt.Sprintf("quiet-%d", i)))
				q.closeAll()
			}
			total := uint64(noisyConns + quiet*quietConns)
			st := s.waitFor("every connection accounted", func(st status) bool { return st.Recorded+st.Limited == total && st.Active == 0 })
			s.stop()

			perSource := map[string]int{}
			var summaries []rec
			for _, r := range readRecords(t, s.json) {
				switch {
				case r.SessionID != "":
					perSource[r.SourceIP]++
				case r.Event == "summary" && r.TopSources != "":
					summaries = append(summaries, r)
				}
			}
			for i := 0; i < quiet; i++ {
				ip := fmt.Sprintf("127.0.0.%d", 10+i)
				if perSource[ip] != quietConns {
					t.Errorf("quiet source %s: %d records, want %d", ip, perSource[ip], quietConns)
				}
			}
			noisyRecorded := perSource["127.0.0.9"]
			if !c.on {
				if noisyRecorded != noisyConns || st.Limited != 0 || len(summaries) != 0 {
					t.Errorf("budget off: noisy source has %d records of %d, %d rate-limited, %d summaries", noisyRecorded, noisyConns, st.Limited, len(summaries))
				}
				return
			}
			if noisyRecorded < burst || noisyRecorded > noisyConns/2 {
				t.Errorf("noisy source: %d of %d connections recorded, want its burst of %d and little more", noisyRecorded, noisyConns, burst)
			}
			if uint64(noisyRecorded)+st.Limited != noisyConns {
				t.Errorf("noisy source: %d recorded + %d rate-limited != %d connections", noisyRecorded, st.Limited, noisyConns)
			}
			if len(summaries) != 1 {
				t.Fatalf("%d summary records with top sources, want 1", len(summaries))
			}
			sum := summaries[0]
			want := fmt.Sprintf("127.0.0.9/32=%d", noisyConns-noisyRecorded)
			if sum.TopSources != want || sum.LimitedTot != st.Limited || sum.Limited != st.Limited {
				t.Errorf("summary: top_sources %q ratelimited %d total %d; want %q and %d", sum.TopSources, sum.Limited, sum.LimitedTot, want, st.Limited)
			}
			if !strings.Contains(sum.Message, want) {
				t.Errorf("summary message %q does not name the source", sum.Message)
			}
			t.Logf("noisy source: %d recorded, %d suppressed; summary: %s", noisyRecorded, st.Limited, sum.Message)
		})
	}
}
