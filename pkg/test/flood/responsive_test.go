package flood

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A flood at ten times what the sink can take leaves a real spip responsive: STATUS= keeps
// updating, the watchdog keeps being fed, and every record it could not write is counted.
func TestFloodResponsive(t *testing.T) {
	if testing.Short() {
		t.Skip("floods for several seconds")
	}
	const (
		capacity = 200 // records per second the reader takes
		rate     = 10 * capacity
		seconds  = 8
	)
	raiseNoFile(t, 20000)
	fifo := filepath.Join(t.TempDir(), "records.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	s := startSpipOpts(t, opts{json: fifo, env: []string{"WATCHDOG_USEC=1000000"}, config: `
[session]
first_byte_timeout = "1h"
idle_timeout = "1h"
[output]
queue_size = 256
status_interval = "500ms"
summary_interval = "2s"
`})

	var conns, lines atomic.Int64
	var summaryLost atomic.Uint64
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
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				if r.SessionID != "" {
					conns.Add(1)
				} else if r.Event == "summary" && r.Sink == "json" {
					summaryLost.Store(r.DroppedTotal)
				}
			}
			lines.Add(1)
			if !hurry.Load() {
				<-tick.C
			}
		}
	}()

	d := newDialer(t, s.port, loopbacks(2, 20)...)
	start := time.Now()
	sent := 0
	for sec := 0; sec < seconds; sec++ {
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
	}
	end := time.Now()
	rss := s.rss()
	st := s.waitFor("every connection recorded", func(st status) bool { return st.Recorded == uint64(sent) })
	statuses, pings := s.notifications()
	between := func(ts []time.Time) (n int, gap time.Duration) {
		last := start
		for _, x := range ts {
			if x.After(start) && x.Before(end) {
				n++
				gap = max(gap, x.Sub(last))
				last = x
			}
		}
		return n, max(gap, end.Sub(last))
	}
	nStatus, statusGap := between(statuses)
	nPings, pingGap := between(pings)
	elapsed := end.Sub(start)
	t.Logf("flood: %d connections in %.1fs (%.0f/s, %.1fx a sink read at %d/s); %d STATUS= updates (longest gap %v), %d watchdog pings (longest gap %v, WatchdogSec=1s); spip RSS %d KiB; %s",
		sent, elapsed.Seconds(), float64(sent)/elapsed.Seconds(), float64(sent)/elapsed.Seconds()/capacity, capacity, nStatus, statusGap.Round(time.Millisecond), nPings, pingGap.Round(time.Millisecond), rss>>10, st.Line)
	// Expected: two of each a second. Half of that is the bound: it fails when the loop or the
	// monitor wedges, not when a busy machine is a little late.
	if want := int(elapsed.Seconds()); nPings < want || nStatus < want {
		t.Errorf("during %v of flood: %d watchdog pings and %d STATUS= updates, want at least %d of each", elapsed.Round(time.Millisecond), nPings, nStatus, want)
	}
	lostRe := regexp.MustCompile(`json: (\d+) written, (\d+) lost`)
	m := lostRe.FindStringSubmatch(st.Line)
	if m == nil {
		t.Fatalf("no sink counters in %q", st.Line)
	}
	if lost, _ := strconv.ParseUint(m[2], 10, 64); lost == 0 {
		t.Errorf("a flood at 10x the sink's capacity lost nothing: %q", st.Line)
	}

	hurry.Store(true)
	s.stop()
	rd.Close()
	wg.Wait()
	var lostAtExit uint64
	if _, err := fmt.Sscanf(lastMatch(s.Stderr(), `spip: \d+ records were lost`), "spip: %d records were lost", &lostAtExit); err != nil {
		t.Fatalf("spip did not report its losses at exit: %v\n%s", err, s.Stderr())
	}
	// Every connection's record was read, or is among the records spip counted as lost (which
	// also counts a few of its own messages).
	if got := uint64(conns.Load()) + lostAtExit; got < uint64(sent) {
		t.Errorf("%d connections: %d records read + %d counted lost = %d: some vanished uncounted", sent, conns.Load(), lostAtExit, got)
	}
	if summaryLost.Load() == 0 {
		t.Error("no summary record of the loss reached the sink")
	}
	t.Logf("%d connection records read, %d records counted lost at exit, last summary in the stream: %d lost", conns.Load(), lostAtExit, summaryLost.Load())
}

func lastMatch(s, re string) string {
	all := regexp.MustCompile(re).FindAllString(s, -1)
	if len(all) == 0 {
		return ""
	}
	return all[len(all)-1]
}
