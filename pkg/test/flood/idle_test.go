package flood

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

const (
	idleSessions = 20000
	// idleBudget is what one idle session may cost spip in resident memory. The design target is
	// 4 KiB; this bound is generous so that it fails only when something grows per connection
	// (a goroutine, a buffer), never because of the clock or the machine.
	idleBudget = 8 << 10
)

// 20,000 connections that send nothing, then trickle a byte a second, keep spip's memory
// bounded per session, stay within the session limits, and don't stop new connections from
// being recorded.
func TestIdleSessionsRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 20,000 connections")
	}
	// The test process holds the client ends and spip the server ends: each needs a descriptor
	// per session. Where the hard limit can't be raised, the test runs as many sessions as it
	// allows, and fails in CI if that is fewer than half the target.
	target := idleSessions
	if lim := raiseNoFile(t, 2*idleSessions+10000); lim < idleSessions+200 {
		target = int(lim) - 200
		t.Logf("RLIMIT_NOFILE hard limit %d (raising it needs CAP_SYS_RESOURCE): %d sessions instead of %d", lim, target, idleSessions)
		if target < idleSessions/2 {
			netns.Require(t)
			t.Fatalf("RLIMIT_NOFILE %d is too low for this test", lim)
		}
	}
	half := target / 2
	s := startSpip(t, fmt.Sprintf(`
[session]
first_byte_timeout = "1h"
idle_timeout = "1h"
max_duration = "2h"
max_sessions = %d
shutdown_grace = "0s"
[output]
status_interval = "100ms"
summary_interval = "1h"
`, target+1000))
	time.Sleep(500 * time.Millisecond) // let the runtime settle after start
	rss0 := s.rss()

	d := newDialer(t, s.port, loopbacks(2, 40)...)
	rss := map[int]uint64{0: rss0}
	for _, step := range []int{half, target} {
		for len(d.fds) < step {
			// In chunks, so the listen backlog never overflows into SYN retries.
			for i := 0; i < 1000 && len(d.fds) < step; i++ {
				d.dial()
			}
			want := uint64(len(d.fds))
			s.waitFor(fmt.Sprintf("%d active sessions", want), func(st status) bool { return st.Active == want })
		}
		time.Sleep(500 * time.Millisecond)
		rss[step] = s.rss()
	}

	// Trickle: every session gets one byte a second for three seconds.
	for round := 0; round < 3; round++ {
		for _, fd := range d.fds {
			d.send(fd, []byte{'a' + byte(round)})
		}
		time.Sleep(time.Second)
	}
	trickle := s.rss()
	if st, _ := s.Status(); st.Active != uint64(target) || st.Recorded != 0 || st.Overload != 0 {
		t.Fatalf("after trickling: %q, want %d active, nothing recorded yet", st.Line, target)
	}

	// New connections are still recorded while 20,000 sessions are held.
	const probes = 50
	nd := newDialer(t, s.port, loopbacks(100, 1)...)
	for i := 0; i < probes; i++ {
		fd := nd.dial()
		nd.send(fd, []byte(fmt.Sprintf("probe-%d", i)))
	}
	nd.closeAll()
	s.waitFor("the probes' records", func(st status) bool { return st.Recorded == probes })

	perSession := func(n int) float64 { return float64(int64(rss[n])-int64(rss0)) / float64(n) }
	t.Logf("RSS: 0 sessions %d KiB, %d idle %d KiB, %d idle %d KiB, %d trickling %d KiB",
		rss0>>10, half, rss[half]>>10, target, rss[target]>>10, target, trickle>>10)
	t.Logf("bytes per idle session: %.0f (10k), %.0f (20k); per trickling session: %.0f",
		perSession(half), perSession(target), float64(int64(trickle)-int64(rss0))/float64(target))
	if f := os.Getenv("FLOODTEST_FIGURES"); f != "" {
		line := fmt.Sprintf("idle_rss_kib 0=%d 10k=%d 20k=%d trickle20k=%d per_session_bytes=%.0f per_trickling_session_bytes=%.0f\n",
			rss0>>10, rss[half]>>10, rss[target]>>10, trickle>>10, perSession(target), float64(int64(trickle)-int64(rss0))/float64(target))
		appendFile(t, f, line)
	}
	for _, n := range []int{half, target} {
		if p := perSession(n); p > idleBudget {
			t.Errorf("%d idle sessions cost %.0f bytes of RSS each, budget %d", n, p, idleBudget)
		}
	}
	if p := float64(int64(trickle)-int64(rss0)) / float64(target); p > idleBudget {
		t.Errorf("%d trickling sessions cost %.0f bytes of RSS each, budget %d", target, p, idleBudget)
	}

	// Every session ends with a record when its peer leaves.
	d.closeAll()
	s.waitFor("every session's record", func(st status) bool { return st.Active == 0 && st.Recorded == uint64(target+probes) })
	s.stop()
	var conns, trickled, probed int
	for _, r := range readRecords(t, s.json) {
		if r.SessionID == "" {
			continue
		}
		conns++
		switch {
		case r.Payload == "abc" && r.Bytes == 3 && r.CloseReason == "eof":
			trickled++
		case strings.HasPrefix(r.Payload, "probe-"):
			probed++
		}
	}
	if conns != target+probes || trickled != target || probed != probes {
		t.Errorf("records: %d connections (%d trickled \"abc\", %d probes), want %d (%d, %d)",
			conns, trickled, probed, target+probes, target, probes)
	}
}

func appendFile(t *testing.T, path, s string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}
