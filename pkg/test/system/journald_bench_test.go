//go:build measure

package system

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"spip/pkg/test/bench"
	"spip/pkg/test/netns"
)

// TestJournaldBench is `make bench-journald`: in the booted container (the only place with a
// real journald), spip and the naive reference sensors, each pinned to core 0 behind the bench's
// redirect ruleset, take paced unique-payload floods from spip-loadgen in the client namespace
// on core 1. Per step it counts the records that reached the journal (or the JSON file) by the
// step's tag, the sensor's and journald's CPU from /proc, SYNs the sensor namespace dropped, and
// spip's STATUS= counts. Within a repetition every system runs at a rate before the next rate
// (the order rotating per repetition), so the ratios compare like with like. Nothing here
// asserts a speed.
//
// The systems (SPIP_JOURNALD_SYSTEMS, default spip,native,send,spip-json,ceiling-json):
//   - spip: `spip serve --journald on`, the journald sink only;
//   - native: `spip-ceiling -native`, the naive native-protocol writer;
//   - send: `spip-ceiling -journald`, go-systemd's journal.Send under a mutex;
//   - spip-json, ceiling-json: the JSON path of both, to a file in the container;
//   - spip-lean: spip with record.journald_omit = ["payload_hex", "time"];
//   - spip@NAME: the spip binary SPIP_JOURNALD_AB names as NAME=PATH (comma-separated).
//
// SPIP_JOURNALD_RATES (default 2000,4000,6000,8000), SPIP_JOURNALD_REPS (default 3),
// SPIP_JOURNALD_STEP (default 10s), SPIP_JOURNALD_OUT (the BENCHMARKS.md whose journald section
// to rewrite), SPIP_JOURNALD_PERF (a directory: after the repetitions, one step per journald
// system at SPIP_JOURNALD_PERF_RATE, default 4000, under perf; the reports go there),
// SPIP_JOURNALD_INGEST (entries for the journald ingest experiment, default 200000; 0: none).
func TestJournaldBench(t *testing.T) {
	netns.Require(t, "systemd-nspawn", "debootstrap", "nft", "ip", "nsenter", "taskset", "conntrack", "ss")
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
	reps := 3
	if s := os.Getenv("SPIP_JOURNALD_REPS"); s != "" {
		reps, _ = strconv.Atoi(s)
	}
	step := 10 * time.Second
	if s := os.Getenv("SPIP_JOURNALD_STEP"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SPIP_JOURNALD_STEP: %v", err)
		}
		step = d
	}
	systems := []string{"spip", "native", "send", "spip-json", "ceiling-json"}
	if s := os.Getenv("SPIP_JOURNALD_SYSTEMS"); s != "" {
		systems = strings.Split(s, ",")
	}
	ingest := 200000
	if s := os.Getenv("SPIP_JOURNALD_INGEST"); s != "" {
		ingest, _ = strconv.Atoi(s)
	}
	started := time.Now()
	loadStart := bench.LoadAvg()

	const ctMax = "/proc/sys/net/netfilter/nf_conntrack_max"
	if old, err := os.ReadFile(ctMax); err == nil {
		if err := os.WriteFile(ctMax, []byte("1048576"), 0o644); err == nil {
			t.Cleanup(func() { _ = os.WriteFile(ctMax, old, 0o644) })
		}
	}
	m := Boot(t)
	// The tree's binaries, unstripped (perf names their functions), run by hand: no package
	// unit is installed, so nothing else listens or writes.
	bin, err := bench.Build(filepath.Join(m.Root, "usr/local/bin"))
	if err != nil {
		t.Fatal(err)
	}
	if ab := os.Getenv("SPIP_JOURNALD_AB"); ab != "" {
		for _, kv := range strings.Split(ab, ",") {
			name, path, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("SPIP_JOURNALD_AB: %q is not NAME=PATH", kv)
			}
			if out, err := exec.Command("cp", path, filepath.Join(m.Root, "usr/local/bin/spip-"+name)).CombinedOutput(); err != nil {
				t.Fatalf("cp %s: %v %s", path, err, out)
			}
		}
	}
	rules := filepath.Join(m.Dir, "bench.nft")
	if err := os.WriteFile(rules, []byte(bench.Ruleset("s0", bench.Port)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := netns.Exec(m.Net.Sensor, "nft", "-f", rules); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	const conf = "[capture]\nmode = \"redirect\"\n[session]\nmax_sessions = 65536\n[output]\nstatus_interval = \"1s\"\n"
	m.WriteFile(t, "/srv/bench.toml", []byte(conf), 0o644)
	m.WriteFile(t, "/srv/bench-lean.toml", []byte(conf+"[record]\njournald_omit = [\"payload_hex\", \"time\"]\n"), 0o644)
	journald := strings.TrimSpace(m.Exec(t, "systemctl", "show", "--value", "-p", "MainPID", "systemd-journald.service"))
	t.Logf("machine: %s; journald pid %s (in the container), not pinned", machineLine(), journald)
	t.Logf("%-12s %3s %5s %8s %9s %9s %6s %7s %9s %9s %6s %s", "system", "rep", "rate", "offered", "connected", "recorded", "lost", "synDrop", "cpu/10k", "jd cpu/10k", "drain", "status")

	var res []jbResult
	for rep := 1; rep <= reps; rep++ {
		for _, rate := range rates {
			// Rotate the order of the systems per repetition: none always runs first.
			for i := range systems {
				sys := systems[(i+rep-1)%len(systems)]
				res = append(res, jbStep(t, m, bin, sys, rep, rate, step, journald, ""))
			}
		}
	}
	var ing *jbIngest
	if ingest > 0 {
		ing = jbIngestRun(t, m, bin, ingest, journald)
	}
	if dir := os.Getenv("SPIP_JOURNALD_PERF"); dir != "" {
		rate := 4000
		if s := os.Getenv("SPIP_JOURNALD_PERF_RATE"); s != "" {
			rate, _ = strconv.Atoi(s)
		}
		for _, sys := range systems {
			jbStep(t, m, bin, sys, 0, rate, step, journald, dir)
		}
	}
	if out := os.Getenv("SPIP_JOURNALD_OUT"); out != "" {
		rep := jbReport{Results: res, Systems: systems, Rates: rates, Reps: reps, Step: step, Ingest: ing,
			Started: started, Took: time.Since(started), LoadStart: loadStart, LoadEnd: bench.LoadAvg()}
		section := rep.markdown()
		t.Log("\n" + section)
		if err := rep.plot(filepath.Join(filepath.Dir(out), jbPlotName)); err != nil {
			t.Logf("plot: %v", err)
		}
		doc, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, []byte(spliceSection(string(doc), jbBegin, jbEnd, section)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var seqRe = regexp.MustCompile(`spipbench (\S+) (\d+) `)

// jbResult is one step's figures.
type jbResult struct {
	Sys                 string
	Rep, Rate           int
	Offered             float64
	Connected, Recorded int
	SynDrops            uint64
	CPU, JCPU           float64 // seconds per 10k connections: the sensor, journald
	Drain               float64
	GenCPU              float64 // the generator's CPU share of its send time
	Load                string
	Status              string
}

// Lost is what connected and never reached the journal or the file.
func (r jbResult) Lost() int { return r.Connected - r.Recorded }

// jbArgs is how a system starts under systemd-run, its journal identifier and its JSON file.
func jbArgs(t *testing.T, sys, unit string) (args []string, ident, jsonFile string) {
	listen := fmt.Sprintf("[::]:%d", bench.Port)
	serve := func(binary, conf string, extra ...string) []string {
		return append([]string{"-p", "Type=notify", binary, "serve", "--config", conf, "--listen", listen}, extra...)
	}
	ceiling := append([]string{}, "/usr/local/bin/spip-ceiling", "-listen", listen, "-timeout", "120s")
	switch {
	case sys == "spip":
		return serve("/usr/local/bin/spip", "/srv/bench.toml", "--journald", "on"), "spip", ""
	case sys == "spip-lean":
		return serve("/usr/local/bin/spip", "/srv/bench-lean.toml", "--journald", "on"), "spip", ""
	case strings.HasPrefix(sys, "spip@"):
		return serve("/usr/local/bin/spip-"+strings.TrimPrefix(sys, "spip@"), "/srv/bench.toml", "--journald", "on"), "spip", ""
	case sys == "spip-json":
		f := "/srv/" + unit + ".json"
		return serve("/usr/local/bin/spip", "/srv/bench.toml", "--journald", "off", "--json", f), "", f
	case sys == "native":
		return append(ceiling, "-native"), "spip-ceiling", ""
	case sys == "send":
		return append(ceiling, "-journald"), "spip-ceiling", ""
	case sys == "ceiling-json":
		f := "/srv/" + unit + ".json"
		return append(ceiling, "-json", f), "", f
	}
	t.Fatalf("unknown system %q", sys)
	return nil, "", ""
}

// jbStep runs one sensor for one rate and logs one line of figures. With perfDir it records
// perf profiles of the sensor and journald during the step and writes their reports there.
func jbStep(t *testing.T, m *Machine, bin bench.Binaries, sys string, rep, rate int, step time.Duration, journald, perfDir string) jbResult {
	unit := fmt.Sprintf("jbench-%s-%d-%d-%d", strings.ReplaceAll(sys, "@", "-"), rep, rate, rand.Uint32())
	sargs, ident, jsonFile := jbArgs(t, sys, unit)
	args := append([]string{"systemd-run", "--unit=" + unit, "-p", "CPUAffinity=" + bench.SensorCPU,
		"-p", "LogRateLimitIntervalSec=30s", "-p", "LogRateLimitBurst=4000000000", "-p", "LimitNOFILE=131072"}, sargs...)
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
	var perfs []*exec.Cmd
	if perfDir != "" {
		for _, p := range [][2]string{{sys, pid}, {sys + "-journald", journald}} {
			hp := m.hostPID(t, p[1])
			cmd := exec.Command("perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-g", "-p", strconv.Itoa(hp),
				"-o", filepath.Join(perfDir, strings.ReplaceAll(p[0], "@", "-")+".perf"))
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatalf("perf: %v", err)
			}
			perfs = append(perfs, cmd)
		}
	}
	drops0, _ := bench.ListenDrops(m.Net.Sensor)
	since := time.Now().Add(-time.Second).Unix()
	scpu0, jcpu0 := procCPU(t, m, pid), procCPU(t, m, journald)
	tag := strconv.FormatUint(rand.Uint64(), 36)

	// The protocol issue's payload mix (real clients' ClientHellos, an HTTP request, SSH
	// banners, random bytes) before each marker: spip's records carry their protocol fields.
	cmd := netns.Command(m.Net.Client, "taskset", "-c", bench.LoadgenCPU, bin.Loadgen,
		"-rate", strconv.Itoa(rate), "-duration", step.String(), "-tag", tag, "-mix", strings.Join(bench.MixFiles(), ","))
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

	// Wait until every connection is recorded or the count stops growing for 5 s.
	got, last, lastAt := 0, -1, time.Now()
	for time.Since(sent) < 90*time.Second && time.Since(lastAt) < 5*time.Second {
		if jsonFile != "" {
			got = fileCount(m, jsonFile, tag)
		} else {
			got = journalCount(t, m, ident, since, tag)
		}
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
	for _, p := range perfs {
		_ = p.Process.Signal(os.Interrupt)
		_ = p.Wait()
	}
	drops1, _ := bench.ListenDrops(m.Net.Sensor)
	status := ""
	if strings.HasPrefix(sys, "spip") {
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
	r := jbResult{Sys: sys, Rep: rep, Rate: rate, Offered: res.OfferedRate, Connected: res.Connected, Recorded: got,
		SynDrops: drops1 - drops0, CPU: per10k(scpu), JCPU: per10k(jcpu), Drain: drain,
		GenCPU: res.GenCPU / max(res.SendSeconds, 1e-9), Load: bench.LoadAvg(), Status: status}
	t.Logf("%-12s %3d %5d %8.0f %9d %9d %6d %7d %9.3f %9.3f %6.1f %s", sys, rep, rate, r.Offered, r.Connected, r.Recorded,
		r.Lost(), r.SynDrops, r.CPU, r.JCPU, r.Drain, r.Status)
	// The generator's own CPU near its send time means its core set the pace, not the sensor.
	t.Logf("  generator CPU %.0f%% of its send time; loadavg %s", 100*r.GenCPU, r.Load)
	if res.ConnectFailed > 0 {
		t.Logf("  %d connects failed: %s", res.ConnectFailed, res.FirstError)
	}
	if perfDir != "" {
		for _, name := range []string{sys, sys + "-journald"} {
			name = strings.ReplaceAll(name, "@", "-")
			in := filepath.Join(perfDir, name+".perf")
			// Self time by function, and time with callees (where a whole path's cost shows).
			for _, v := range [][]string{{"self", "--no-children", "dso,sym"}, {"children", "--children", "sym"}} {
				out, err := exec.Command("perf", "report", "-i", in, "--stdio", v[1], "-g", "none",
					"--percent-limit", "0.5", "--sort", v[2]).Output()
				if err != nil {
					t.Logf("perf report %s: %v", in, err)
					continue
				}
				if err := os.WriteFile(filepath.Join(perfDir, name+"."+v[0]+".txt"), out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return r
}

// hostPID maps a pid of the container's pid namespace to the host's.
func (m *Machine) hostPID(t *testing.T, cpid string) int {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", m.pid))
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if l, _ := os.Readlink(d + "/ns/pid"); l != ns {
			continue
		}
		b, err := os.ReadFile(d + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f, ok := strings.CutPrefix(line, "NSpid:"); ok {
				ids := strings.Fields(f)
				if len(ids) >= 2 && ids[len(ids)-1] == cpid {
					n, _ := strconv.Atoi(ids[0])
					return n
				}
			}
		}
	}
	t.Fatalf("no host pid for container pid %s", cpid)
	return 0
}

// journalCount counts the distinct sequence numbers of tag's payloads in the journal entries
// of identifier ident since the Unix time since.
func journalCount(t *testing.T, m *Machine, ident string, since int64, tag string) int {
	out, err := m.RunTimeout(time.Minute, "journalctl", "--all", "-q", "-t", ident, "--since", fmt.Sprintf("@%d", since),
		"-o", "cat", "--output-fields=SPIP_PAYLOAD")
	if err != nil {
		t.Fatalf("journalctl: %v %s", err, tail([]byte(out), 5))
	}
	return countTag(out, tag)
}

// fileCount counts the distinct sequence numbers of tag's payloads in a JSON lines file of
// the container.
func fileCount(m *Machine, path, tag string) int {
	b, _ := os.ReadFile(filepath.Join(m.Root, path))
	return countTag(string(b), tag)
}

func countTag(s, tag string) int {
	seen := map[string]bool{}
	for _, mm := range seqRe.FindAllStringSubmatch(s, -1) {
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
