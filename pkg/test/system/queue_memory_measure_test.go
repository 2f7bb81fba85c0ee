//go:build measure

package system

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"spip/pkg/test/bench"
	"spip/pkg/test/netns"
)

// queueMemoryCase is one run of TestQueueMemoryJournald: a configuration, and how journald is
// taken away while connections sending payload_cap bytes each keep coming.
type queueMemoryCase struct {
	name       string
	payloadCap int
	// stop: "sigstop" stalls journald (SIGSTOP: its sockets stay, datagrams wait, spip's queue
	// fills); "stop" stops systemd-journald and its socket units (nothing listens: spip's sends
	// are refused).
	stop    string
	seconds int
}

var queueMemoryCases = []queueMemoryCase{
	{"defaults-sigstop", 4096, "sigstop", 90},
	{"cap65536-sigstop", 65536, "sigstop", 90},
	{"cap65536-stop", 65536, "stop", 60},
}

// QueueMemoryResult is what one case measured.
type QueueMemoryResult struct {
	Name        string `json:"name"`
	PayloadCap  int    `json:"payload_cap"`
	Stop        string `json:"stop"`
	Seconds     int    `json:"seconds"`
	Connections int64  `json:"connections"` // sent and closed by the client
	ConnFailed  int64  `json:"connect_failed"`
	PayloadMiB  float64
	// The cgroup's memory.peak (everything charged to spip.service: heap, stacks, page cache,
	// the kernel's socket buffers) and the process's VmHWM (resident set high-water mark).
	CgroupPeakMiB float64 `json:"cgroup_peak_mib"`
	VmHWMMiB      float64 `json:"vmhwm_mib"`
	MemoryMax     string  `json:"memory_max"`   // systemctl show's
	Cgroup        string  `json:"cgroup"`       // which counters the container has: v2, v1, none
	CgroupLimit   string  `json:"cgroup_limit"` // the limit the kernel applies, as the cgroup says
	// memory.events: times the cgroup hit memory.max / memory.high, and OOM kills.
	EventsMax, EventsOOMKill int
	// spip's own STATUS= at the end of the stall and once journald is back.
	Recorded       int    `json:"recorded"`
	JournaldLost   uint64 `json:"journald_lost"`
	JournaldLostAt uint64 `json:"journald_lost_at_resume"`
	StatusAtResume string `json:"status_at_resume"`
	StatusFinal    string `json:"status_final"`
	StayedUp       bool   `json:"stayed_up"` // same MainPID, NRestarts unchanged, active
	LoadStart      string `json:"load_start"`
	LoadEnd        string `json:"load_end"`
}

// TestQueueMemoryJournald measures spip.service's peak memory, as installed from the package in
// the booted container, while journald is taken away and connections carrying payload_cap bytes
// each keep coming from the client namespace: the queue to journald fills to its bound
// (output.queue_bytes) and what does not fit is dropped and counted. A measurement for
// BENCHMARKS.md (-tags measure), not a pass/fail test; it fails only when spip did not stay up
// or the harness broke. SPIP_QMEM_DEB names a prebuilt package (else make deb builds one);
// SPIP_QMEM_CASES picks cases by name (comma-separated); SPIP_QMEM_SECONDS shortens each.
func TestQueueMemoryJournald(t *testing.T) {
	netns.Require(t, "systemd-nspawn", "debootstrap", "nft", "ip", "nsenter", "dpkg-buildpackage")
	var build *Build
	if deb := os.Getenv("SPIP_QMEM_DEB"); deb != "" {
		build = Prebuilt(deb)
	} else {
		build = StartDeb(t, "")
	}
	s := &sys{m: Boot(t)}
	s.c = NewClient(s.m.Net.Client)
	s.m.Install(t, build.Wait(t))
	s.m.Exec(t, "systemctl", "enable", "--now", "spip.socket")
	s.requireActive(t, "spip.socket", "spip-redirect.service")

	sel := os.Getenv("SPIP_QMEM_CASES")
	for _, c := range queueMemoryCases {
		if sel != "" && !strings.Contains(","+sel+",", ","+c.name+",") {
			continue
		}
		if v, err := strconv.Atoi(os.Getenv("SPIP_QMEM_SECONDS")); err == nil && v > 0 {
			c.seconds = v
		}
		t.Run(c.name, func(t *testing.T) {
			res := s.queueMemory(t, c)
			out, _ := json.Marshal(res)
			t.Logf("QMEM %s", out)
		})
	}
}

func (s *sys) queueMemory(t *testing.T, c queueMemoryCase) QueueMemoryResult {
	m := s.m
	res := QueueMemoryResult{Name: c.name, PayloadCap: c.payloadCap, Stop: c.stop, Seconds: c.seconds}
	// Every memory bound at its default but payload_cap; STATUS= every second so the counts
	// read at the end are the last second's.
	s.config = fmt.Sprintf("[session]\npayload_cap = %d\n[output]\nstatus_interval = \"1s\"\n", c.payloadCap)
	// A fresh process in a fresh cgroup: VmHWM and memory.peak start from nothing. Applied as
	// applyConfig does, but a failed reload of the table is tried once more, with its status
	// logged (the first reload after install failed once, unexplained).
	t.Logf("step: /etc/spip/spip.toml:\n%s", s.config)
	s.writeConfig(t, s.config)
	m.Exec(t, "spip", "check")
	if out, err := m.Run("systemctl", "reload", "spip-redirect.service"); err != nil {
		status, _ := m.Run("sh", "-c", "systemctl status --no-pager -l -n 20 spip-redirect.service; journalctl --no-pager -n 20 -u spip-redirect.service")
		t.Logf("reload failed, trying once more: %v\n%s\n%s", err, out, status)
		time.Sleep(2 * time.Second)
		m.Exec(t, "systemctl", "reload-or-restart", "spip-redirect.service")
	}
	m.Exec(t, "systemctl", "restart", "spip.service")
	s.requireActive(t, "spip.socket", "spip-redirect.service", "spip.service")
	pid := s.show(t, "spip.service", "MainPID")
	restarts := s.show(t, "spip.service", "NRestarts")
	res.MemoryMax = s.show(t, "spip.service", "MemoryMax")
	mem := findCgroupMemory(t, m, s.show(t, "spip.service", "ControlGroup"))
	res.Cgroup = mem.kind
	if mem.limit != "" {
		res.CgroupLimit = strings.TrimSpace(m.Exec(t, "cat", mem.limit))
	}
	t.Logf("step: spip.service's memory cgroup: %s (limit %q)", mem.kind, res.CgroupLimit)
	journald := s.show(t, "systemd-journald.service", "MainPID")
	if journald == "" || journald == "0" {
		t.Fatal("systemd-journald.service has no MainPID")
	}

	res.LoadStart = bench.LoadAvg()
	t.Logf("step: %s: spip pid %s, MemoryMax=%s, journald pid %s; load %s", c.name, pid, res.MemoryMax, journald, res.LoadStart)

	// Journald comes back whatever happens below.
	resumed := false
	resume := func() {
		if resumed {
			return
		}
		resumed = true
		switch c.stop {
		case "sigstop":
			if out, err := m.Run("kill", "-CONT", journald); err != nil {
				t.Errorf("kill -CONT %s: %v\n%s", journald, err, out)
			}
		case "stop":
			if out, err := m.Run("systemctl", "start", "systemd-journald.socket", "systemd-journald-dev-log.socket", "systemd-journald.service"); err != nil {
				t.Errorf("starting journald again: %v\n%s", err, out)
			}
		}
	}
	defer resume()
	switch c.stop {
	case "sigstop":
		t.Logf("step: kill -STOP %s (systemd-journald)", journald)
		m.Exec(t, "kill", "-STOP", journald)
	case "stop":
		// The socket units too: with them PID 1 would start journald again on the next datagram.
		// The audit socket only exists where audit does (ConditionSecurity=audit).
		t.Logf("step: systemctl stop systemd-journald and its sockets")
		m.Exec(t, "systemctl", "stop", "systemd-journald.socket", "systemd-journald-dev-log.socket", "systemd-journald-audit.socket", "systemd-journald.service")
		if st := s.show(t, "systemd-journald.service", "ActiveState"); st != "inactive" {
			t.Fatalf("systemd-journald.service is %s after systemctl stop", st)
		}
	}

	// The largest payloads: payload_cap random bytes from every connection, from as many
	// connections as the client's workers make, for c.seconds.
	var (
		sent, failed atomic.Int64
		lastErr      atomic.Value
		wg           sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(time.Duration(c.seconds) * time.Second)
	const workers = 16
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = netns.In(m.Net.Client, func() error {
				payload := make([]byte, c.payloadCap)
				_, _ = rand.Read(payload)
				for i := 0; time.Now().Before(deadline); i++ {
					dst := netns.SensorV4
					if i%3 == 2 {
						dst = netns.SensorV6
					}
					port := uint16(1024 + (w*7919+i*104729)%60000)
					if port == 22 {
						port = 23
					}
					copy(payload, fmt.Sprintf("qmem %d %d ", w, i))
					conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(dst, port).String(), 5*time.Second)
					if err != nil {
						failed.Add(1)
						lastErr.Store(err.Error())
						time.Sleep(10 * time.Millisecond)
						continue
					}
					_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := conn.Write(payload); err != nil {
						failed.Add(1)
						lastErr.Store(err.Error())
					} else {
						sent.Add(1)
					}
					conn.Close()
				}
				return nil
			})
		}()
	}
	// Watch while the load runs: memory, and that spip is still the same process.
	var peakCurrent, peakRSS int64
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Second)
		var cur int64
		if mem.current != "" {
			cur = readInt(t, m, mem.current)
		}
		rss := statusKB(t, m, pid, "VmRSS")
		peakCurrent, peakRSS = max(peakCurrent, cur), max(peakRSS, rss)
		st := parseStatus(s.show(t, "spip.service", "StatusText"))
		t.Logf("+%3.0fs sent %d (failed %d): memory.current %.1f MiB, VmRSS %.1f MiB; journald sink %d written, %d lost",
			time.Since(start).Seconds(), sent.Load(), failed.Load(), mib(cur), mib(rss), st.sinks["journald"].written, st.sinks["journald"].lost)
	}
	wg.Wait()
	res.Connections, res.ConnFailed = sent.Load(), failed.Load()
	res.PayloadMiB = mib(res.Connections * int64(c.payloadCap))
	if e, ok := lastErr.Load().(string); ok {
		t.Logf("last client error: %s", e)
	}
	time.Sleep(2 * time.Second) // the last connections are recorded and the STATUS= after them written

	if mem.peak != "" {
		res.CgroupPeakMiB = mib(readInt(t, m, mem.peak))
	}
	res.VmHWMMiB = mib(statusKB(t, m, pid, "VmHWM"))
	if mem.events != "" {
		for _, line := range strings.Split(m.Exec(t, "cat", mem.events), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 {
				n, _ := strconv.Atoi(f[1])
				switch f[0] {
				case "max":
					res.EventsMax = n
				case "oom_kill":
					res.EventsOOMKill = n
				}
			}
		}
	}
	if mem.failcnt != "" {
		res.EventsMax = int(readInt(t, m, mem.failcnt))
	}
	res.StatusAtResume = s.show(t, "spip.service", "StatusText")
	res.JournaldLostAt = parseStatus(res.StatusAtResume).sinks["journald"].lost
	res.StayedUp = s.show(t, "spip.service", "MainPID") == pid && s.show(t, "spip.service", "NRestarts") == restarts &&
		s.show(t, "spip.service", "ActiveState") == "active"
	t.Logf("step: %d connections of %d bytes sent (%d failed); memory.peak %.1f MiB, VmHWM %.1f MiB (sampled: memory.current ≤ %.1f MiB, VmRSS ≤ %.1f MiB); memory.events max %d, oom_kill %d; STATUS=%s",
		res.Connections, c.payloadCap, res.ConnFailed, res.CgroupPeakMiB, res.VmHWMMiB, mib(peakCurrent), mib(peakRSS), res.EventsMax, res.EventsOOMKill, res.StatusAtResume)

	t.Logf("step: journald back")
	resume()
	// Once journald has taken what was queued, spip's books: every record made is in the
	// journal or counted lost.
	var st sinkCounts
	for i := 0; i < 120; i++ { // bounded: two minutes
		time.Sleep(time.Second)
		st = parseStatus(s.show(t, "spip.service", "StatusText"))
		recorded, _ := leadingCount(st.raw, "recorded ")
		if jd := st.sinks["journald"]; !jd.failing && jd.written+jd.lost >= uint64(recorded) {
			break
		}
	}
	res.StatusFinal = st.raw
	res.JournaldLost = st.sinks["journald"].lost
	res.Recorded, _ = leadingCount(st.raw, "recorded ")
	res.LoadEnd = bench.LoadAvg()
	t.Logf("final STATUS=%s; load %s", st.raw, res.LoadEnd)
	if !res.StayedUp {
		t.Errorf("spip.service did not stay up: MainPID %s → %s, NRestarts %s → %s", pid, s.show(t, "spip.service", "MainPID"), restarts, s.show(t, "spip.service", "NRestarts"))
	}
	if res.EventsOOMKill > 0 {
		t.Errorf("memory.events oom_kill %d", res.EventsOOMKill)
	}
	return res
}

// cgroupMemory names the files of a service's memory cgroup in the container; an empty name
// is a counter the container does not have.
type cgroupMemory struct {
	kind                           string // "v2", "v1" or "none"
	peak, current, events, failcnt string
	limit                          string // memory.max or memory.limit_in_bytes
}

// findCgroupMemory finds the memory counters of control group cg (systemctl show's
// ControlGroup=): cgroup v2's memory.peak and memory.events, or on a host with the legacy
// hierarchy the memory controller's max_usage_in_bytes and failcnt. nspawn gives a container
// on such a host a memory hierarchy only where the host delegates one; what it found is logged.
func findCgroupMemory(t *testing.T, m *Machine, cg string) cgroupMemory {
	t.Helper()
	if v2 := "/sys/fs/cgroup" + cg; readable(m, v2+"/memory.peak") {
		return cgroupMemory{kind: "v2", peak: v2 + "/memory.peak", current: v2 + "/memory.current", events: v2 + "/memory.events", limit: v2 + "/memory.max"}
	}
	if v1 := "/sys/fs/cgroup/memory" + cg; readable(m, v1+"/memory.max_usage_in_bytes") {
		return cgroupMemory{kind: "v1", peak: v1 + "/memory.max_usage_in_bytes", current: v1 + "/memory.usage_in_bytes", failcnt: v1 + "/memory.failcnt", limit: v1 + "/memory.limit_in_bytes"}
	}
	out, _ := m.Run("sh", "-c", "cat /proc/self/cgroup; mount -t cgroup,cgroup2; ls /sys/fs/cgroup /sys/fs/cgroup"+cg)
	t.Logf("no memory counters for %s in the container (only VmHWM is measured):\n%s", cg, out)
	return cgroupMemory{kind: "none"}
}

func readable(m *Machine, path string) bool {
	_, err := m.Run("test", "-r", path)
	return err == nil
}

// readInt reads a file of the container holding one integer (a cgroup counter).
func readInt(t *testing.T, m *Machine, path string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimSpace(m.Exec(t, "cat", path)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// statusKB reads a "kB" line of /proc/PID/status in the container, in bytes.
func statusKB(t *testing.T, m *Machine, pid, key string) int64 {
	t.Helper()
	for _, line := range strings.Split(m.Exec(t, "cat", "/proc/"+pid+"/status"), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%s/status %s: %v", pid, key, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("/proc/%s/status: no %s", pid, key)
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
