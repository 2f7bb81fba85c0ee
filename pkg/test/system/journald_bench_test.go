//go:build measure

package system

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"spip/pkg/test/bench"
	"spip/pkg/test/netns"
)

// TestJournaldBench is issue 8's journald experiment: in the booted container (the only place
// with a real journald), spip with the journald sink only and the ceiling with a naive
// journal.Send output, each pinned to core 0 behind the bench's redirect ruleset, take paced
// unique-payload floods from spip-loadgen in the client namespace on core 1. Per step it counts
// the records that reached the journal (by the step's tag in SPIP_PAYLOAD), the sensor's and
// journald's CPU from /proc, SYNs the sensor namespace dropped, and spip's STATUS= counts.
// Figures go in BENCHMARKS.md by hand; nothing here asserts a speed.
//
// SPIP_JOURNALD_RATES (default 2000,4000,6000,8000), SPIP_JOURNALD_REPS (default 1),
// SPIP_JOURNALD_SYSTEMS (default spip,ceiling), SPIP_SYSTEST_DEBS (a prebuilt .deb first).
func TestJournaldBench(t *testing.T) {
	netns.Require(t, "systemd-nspawn", "debootstrap", "nft", "ip", "nsenter", "dpkg-buildpackage", "taskset", "conntrack", "ss")
	rates := []int{2000, 4000, 6000, 8000}
	if s := os.Getenv("SPIP_JOURNALD_RATES"); s != "" {
		rates = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("SPIP_JOURNALD_RATES: %v", err)
			}
			rates = append(rates, n)
		}
	}
	reps := 1
	if s := os.Getenv("SPIP_JOURNALD_REPS"); s != "" {
		reps, _ = strconv.Atoi(s)
	}
	systems := []string{"spip", "ceiling"}
	if s := os.Getenv("SPIP_JOURNALD_SYSTEMS"); s != "" {
		systems = strings.Split(s, ",")
	}

	var build *Build
	if debs := os.Getenv("SPIP_SYSTEST_DEBS"); debs != "" {
		base, _, _ := strings.Cut(debs, ",")
		build = Prebuilt(base)
	} else {
		build = StartDeb(t, "")
	}
	const ctMax = "/proc/sys/net/netfilter/nf_conntrack_max"
	if old, err := os.ReadFile(ctMax); err == nil {
		if err := os.WriteFile(ctMax, []byte("1048576"), 0o644); err == nil {
			t.Cleanup(func() { _ = os.WriteFile(ctMax, old, 0o644) })
		}
	}
	m := Boot(t)
	bin, err := bench.Build(filepath.Join(m.Root, "usr/local/bin"))
	if err != nil {
		t.Fatal(err)
	}
	m.Install(t, build.Wait(t))
	// The package's socket, service and tproxy rules step aside: both sensors run by hand behind
	// the bench's redirect, one at a time, on the same port.
	out, _ := m.Run("systemctl", "disable", "--now", "spip.socket", "spip.service", "spip-redirect.service")
	t.Logf("step: package units stopped: %s", strings.TrimSpace(out))
	rules := filepath.Join(m.Dir, "bench.nft")
	if err := os.WriteFile(rules, []byte(bench.Ruleset("s0", bench.Port)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := netns.Exec(m.Net.Sensor, "nft", "-f", rules); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	m.WriteFile(t, "/srv/bench.toml", []byte("[capture]\nmode = \"redirect\"\n[session]\nmax_sessions = 65536\n[output]\nstatus_interval = \"1s\"\n"), 0o644)
	journald := strings.TrimSpace(m.Exec(t, "systemctl", "show", "--value", "-p", "MainPID", "systemd-journald.service"))
	t.Logf("machine: %s; journald pid %s (in the container), not pinned", machineLine(), journald)
	t.Logf("%-7s %3s %5s %8s %9s %9s %6s %7s %9s %9s %6s %s", "system", "rep", "rate", "offered", "connected", "journal", "lost", "synDrop", "cpu/10k", "jd cpu/10k", "drain", "status")

	for rep := 1; rep <= reps; rep++ {
		for _, sys := range systems {
			for _, rate := range rates {
				jbStep(t, m, bin, sys, rep, rate, journald)
			}
		}
	}
}

var seqRe = regexp.MustCompile(`spipbench (\S+) (\d+) `)

// jbStep runs one sensor for one rate and logs one line of figures.
func jbStep(t *testing.T, m *Machine, bin bench.Binaries, sys string, rep, rate int, journald string) {
	unit := fmt.Sprintf("jbench-%s-%d-%d", sys, rep, rate)
	args := []string{"systemd-run", "--unit=" + unit, "-p", "CPUAffinity=" + bench.SensorCPU,
		"-p", "LogRateLimitIntervalSec=30s", "-p", "LogRateLimitBurst=4000000000", "-p", "LimitNOFILE=131072"}
	ident := "spip"
	switch sys {
	case "spip":
		args = append(args, "-p", "Type=notify", "/usr/bin/spip", "serve", "--config", "/srv/bench.toml",
			"--listen", fmt.Sprintf("[::]:%d", bench.Port), "--journald", "on")
	case "ceiling":
		ident = "spip-ceiling"
		args = append(args, "/usr/local/bin/spip-ceiling", "-listen", fmt.Sprintf("[::]:%d", bench.Port), "-journald", "-timeout", "120s")
	default:
		t.Fatalf("unknown system %q", sys)
	}
	m.Exec(t, args...)
	defer func() { _, _ = m.Run("systemctl", "stop", unit) }()
	for i := 0; ; i++ { // bounded: 10 s
		out, _ := netns.Exec(m.Net.Sensor, "ss", "-Hltn", fmt.Sprintf("sport = :%d", bench.Port))
		if strings.Contains(string(out), "LISTEN") {
			break
		}
		if i == 100 {
			t.Fatalf("%s: not listening after 10 s", unit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	pid := strings.TrimSpace(m.Exec(t, "systemctl", "show", "--value", "-p", "MainPID", unit))
	if out, err := netns.Exec(m.Net.Sensor, "conntrack", "-F"); err != nil && !strings.Contains(string(out), "0 flow entries") {
		t.Fatalf("conntrack -F: %v %s", err, out)
	}
	drops0, _ := bench.ListenDrops(m.Net.Sensor)
	since := time.Now().Add(-time.Second).Unix()
	scpu0, jcpu0 := procCPU(t, m, pid), procCPU(t, m, journald)
	tag := strconv.FormatUint(rand.Uint64(), 36)

	cmd := netns.Command(m.Net.Client, "taskset", "-c", bench.LoadgenCPU, bin.Loadgen,
		"-rate", strconv.Itoa(rate), "-duration", "10s", "-tag", tag)
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("spip-loadgen: %v %s", err, raw)
	}
	var res bench.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("spip-loadgen output %q: %v", raw, err)
	}
	backlog, _ := netns.Exec(m.Net.Sensor, "ss", "-Hltn", fmt.Sprintf("sport = :%d", bench.Port))
	sent := time.Now()

	// Wait until every connection is in the journal or the count stops growing for 5 s.
	got, last, lastAt := 0, -1, time.Now()
	for time.Since(sent) < 90*time.Second && time.Since(lastAt) < 5*time.Second {
		got = journalCount(t, m, ident, since, tag)
		if got != last {
			last, lastAt = got, time.Now()
		}
		if got >= res.Connected {
			break
		}
		time.Sleep(time.Second)
	}
	drain := lastAt.Sub(sent).Seconds()
	scpu, jcpu := procCPU(t, m, pid)-scpu0, procCPU(t, m, journald)-jcpu0
	drops1, _ := bench.ListenDrops(m.Net.Sensor)
	status := ""
	if sys == "spip" {
		time.Sleep(1500 * time.Millisecond) // one more status_interval: the final counts
		status = strings.TrimSpace(m.Exec(t, "systemctl", "show", "--value", "-p", "StatusText", unit))
	} else {
		f := strings.Fields(string(backlog))
		status = "listen socket at end of sending (state, Recv-Q, Send-Q): " + strings.Join(f[:min(3, len(f))], " ")
	}
	per10k := func(s float64) float64 {
		if res.Connected == 0 {
			return 0
		}
		return s * 1e4 / float64(res.Connected)
	}
	la, _ := os.ReadFile("/proc/loadavg")
	t.Logf("%-7s %3d %5d %8.0f %9d %9d %6d %7d %9.3f %9.3f %6.1f %s", sys, rep, rate, res.OfferedRate, res.Connected, got,
		res.Connected-got, drops1-drops0, per10k(scpu), per10k(jcpu), drain, status)
	// The generator's own CPU near its send time means its core set the pace, not the sensor.
	t.Logf("  generator CPU %.0f%% of its send time; loadavg %s", 100*res.GenCPU/max(res.SendSeconds, 1e-9), strings.Join(strings.Fields(string(la))[:3], " "))
	if res.ConnectFailed > 0 {
		t.Logf("  %d connects failed: %s", res.ConnectFailed, res.FirstError)
	}
}

// journalCount counts the distinct sequence numbers of tag's payloads in the journal entries
// of identifier ident since the Unix time since.
func journalCount(t *testing.T, m *Machine, ident string, since int64, tag string) int {
	out, err := m.RunTimeout(time.Minute, "journalctl", "--all", "-q", "-t", ident, "--since", fmt.Sprintf("@%d", since),
		"-o", "cat", "--output-fields=SPIP_PAYLOAD")
	if err != nil {
		t.Fatalf("journalctl: %v %s", err, tail([]byte(out), 5))
	}
	seen := map[string]bool{}
	for _, mm := range seqRe.FindAllStringSubmatch(out, -1) {
		if mm[1] == tag {
			seen[mm[2]] = true
		}
	}
	return len(seen)
}

// procCPU is a container process's user+system CPU seconds (/proc/PID/stat, USER_HZ 100).
func procCPU(t *testing.T, m *Machine, pid string) float64 {
	s := m.Exec(t, "cat", "/proc/"+pid+"/stat")
	end := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		t.Fatalf("/proc/%s/stat: %q", pid, s)
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100
}

func machineLine() string {
	k, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	la, _ := os.ReadFile("/proc/loadavg")
	return fmt.Sprintf("kernel %s, loadavg %s", strings.TrimSpace(string(k)), strings.TrimSpace(string(la)))
}
