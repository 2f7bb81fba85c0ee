//go:build measure

package ship_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"spip/pkg/record"
	"spip/pkg/sink/journald"
	"spip/pkg/test/bench"
	"spip/pkg/test/clickhouse"
	"spip/pkg/test/nsjournal"
)

// TestMeasureShip measures `spip ship` (the binary, with its journalctl, at the default
// batch_size and flush_interval) against a real journald and Debian's clickhouse-server:
//
//  1. backlog: records/s and CPU per 10k records while it ships SPIP_SHIP_BACKLOG records
//     (default 100,000) written beforehand;
//  2. steady: the lag (STATUS=, every second) while records arrive at SPIP_SHIP_RATE per second
//     (default 10,000: the journald sink's sustained zero-loss rate in BENCHMARKS.md) for
//     SPIP_SHIP_SECONDS (default 30), and the shipper's CPU share meanwhile.
//
// The journal is a journald of the test's own (a journal namespace, pkg/test/nsjournal), fed
// spip's records the way spip serve's journald sink sends them: so the entries carry journald's
// own fields and the files are journald's, as on a sensor. Needs root.
//
// go test -tags measure -timeout 30m -run TestMeasureShip -v ./pkg/ship (SPIP_SHIP_BINARY: a
// spip binary to measure instead of this tree's). The figures are in BENCHMARKS.md.
func TestMeasureShip(t *testing.T) {
	backlog := envInt("SPIP_SHIP_BACKLOG", 100000)
	rate := envInt("SPIP_SHIP_RATE", 10000)
	seconds := envInt("SPIP_SHIP_SECONDS", 30)
	t.Logf("load average at start: %s", bench.LoadAvg())
	t.Cleanup(func() { t.Logf("load average at the end: %s", bench.LoadAvg()) })
	srv := clickhouse.Start(t)
	schema(t, srv, names("measure"))
	jd := nsjournal.Start(t)
	w := newSinkWriter(t, jd.Socket)

	w.send(t, backlog)
	waitJournal(t, jd.Dir, backlog)
	t.Logf("backlog of %d records in the journal", backlog)

	notes := listenNotify(t)
	state := t.TempDir()
	conf := fmt.Sprintf("[ship]\nurl = %q\ndatabase = \"measure\"\nuser = %q\n[output]\nstatus_interval = \"1s\"\n", srv.URL(), clickhouse.User)
	cmd := shipConfCmd(t, conf, clickhouse.Password, jd.Dir, state)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+notes.path)
	if bin := os.Getenv("SPIP_SHIP_BINARY"); bin != "" {
		cmd.Path, cmd.Args[0] = bin, bin // another build, for an A/B in one sitting
	}
	t.Logf("measuring %s", cmd.Path)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM measure.connections", backlog, 10*time.Minute)
	took := time.Since(start)
	shipCPU, jctlCPU := cpuOf(t, cmd.Process.Pid)
	perSec := float64(backlog) / took.Seconds()
	t.Logf("machine: %d CPUs (%s)", runtime.NumCPU(), cpuModel())
	t.Logf("backlog: %d records in %.1fs = %.0f records/s; CPU per 10k records: spip ship %.3f s, journalctl %.3f s, together %.3f s (%.2f cores while catching up)",
		backlog, took.Seconds(), perSec, shipCPU/float64(backlog)*1e4, jctlCPU/float64(backlog)*1e4,
		(shipCPU+jctlCPU)/float64(backlog)*1e4, (shipCPU+jctlCPU)/took.Seconds())

	// Steady traffic at rate/s: every 10 ms, what the rate asks for by then.
	ship0, jctl0 := cpuOf(t, cmd.Process.Pid)
	jd0, _ := procCPU(jd.Pid())
	t0 := time.Now()
	var maxBehind int64
	var maxLag float64
	var lastSample time.Time
	sent := 0
	for total := rate * seconds; sent < total; time.Sleep(10 * time.Millisecond) {
		now := time.Now()
		want := min(total, int(float64(rate)*now.Sub(t0).Seconds()))
		w.send(t, want-sent)
		sent = want
		if now.Sub(lastSample) >= time.Second {
			lastSample = now
			if b, l, ok := notes.lag(); ok && now.Sub(t0) > 2*time.Second {
				maxBehind, maxLag = max(maxBehind, b), max(maxLag, l)
			}
		}
	}
	elapsed := time.Since(t0)
	ship1, jctl1 := cpuOf(t, cmd.Process.Pid)
	jd1, _ := procCPU(jd.Pid())
	total := backlog + sent
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM measure.connections", total, 10*time.Minute)
	drained := time.Since(t0) - elapsed
	cores := (ship1 - ship0 + jctl1 - jctl0) / elapsed.Seconds()
	written := float64(sent) / elapsed.Seconds()
	t.Logf("steady: %d records/s asked for %ds, %.0f/s written: spip ship + journalctl used %.2f cores (spip ship %.2f, journalctl %.2f), %.3f s CPU per 10k records; journald %.2f cores; lag (STATUS= each second, after the first two) at most %d entries, %.1fs; the last record was in ClickHouse %.1fs after the writer stopped",
		rate, seconds, written, cores, (ship1-ship0)/elapsed.Seconds(), (jctl1-jctl0)/elapsed.Seconds(), cores/written*1e4,
		(jd1-jd0)/elapsed.Seconds(), maxBehind, maxLag, drained.Seconds())
	t.Logf("last STATUS=%s", notes.last())
}

// sinkWriter sends spip's connection records to journald as spip serve's journald sink does:
// the same encoder, one datagram per record, a batch of them per sendmmsg. It waits while
// journald is behind (the sink would drop and count instead): every record is written.
type sinkWriter struct {
	w       *journald.Writer
	enc     *record.Encoder
	payload []byte
	bufs    [][]byte
	n       int
}

func newSinkWriter(t *testing.T, socket string) *sinkWriter {
	jw, err := journald.Dial(socket, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jw.Close() })
	return &sinkWriter{w: jw, enc: record.NewEncoder("sensor-measure"), bufs: make([][]byte, journald.MaxBatch),
		payload: []byte("GET / HTTP/1.1\r\nHost: 203.0.113.5\r\nUser-Agent: Mozilla/5.0 zgrab/0.x\r\nAccept: */*\r\n\r\n")}
}

func (s *sinkWriter) send(t *testing.T, n int) {
	for n > 0 {
		k := min(n, len(s.bufs))
		for i := range k {
			s.bufs[i] = s.enc.AppendJournal(s.bufs[i][:0], conn(s.n, s.payload))
			s.n++
		}
		if _, err := s.w.WriteBatch(s.bufs[:k]); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
}

// waitJournal waits until the journal in dir holds n spip records.
func waitJournal(t *testing.T, dir string, n int) {
	t.Helper()
	var got int
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		out, err := exec.Command("journalctl", "-D", dir, "-o", "cat", "--output-fields=SPIP_EVENT", "SYSLOG_IDENTIFIER=spip").Output()
		if err != nil {
			t.Fatal(err)
		}
		if got = bytes.Count(out, []byte("connection\n")); got >= n {
			return
		}
	}
	t.Fatalf("the journal holds %d of the %d records written", got, n)
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			_, v, _ := strings.Cut(l, ":")
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// cpuOf returns the CPU seconds (user + system) of pid and of its journalctl children: those
// that ended (spip reaped them) and the one running.
func cpuOf(t *testing.T, pid int) (ship, jctl float64) {
	t.Helper()
	ship, jctl = procCPU(pid)
	children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, task := range listTasks(pid) {
		c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task))
		children = append(children, ' ')
		children = append(children, c...)
	}
	for _, f := range strings.Fields(string(children)) {
		c, _ := strconv.Atoi(f)
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c)); strings.TrimSpace(string(comm)) == "journalctl" {
			own, _ := procCPU(c)
			jctl += own
		}
	}
	return ship, jctl
}

func listTasks(pid int) []string {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// procCPU reads utime + stime and cutime + cstime (children waited for) from /proc/PID/stat.
func procCPU(pid int) (own, children float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	v := func(i int) float64 { x, _ := strconv.ParseFloat(f[i], 64); return x / 100 } // USER_HZ
	return v(11) + v(12), v(13) + v(14)
}

type notifyListener struct {
	path   string
	mu     sync.Mutex
	status string
}

var behindRe = regexp.MustCompile(`behind (\d+) entries, ([0-9.]+)s`)

func (n *notifyListener) lag() (int64, float64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := behindRe.FindStringSubmatch(n.status)
	if m == nil {
		return 0, 0, false
	}
	b, _ := strconv.ParseInt(m[1], 10, 64)
	l, _ := strconv.ParseFloat(m[2], 64)
	return b, l, true
}

func (n *notifyListener) last() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.status
}

// listenNotify is an sd_notify socket: it keeps the last STATUS= it received.
func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	n := &notifyListener{path: filepath.Join(t.TempDir(), "notify")}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:k]), "\n") {
				if s, ok := strings.CutPrefix(line, "STATUS="); ok {
					n.mu.Lock()
					n.status = s
					n.mu.Unlock()
				}
			}
		}
	}()
	return n
}
