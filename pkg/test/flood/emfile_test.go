package flood

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Running out of file descriptors: spip backs off instead of spinning on accept, says so in a
// warning record, and records everything once descriptors free up.
func TestOutOfDescriptors(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("needs prlimit (util-linux)")
	}
	const limit = 64 // the child's hard RLIMIT_NOFILE: spip can't raise it
	s := startSpip(t, `
[session]
first_byte_timeout = "1h"
idle_timeout = "1h"
[output]
status_interval = "100ms"
summary_interval = "1h"
`, "prlimit", fmt.Sprintf("--nofile=%d:%d", limit, limit), "--")
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	free := limit - len(fds)
	conns := free + 40 // 40 more than spip can hold: they wait in the listen backlog
	t.Logf("spip holds %d descriptors at start, %d free", len(fds), free)

	d := newDialer(t, s.port, loopbacks(2, 1)...)
	for i := 0; i < conns; i++ {
		d.established(d.dial()) // the kernel completes the handshake even while spip can't accept
	}
	warned := func() (rec, bool) {
		for _, r := range readRecords(t, s.json) {
			if r.Event == "warning" && strings.Contains(r.Message, "too many open files") {
				return r, true
			}
		}
		return rec{}, false
	}
	var w rec
	until(t, "the out-of-descriptors warning", func() (ok bool) { w, ok = warned(); return ok })
	t.Logf("warning: %s", w.Message)

	// While out of descriptors spip waits for them: measure its CPU time over a few seconds.
	cpu0, t0 := s.cpu(), time.Now()
	time.Sleep(3 * time.Second)
	used, wall := s.cpu()-cpu0, time.Since(t0)
	t.Logf("CPU time while out of descriptors: %v in %v (%.1f%%)", used, wall.Round(time.Millisecond), 100*used.Seconds()/wall.Seconds())
	if f := os.Getenv("FLOODTEST_FIGURES"); f != "" {
		appendFile(t, f, fmt.Sprintf("emfile cpu=%v wall=%v\n", used, wall.Round(time.Millisecond)))
	}
	// A spinning accept loop would burn a whole core; backing off 10 times a second costs
	// almost nothing. Half the wall time separates the two on any machine.
	if used > wall/2 {
		t.Errorf("spip used %v of CPU in %v while out of descriptors: it spins", used, wall)
	}

	// Descriptors come back when the peers leave: every connection, held or waiting in the
	// backlog, gets its record, and a new one is recorded too.
	d.closeAll()
	s.waitFor("every connection recorded", func(st status) bool { return st.Recorded == uint64(conns) && st.Active == 0 })
	nd := newDialer(t, s.port, loopbacks(3, 1)...)
	nd.send(nd.dial(), []byte("after"))
	nd.closeAll()
	s.waitFor("the late connection", func(st status) bool { return st.Recorded == uint64(conns)+1 })
	s.stop()

	n, warnings := 0, 0
	for _, r := range readRecords(t, s.json) {
		switch {
		case r.SessionID != "":
			n++
		case r.Event == "warning" && strings.Contains(r.Message, "too many open files"):
			warnings++
		}
	}
	if n != conns+1 {
		t.Errorf("%d connection records, want %d", n, conns+1)
	}
	// Warnings are rate-limited (one per kind per 10 s), not one per failed accept.
	if warnings < 1 || warnings > 2 {
		t.Errorf("%d out-of-descriptor warnings, want 1 or 2 for a few seconds of trouble", warnings)
	}
}
