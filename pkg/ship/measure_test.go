//go:build measure

package ship_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"spip/pkg/test/clickhouse"
	"spip/pkg/test/journalfile"
)

// TestMeasureShip measures `spip ship` (the binary, with its journalctl) against a real journal
// and Debian's clickhouse-server:
//
//  1. backlog: records/s and CPU per 10k records while it ships a journal written beforehand;
//  2. steady: the lag (STATUS=, every second) while records arrive at SPIP_SHIP_RATE per second
//     (default 10,000: the journald sink's sustained zero-loss rate in BENCHMARKS.md) and the
//     shipper's CPU share meanwhile.
//
// go test -tags measure -timeout 30m -run TestMeasureShip -v ./pkg/ship (SPIP_SHIP_BACKLOG, SPIP_SHIP_RATE,
// SPIP_SHIP_SECONDS change the sizes). The figures are in BENCHMARKS.md.
func TestMeasureShip(t *testing.T) {
	backlog := envInt("SPIP_SHIP_BACKLOG", 100000)
	rate := envInt("SPIP_SHIP_RATE", 10000)
	seconds := envInt("SPIP_SHIP_SECONDS", 30)
	srv := clickhouse.Start(t)
	schema(t, srv, names("measure"))
	jdir, state := t.TempDir(), t.TempDir()
	w := journalfile.Open(t, jdir, "sensor", "sensor-measure")
	payload := []byte("GET / HTTP/1.1\r\nHost: 203.0.113.5\r\nUser-Agent: Mozilla/5.0 zgrab/0.x\r\nAccept: */*\r\n\r\n")
	for i := 0; i < backlog; i++ {
		if err := w.Write(conn(i, payload)); err != nil {
			t.Fatal(err)
		}
	}
	// Close waits until journal-remote has written the whole backlog; the steady phase writes a
	// second file.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("backlog of %d records written", backlog)
	w = journalfile.Open(t, jdir, "sensor2", "sensor-measure")

	notes := listenNotify(t)
	cmd := shipCmd(t, srv, "measure", clickhouse.User, clickhouse.Password, jdir, state, 10000)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+notes.path)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM measure.connections", backlog, 10*time.Minute)
	took := time.Since(start)
	shipCPU, jctlCPU := cpuOf(t, cmd.Process.Pid)
	perSec := float64(backlog) / took.Seconds()
	t.Logf("machine: %d CPUs (%s), shared with other test runs: figures are noisy, compare within one run", runtime.NumCPU(), cpuModel())
	t.Logf("backlog: %d records in %.1fs = %.0f records/s; CPU per 10k records: spip ship %.3f s, journalctl %.3f s, together %.3f s (%.2f cores while catching up)",
		backlog, took.Seconds(), perSec, shipCPU/float64(backlog)*1e4, jctlCPU/float64(backlog)*1e4,
		(shipCPU+jctlCPU)/float64(backlog)*1e4, (shipCPU+jctlCPU)/took.Seconds())

	// Steady traffic at rate/s, in 100 ms slices.
	ship0, jctl0 := cpuOf(t, cmd.Process.Pid)
	t0 := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	per := rate / 10
	var maxBehind int64
	var maxLag float64
	for i := 0; i < seconds*10; i++ {
		<-tick.C
		for j := 0; j < per; j++ {
			if err := w.Write(conn(j, payload)); err != nil {
				t.Fatal(err)
			}
		}
		_ = w.Flush()
		if b, l, ok := notes.lag(); ok && i > 10 {
			maxBehind, maxLag = max(maxBehind, b), max(maxLag, l)
		}
	}
	tick.Stop()
	elapsed := time.Since(t0)
	ship1, jctl1 := cpuOf(t, cmd.Process.Pid)
	total := backlog + rate*seconds
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM measure.connections", total, 10*time.Minute)
	drained := time.Since(t0) - elapsed
	cores := (ship1 - ship0 + jctl1 - jctl0) / elapsed.Seconds()
	t.Logf("steady: %d records/s for %ds (written: %.0f/s): spip ship + journalctl used %.2f cores (spip ship %.2f, journalctl %.2f); lag (STATUS=, after the first second) at most %d entries, %.1fs; the last record was in ClickHouse %.1fs after the writer stopped",
		rate, seconds, float64(rate*seconds)/elapsed.Seconds(), cores, (ship1-ship0)/elapsed.Seconds(), (jctl1-jctl0)/elapsed.Seconds(),
		maxBehind, maxLag, drained.Seconds())
	t.Logf("last STATUS=%s", notes.last())
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
