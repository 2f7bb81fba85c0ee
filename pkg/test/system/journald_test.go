package system

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// 4b. A stopped journald (SIGSTOP for longer than WatchdogSec=) costs counted drops, nothing
// else: every connection is accepted and recorded in the JSON mirror while it is stopped, the
// watchdog does not restart spip (its writer keeps retrying, which is not being stuck), STATUS=
// says the journald sink is failing and counts its losses, and once journald resumes every
// record spip made is either in the journal or counted lost, the loss summarized in both outputs.
func (s *sys) journaldStopped(t *testing.T) {
	m := s.m
	const (
		stall    = 30 * time.Second
		watchdog = 10 * time.Second // shorter than the stall: the real test
		queue    = 1000             // with journald's socket queue (≤ 512 datagrams), full within seconds
		workers  = 4
		pace     = 25 * time.Millisecond // per worker: at most 160 connections/s
	)
	const dropIn = "/etc/systemd/system/spip.service.d/systest.conf"

	// Deferred calls run last registered first: the traffic stops, journald resumes, then the
	// unit and the config are restored, even when an assertion failed on the way.
	old := s.config
	defer func() {
		s.config = old
		m.RemoveFile(t, dropIn)
		m.Exec(t, "systemctl", "daemon-reload")
		s.applyConfig(t)
	}()
	s.config = withOutput(old, fmt.Sprintf("queue_size = %d\nsummary_interval = \"2s\"\nstatus_interval = \"1s\"\n", queue))
	m.WriteFile(t, dropIn, []byte(fmt.Sprintf("[Service]\nWatchdogSec=%s\n", watchdog)), 0o644)
	m.Exec(t, "systemctl", "daemon-reload")
	s.applyConfig(t)
	if got := s.showDuration(t, "spip.service", "WatchdogUSec"); got != watchdog {
		t.Fatalf("spip.service WatchdogUSec=%s, want the drop-in's %s", got, watchdog)
	}
	pid, restarts := s.show(t, "spip.service", "MainPID"), s.show(t, "spip.service", "NRestarts")
	journald := s.show(t, "systemd-journald.service", "MainPID")
	if journald == "0" || journald == "" {
		t.Fatalf("systemd-journald.service has no MainPID")
	}

	var (
		mu     sync.Mutex
		sent   []Sent
		stop   atomic.Bool
		wg     sync.WaitGroup
		fails  atomic.Int32
		failed string
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1500 && !stop.Load(); i++ { // bounded: the client has ~22,000 source ports for the whole run
				dst := netns.SensorV4
				if (w+i)%3 == 0 {
					dst = netns.SensorV6
				}
				x, err := s.c.Send(netip.AddrPortFrom(dst, uint16(1024+w*1000+i%1000)), []byte(fmt.Sprintf("journald stopped %d %d\x00\xff", w, i)), 0)
				mu.Lock()
				if err != nil {
					fails.Add(1)
					failed = err.Error()
				} else {
					sent = append(sent, x)
				}
				mu.Unlock()
				time.Sleep(pace)
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()
	sentSoFar := func() []Sent {
		mu.Lock()
		defer mu.Unlock()
		return append([]Sent(nil), sent...)
	}

	time.Sleep(2 * time.Second)
	t.Logf("step: kill -STOP %s (systemd-journald) for %s under traffic; spip pid %s, WatchdogSec=%s, output.queue_size %d",
		journald, stall, pid, watchdog, queue)
	m.Exec(t, "kill", "-STOP", journald)
	stopped := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if out, err := m.Run("kill", "-CONT", journald); err != nil {
				t.Errorf("kill -CONT %s: %v\n%s", journald, err, out)
			}
		}
	}
	defer resume()

	// While journald is stopped: STATUS= keeps updating and says the journald sink is failing;
	// connections keep being recorded (the JSON mirror does not wait for journald).
	var samples []sinkCounts
	var accepted []Sent
	acceptedInMirror := false
	for k := 0; time.Since(stopped) < stall; k++ { // bounded by the stall
		time.Sleep(time.Second)
		if k%5 == 4 {
			status := s.show(t, "spip.service", "StatusText")
			samples = append(samples, parseStatus(status))
			t.Logf("+%2.0fs StatusText: %s", time.Since(stopped).Seconds(), status)
		}
		if k == 14 {
			accepted = sentSoFar() // all of these must reach the mirror while journald is still stopped
		}
		if accepted != nil && !acceptedInMirror {
			acceptedInMirror = missingFrom(accepted, mirrorSinceStart(t, m, jsonMirror)) == 0
			if acceptedInMirror {
				t.Logf("+%2.0fs the %d connections sent in the first 15s of the stall are all in the JSON mirror", time.Since(stopped).Seconds(), len(accepted))
			}
		}
	}
	if !acceptedInMirror {
		t.Errorf("%d of the %d connections sent in the first 15s of the stall are not in the JSON mirror by its end: the accept loop or the sessions waited for journald",
			missingFrom(accepted, mirrorSinceStart(t, m, jsonMirror)), len(accepted))
	}
	if st := s.show(t, "spip.service", "ActiveState"); st != "active" {
		t.Errorf("spip.service is %s during the stall", st)
	}
	t.Logf("step: kill -CONT %s after %s", journald, time.Since(stopped).Round(100*time.Millisecond))
	resume()
	beforeResume := len(sentSoFar())
	time.Sleep(3 * time.Second) // traffic goes on as journald catches up
	stop.Store(true)
	wg.Wait()
	all := sentSoFar()
	t.Logf("step: sent %d connections (%d failed to connect) over %s", len(all), fails.Load(), time.Since(stopped).Round(time.Second)+2*time.Second)
	if fails.Load() > 0 {
		t.Errorf("%d connections failed to connect, the last: %s", fails.Load(), failed)
	}
	checkStallSamples(t, samples)

	// The mirror holds every connection exactly once, with its payload.
	WaitRecorded(t, "json mirror", true, func() []Rec { return m.JSONRecords(t, jsonMirror) }, all)
	if got := s.show(t, "spip.service", "MainPID"); got != pid {
		t.Errorf("spip.service MainPID %s → %s: spip was restarted while journald was stopped", pid, got)
	}
	if got := s.show(t, "spip.service", "NRestarts"); got != restarts {
		t.Errorf("spip.service NRestarts %s → %s: the watchdog restarted a healthy spip", restarts, got)
	}

	// Once journald has caught up and the last loss is summarized, the books balance.
	var (
		st      sinkCounts
		mirror  []event
		journal []event
		settled []string
	)
	deadline := time.Now().Add(time.Minute)
	for {
		st = parseStatus(s.show(t, "spip.service", "StatusText"))
		mirror = mirrorSinceStart(t, m, jsonMirror)
		journal = journalOf(t, m, pid)
		settled = settledProblems(st, mirror, journal)
		if len(settled) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("final StatusText: %s", st.raw)
	if len(settled) > 0 {
		t.Errorf("a minute after journald resumed:\n%s", strings.Join(settled, "\n"))
	}

	jd, js := st.sinks["journald"], st.sinks["json"]
	want := map[netip.AddrPort]bool{}
	for _, x := range all {
		want[x.Src] = true
	}
	inJournal, inMirror, extra := map[netip.AddrPort]int{}, 0, 0
	mirrorOther, journalOther := 0, 0
	for _, e := range mirror {
		switch {
		case e.kind != "connection":
			mirrorOther++
		case want[e.src]:
			inMirror++
		default:
			extra++
		}
	}
	for _, e := range journal {
		switch {
		case e.kind != "connection":
			journalOther++
		case want[e.src]:
			inJournal[e.src]++
		default:
			extra++
		}
	}
	for src, n := range inJournal {
		if n > 1 {
			t.Errorf("%s is in the journal %d times", src, n)
		}
	}
	if extra > 0 {
		t.Errorf("%d connection records from this spip that the test did not send", extra)
	}
	// What journald lost that was not a connection (summaries, warnings) is what the mirror has
	// and the journal has not; the rest of the loss is connections.
	otherLost := mirrorOther - journalOther
	connLost := int(jd.lost) - otherLost
	t.Logf("figures: %d connections sent and accepted; JSON mirror: %d of them (json sink %d written, %d lost); journald sink: %d written, %d lost (counted); "+
		"the journal holds %d records of this spip (%d connections, %d others); lost and counted: %d connections, %d summaries/warnings",
		len(all), inMirror, js.written, js.lost, jd.written, jd.lost, len(journal), len(inJournal), journalOther, connLost, otherLost)
	if jd.lost == 0 {
		t.Errorf("the journald sink lost nothing in a %s stall at this rate: the scenario did not test drops (raise the rate or lower queue_size)", stall)
	}
	if len(inJournal)+connLost != len(all) {
		t.Errorf("connections: %d in the journal + %d lost and counted = %d, want the %d sent", len(inJournal), connLost, len(inJournal)+connLost, len(all))
	}
	if len(inJournal) == 0 {
		t.Errorf("no connection of the scenario reached the journal")
	}
	// Entries resume: connections made after SIGCONT reach the journal.
	afterResume := 0
	for _, x := range all[beforeResume:] {
		if inJournal[x.Src] > 0 {
			afterResume++
		}
	}
	t.Logf("%d of the %d connections sent after SIGCONT are in the journal", afterResume, len(all)-beforeResume)
	if afterResume == 0 {
		t.Errorf("none of the %d connections sent after SIGCONT reached the journal", len(all)-beforeResume)
	}
	for _, e := range journal {
		if e.kind == "summary" && e.sink == "journald" && uint64(e.droppedTotal) == jd.lost {
			t.Logf("journal: %s", e.message)
		}
	}
	var failing, recovered bool
	for _, e := range mirror {
		failing = failing || (e.kind == "warning" && e.sink == "journald" && strings.Contains(e.message, "failing"))
		recovered = recovered || (failing && e.kind == "warning" && e.sink == "journald" && strings.Contains(e.message, "recovered"))
	}
	if !failing || !recovered {
		t.Errorf("the JSON mirror lacks the warnings: journald sink failing %v, then recovered %v", failing, recovered)
	}
}

// withOutput adds keys to config's [output] table, or adds the table.
func withOutput(config, keys string) string {
	if strings.Contains(config, "[output]\n") {
		return strings.Replace(config, "[output]\n", "[output]\n"+keys, 1)
	}
	return config + "\n[output]\n" + keys
}

// missingFrom counts the sent connections without a record in evs.
func missingFrom(sent []Sent, evs []event) int {
	have := map[netip.AddrPort]bool{}
	for _, e := range evs {
		if e.kind == "connection" {
			have[e.src] = true
		}
	}
	n := 0
	for _, x := range sent {
		if !have[x.Src] {
			n++
		}
	}
	return n
}

// sinkCounts is what a STATUS= line says: recorded connections and each sink's counters.
type sinkCounts struct {
	raw      string
	recorded int
	sinks    map[string]sinkCount
}

type sinkCount struct {
	written, lost uint64
	failing       bool
}

var sinkStatus = regexp.MustCompile(`^(\w+): (\d+) written, (\d+) lost`)

// parseStatus reads "recorded N (…), active …; journald: W written, L lost (failing: …); json: …".
func parseStatus(status string) sinkCounts {
	c := sinkCounts{raw: status, sinks: map[string]sinkCount{}}
	c.recorded, _ = leadingCount(status, "recorded ")
	for _, part := range strings.Split(status, "; ") {
		if m := sinkStatus.FindStringSubmatch(part); m != nil {
			w, _ := strconv.ParseUint(m[2], 10, 64)
			l, _ := strconv.ParseUint(m[3], 10, 64)
			c.sinks[m[1]] = sinkCount{written: w, lost: l, failing: strings.Contains(part, "(failing")}
		}
	}
	return c
}

// checkStallSamples: during the stall STATUS= kept updating (more connections recorded from one
// sample to the last) and by its end said the journald sink was failing and losing records.
func checkStallSamples(t *testing.T, samples []sinkCounts) {
	t.Helper()
	if len(samples) < 2 {
		t.Errorf("only %d StatusText samples during the stall", len(samples))
		return
	}
	first, last := samples[0], samples[len(samples)-1]
	if last.recorded <= first.recorded {
		t.Errorf("STATUS= did not count new connections during the stall: recorded %d → %d", first.recorded, last.recorded)
	}
	for i := 1; i < len(samples); i++ {
		if samples[i].sinks["journald"].lost < samples[i-1].sinks["journald"].lost {
			t.Errorf("journald lost went down during the stall: %q then %q", samples[i-1].raw, samples[i].raw)
		}
	}
	jd, ok := last.sinks["journald"]
	if !ok || !jd.failing || jd.lost == 0 {
		t.Errorf("at the end of the stall STATUS= does not say the journald sink is failing and losing records: %q", last.raw)
	}
	if js := last.sinks["json"]; js.lost != 0 || js.failing {
		t.Errorf("the JSON sink suffered from journald's stall: %q", last.raw)
	}
}

// event is one record of this spip process, from the mirror or the journal.
type event struct {
	kind, sink, message   string
	src                   netip.AddrPort
	dropped, droppedTotal int
}

// mirrorSinceStart reads the JSON mirror's records from the last "started" record on: those of
// the running spip. A last line without its newline (being written) is left out.
func mirrorSinceStart(t *testing.T, m *Machine, path string) []event {
	t.Helper()
	out := m.Exec(t, "cat", path)
	lines := strings.Split(out, "\n")
	lines = lines[:len(lines)-1] // "" after the last newline, or a line being written
	var evs []event
	for _, line := range lines {
		var e struct {
			Event, Sink, Message string
			SourceIP             string `json:"source_ip"`
			SourcePort           int    `json:"source_port"`
			Dropped              int
			DroppedTotal         int `json:"dropped_total"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%s: a line that is not a record: %v\n%.300s", path, err, line)
		}
		if e.Event == "started" {
			evs = evs[:0]
		}
		ev := event{kind: e.Event, sink: e.Sink, message: e.Message, dropped: e.Dropped, droppedTotal: e.DroppedTotal}
		if a, err := netip.ParseAddr(e.SourceIP); err == nil {
			ev.src = netip.AddrPortFrom(a, uint16(e.SourcePort))
		}
		evs = append(evs, ev)
	}
	return evs
}

// journalOf reads the journal entries spip's process pid wrote.
func journalOf(t *testing.T, m *Machine, pid string) []event {
	t.Helper()
	out, err := m.RunTimeout(time.Minute, "journalctl", "-o", "json", "--all", "--no-pager", "_PID="+pid,
		"--output-fields=SPIP_EVENT,SPIP_SINK,SPIP_DROPPED,SPIP_DROPPED_TOTAL,SPIP_SOURCE_IP,SPIP_SOURCE_PORT,MESSAGE")
	if err != nil {
		t.Fatalf("journalctl: %v\n%s", err, tail([]byte(out), 10))
	}
	var evs []event
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" || line == "-- No entries --" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("journalctl -o json printed a line that is not JSON: %v\n%.300s", err, line)
		}
		str := func(k string) string {
			b, _ := journalValue(e[k])
			return string(b)
		}
		if str("SPIP_EVENT") == "" {
			continue // not one of spip's records
		}
		ev := event{kind: str("SPIP_EVENT"), sink: str("SPIP_SINK"), message: str("MESSAGE")}
		ev.dropped, _ = strconv.Atoi(str("SPIP_DROPPED"))
		ev.droppedTotal, _ = strconv.Atoi(str("SPIP_DROPPED_TOTAL"))
		ev.src, _ = addrPort(str("SPIP_SOURCE_IP"), str("SPIP_SOURCE_PORT"))
		evs = append(evs, ev)
	}
	return evs
}

// settledProblems lists what does not yet hold once journald has caught up: every record spip
// made (the JSON sink's, which lost none) written to journald or counted lost, the journal
// holding exactly what the sink wrote, the sink healthy again and its whole loss summarized in
// the mirror and in the journal.
func settledProblems(st sinkCounts, mirror, journal []event) []string {
	var p []string
	jd, okJ := st.sinks["journald"]
	js, okS := st.sinks["json"]
	if !okJ || !okS {
		return []string{fmt.Sprintf("STATUS= lacks a sink: %q", st.raw)}
	}
	if js.lost != 0 || js.failing {
		p = append(p, fmt.Sprintf("the JSON sink lost %d (failing %v)", js.lost, js.failing))
	}
	if jd.failing {
		p = append(p, "the journald sink is still failing")
	}
	if jd.written+jd.lost != js.written {
		p = append(p, fmt.Sprintf("journald sink: %d written + %d lost = %d, want every record made (the JSON sink wrote %d)",
			jd.written, jd.lost, jd.written+jd.lost, js.written))
	}
	if uint64(len(mirror)) != js.written {
		p = append(p, fmt.Sprintf("the JSON mirror holds %d records of this spip, its sink says %d written", len(mirror), js.written))
	}
	if uint64(len(journal)) != jd.written {
		p = append(p, fmt.Sprintf("the journal holds %d records of this spip, the journald sink says %d written", len(journal), jd.written))
	}
	summarized := func(where string, evs []event) {
		sum, total := 0, 0
		for _, e := range evs {
			if e.kind == "summary" && e.sink == "journald" {
				sum += e.dropped
				total = max(total, e.droppedTotal)
			}
		}
		if uint64(total) != jd.lost {
			p = append(p, fmt.Sprintf("%s: the largest journald summary says dropped_total %d, the sink lost %d", where, total, jd.lost))
		}
		if where == "JSON mirror" && uint64(sum) != jd.lost {
			p = append(p, fmt.Sprintf("%s: the journald summaries' dropped add up to %d, the sink lost %d", where, sum, jd.lost))
		}
	}
	summarized("JSON mirror", mirror)
	summarized("journal", journal)
	return p
}
