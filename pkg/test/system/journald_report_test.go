//go:build measure

package system

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"spip/pkg/test/bench"
)

// The part of BENCHMARKS.md that `make bench-journald` rewrites, and its plot.
const (
	jbBegin    = "<!-- bench-journald:begin -->"
	jbEnd      = "<!-- bench-journald:end -->"
	jbPlotName = "BENCHMARKS-journald.png"
)

// spliceSection replaces what lies between begin and end in doc (markers included) with
// section, or appends section when the markers are not there.
func spliceSection(doc, begin, end, section string) string {
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		return strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	return doc[:i] + strings.TrimSuffix(section, "\n") + doc[j+len(end):]
}

// jbIngest is the journald ingest experiment: spip's entries written straight to journald's
// socket as fast as it takes them.
type jbIngest struct {
	Entries, Recorded int
	Seconds           float64 // from the first send until the last entry was in the journal
	JCPU              float64 // journald's CPU seconds in that time
	WriterCPU         float64
	Load              string
}

// Rate is the entries per second journald took in.
func (i jbIngest) Rate() float64 { return float64(i.Recorded) / max(i.Seconds, 1e-9) }

func jbIngestRun(t *testing.T, m *Machine, bin bench.Binaries, n int, journald string) *jbIngest {
	tag := strconv.FormatUint(uint64(time.Now().UnixNano()), 36)
	since := time.Now().Add(-time.Second).Unix()
	jcpu0 := procCPU(t, m, journald)
	start := time.Now()
	out, err := m.RunTimeout(10*time.Minute, "taskset", "-c", bench.SensorCPU, "/usr/local/bin/"+filepath.Base(bin.Loadgen),
		"-journal", strconv.Itoa(n), "-tag", tag)
	if err != nil {
		t.Fatalf("spip-loadgen -journal: %v %s", err, out)
	}
	var res bench.Result
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &res); err != nil {
		t.Fatalf("spip-loadgen output %q: %v", out, err)
	}
	got, last, lastAt := 0, -1, time.Now()
	for time.Since(lastAt) < 5*time.Second && time.Since(start) < 10*time.Minute {
		got = journalCount(t, m, "spip", since, tag)
		if got != last {
			last, lastAt = got, time.Now()
		}
		if got >= n {
			break
		}
		time.Sleep(time.Second)
	}
	// The count is taken every second: the last change is within a second of the true end.
	ing := &jbIngest{Entries: n, Recorded: got, Seconds: lastAt.Sub(start).Seconds(), JCPU: procCPU(t, m, journald) - jcpu0,
		WriterCPU: res.GenCPU, Load: bench.LoadAvg()}
	t.Logf("ingest: %d of %d entries in the journal after %.1f s (%.0f/s; the writer sent for %.1f s); journald CPU %.1f s (%.0f%% of a core); loadavg %s",
		got, n, ing.Seconds, ing.Rate(), res.SendSeconds, ing.JCPU, 100*ing.JCPU/ing.Seconds, ing.Load)
	return ing
}

// jbReport turns the steps into BENCHMARKS.md's journald section.
type jbReport struct {
	Results            []jbResult
	Systems            []string
	Rates              []int
	Reps               int
	Step               time.Duration
	Ingest             *jbIngest
	Started            time.Time
	Took               time.Duration
	LoadStart, LoadEnd string
}

func (r *jbReport) find(sys string, rep, rate int) (jbResult, bool) {
	for _, x := range r.Results {
		if x.Sys == sys && x.Rep == rep && x.Rate == rate {
			return x, true
		}
	}
	return jbResult{}, false
}

func (r *jbReport) has(sys string) bool { return slices.Contains(r.Systems, sys) }

// ratios are f(a)/f(b) per repetition at rate (or at every rate when rate is 0).
func (r *jbReport) ratios(a, b string, rate int, f func(jbResult) float64) []float64 {
	var v []float64
	for _, x := range r.Results {
		if x.Sys != a || rate != 0 && x.Rate != rate {
			continue
		}
		if y, ok := r.find(b, x.Rep, x.Rate); ok && f(y) > 0 {
			v = append(v, f(x)/f(y))
		}
	}
	return v
}

func (r *jbReport) values(sys string, rate int, f func(jbResult) float64) []float64 {
	var v []float64
	for _, x := range r.Results {
		if x.Sys == sys && (rate == 0 || x.Rate == rate) {
			v = append(v, f(x))
		}
	}
	return v
}

func sensorCPU(x jbResult) float64 { return x.CPU }
func pairCPU(x jbResult) float64   { return x.CPU + x.JCPU }
func jdCPU(x jbResult) float64     { return x.JCPU }

// zeroLoss is the highest rate at which sys lost nothing and was offered at least 97% of the
// rate in every repetition (0: none).
func (r *jbReport) zeroLoss(sys string) int {
	best := 0
	for _, rate := range r.Rates {
		ok, n := true, 0
		for _, x := range r.Results {
			if x.Sys == sys && x.Rate == rate {
				n++
				if x.Lost() != 0 || x.Offered < 0.97*float64(rate) {
					ok = false
				}
			}
		}
		if ok && n > 0 && rate > best {
			best = rate
		}
	}
	return best
}

func (r *jbReport) markdown() string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	cmd := "sudo make bench-journald"
	var env []string
	for _, k := range []string{"SPIP_JOURNALD_REPS", "SPIP_JOURNALD_RATES", "SPIP_JOURNALD_STEP", "SPIP_JOURNALD_SYSTEMS", "SPIP_JOURNALD_INGEST"} {
		if v := os.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	if len(env) > 0 {
		cmd += " " + strings.Join(env, " ")
	}
	w("%s\n", jbBegin)
	w("### Generated: the journald path against the naive sensors\n\n")
	w("_Generated by `make bench-journald` on %s in %s; do not edit between the markers._\n\n", r.Started.UTC().Format("2006-01-02 15:04 UTC"), r.Took.Round(time.Second))
	w("- Machine: %s; %s.\n", bench.MachineLine(), runtime.Version())
	w("- Load average at start / end: %s / %s. **A shared machine**: other test runs used both cores while this ran, so absolute figures move; read the ratios, taken within one repetition at one rate. On a quiet machine rerun the command below.\n", r.LoadStart, r.LoadEnd)
	w("- Command: `%s` (%d repetitions, %s steps at %s conns/s, systems in rotating order).\n", cmd, r.Reps, r.Step, joinInts(r.Rates))
	w("- Booted bookworm container (systemd-nspawn), stock journald, not pinned; sensor pinned to CPU 0 by `systemd-run -p CPUAffinity=0`; spip-loadgen on CPU 1 in the client namespace; the bench's nftables redirect. Payloads: the protocol mix of `make bench`'s facts section (real clients' TLS ClientHellos, an HTTP request, SSH banners, random bytes) before each connection's marker, so spip's records carry their protocol fields. CPU: utime+stime of the sensor and of systemd-journald from `/proc`, from the start of sending until every record was written, per 10,000 connections.\n")
	w("- Systems: `spip` (`spip serve --journald on`, journald sink only); `native` (`spip-ceiling -native`: a goroutine per connection, one synchronous native-protocol datagram per connection, 11 fields, payload as bytes and hex, `fmt.Sprintf` MESSAGE); `send` (`spip-ceiling -journald`: go-systemd `journal.Send` of a map, under a mutex); `spip-json`, `ceiling-json`: the JSON path of spip and of the naive sensor (to a file)")
	if r.has("spip-lean") {
		w("; `spip-lean`: spip with `record.journald_omit = [\"payload_hex\", \"time\"]`")
	}
	for _, sys := range r.Systems {
		if name, ok := strings.CutPrefix(sys, "spip@"); ok {
			w("; `%s`: the spip binary `%s` (an A/B against the tree's `spip`)", sys, name)
		}
	}
	w(".\n\n")

	w("CPU seconds per 10k connections, median (min–max) over the repetitions:\n\n")
	w("| rate | system | offered conns/s | sensor | journald | sensor + journald | lost | SYNs dropped |\n|---|---|---|---|---|---|---|---|\n")
	for _, rate := range r.Rates {
		for _, sys := range r.Systems {
			xs := r.values(sys, rate, sensorCPU)
			if len(xs) == 0 {
				continue
			}
			lost, drops := 0, uint64(0)
			for _, x := range r.Results {
				if x.Sys == sys && x.Rate == rate {
					lost += x.Lost()
					drops += x.SynDrops
				}
			}
			jd := bench.Median(r.values(sys, rate, jdCPU), "%.3f")
			pair := bench.Median(r.values(sys, rate, pairCPU), "%.3f")
			if strings.HasSuffix(sys, "-json") {
				jd, pair = "–", "–"
			}
			w("| %d | %s | %s | %s | %s | %s | %d | %d |\n", rate, sys, bench.Median(r.values(sys, rate, func(x jbResult) float64 { return x.Offered }), "%.0f"),
				bench.Median(xs, "%.3f"), jd, pair, lost, drops)
		}
	}

	type cmp struct {
		label, a, b string
		f           func(jbResult) float64
		target      float64
	}
	cmps := []cmp{
		{"sensor: spip ÷ native", "spip", "native", sensorCPU, 0.75},
		{"sensor + journald: spip ÷ native", "spip", "native", pairCPU, 0.85},
		{"sensor: spip ÷ send (journal.Send)", "spip", "send", sensorCPU, 0},
		{"sensor + journald: spip ÷ send", "spip", "send", pairCPU, 0},
		{"journald alone: spip's ÷ native's", "spip", "native", jdCPU, 0},
		{"JSON path, sensor: spip-json ÷ ceiling-json", "spip-json", "ceiling-json", sensorCPU, 0.60},
	}
	for _, sys := range r.Systems {
		if sys == "spip-lean" || strings.HasPrefix(sys, "spip@") {
			cmps = append(cmps, cmp{"sensor: " + sys + " ÷ native", sys, "native", sensorCPU, 0.75},
				cmp{"sensor + journald: " + sys + " ÷ native", sys, "native", pairCPU, 0.85},
				cmp{"sensor: " + sys + " ÷ spip", sys, "spip", sensorCPU, 0},
				cmp{"journald alone: " + sys + " ÷ spip", sys, "spip", jdCPU, 0})
		}
	}
	w("\nRatios, each taken within one repetition at one rate, then the median (min–max):\n\n")
	w("| ratio |")
	for _, rate := range r.Rates {
		w(" %d |", rate)
	}
	w(" all rates | target |\n|---|")
	for range r.Rates {
		w("---|")
	}
	w("---|---|\n")
	for _, c := range cmps {
		if !r.has(c.a) || !r.has(c.b) {
			continue
		}
		w("| %s |", c.label)
		for _, rate := range r.Rates {
			w(" %s |", bench.Median(r.ratios(c.a, c.b, rate, c.f), "%.2f"))
		}
		all := r.ratios(c.a, c.b, 0, c.f)
		target := ""
		if c.target > 0 {
			verdict := "met"
			if bench.MedianOf(all) > c.target {
				verdict = "**not met**"
			}
			target = fmt.Sprintf("≤ %.2f: %s", c.target, verdict)
		}
		w(" %s | %s |\n", bench.Median(all, "%.2f"), target)
	}

	w("\nLoss, per system over all its steps: records lost; the highest offered rate (conns/s, as the generator managed it) in a step that lost nothing; the same with no SYN dropped either; the highest rate asked at which every repetition lost nothing and was offered ≥ 97%% of it (0: none).\n\n")
	w("| system | lost | highest offered, nothing lost | and no SYN dropped | zero-loss rung |\n|---|---|---|---|---|\n")
	for _, sys := range r.Systems {
		lost := 0
		var best, clean float64
		for _, x := range r.Results {
			if x.Sys != sys {
				continue
			}
			lost += x.Lost()
			if x.Lost() == 0 {
				best = max(best, x.Offered)
				if x.SynDrops == 0 {
					clean = max(clean, x.Offered)
				}
			}
		}
		w("| %s | %d | %.0f | %.0f | %d |\n", sys, lost, best, clean, r.zeroLoss(sys))
	}
	if i := r.Ingest; i != nil {
		w("\njournald's ingest limit for spip's entries: %d of spip's connection entries written straight to journald's socket by `spip-loadgen -journal` (pinned to CPU 0, blocking when the socket is full, so none is lost) were all in the journal after %.1f s: **%.0f entries/s**, journald using %.0f%% of a core (%.1f s CPU; loadavg at the end %s). %d of %d recorded.\n",
			i.Entries, i.Seconds, i.Rate(), 100*i.JCPU/max(i.Seconds, 1e-9), i.JCPU, i.Load, i.Recorded, i.Entries)
	}
	w("\n%s\n", jbEnd)
	return b.String()
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// plot draws each system's sensor CPU and sensor + journald CPU per 10k against the rate.
func (r *jbReport) plot(path string) error {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		return fmt.Errorf("gnuplot is not installed (apt-get install gnuplot-nox): %w", err)
	}
	dir, err := os.MkdirTemp("", "spip-jplot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var plots []string
	for i, sys := range r.Systems {
		var d bytes.Buffer
		for _, rate := range r.Rates {
			s, p := r.values(sys, rate, sensorCPU), r.values(sys, rate, pairCPU)
			if len(s) > 0 {
				fmt.Fprintf(&d, "%d %.4f %.4f\n", rate, bench.MedianOf(s), bench.MedianOf(p))
			}
		}
		f := filepath.Join(dir, fmt.Sprintf("%d.dat", i))
		if err := os.WriteFile(f, d.Bytes(), 0o644); err != nil {
			return err
		}
		plots = append(plots, fmt.Sprintf("'%s' using 1:2 with linespoints lw 2 lc %d title '%s sensor'", f, i+1, sys))
		if !strings.HasSuffix(sys, "-json") {
			plots = append(plots, fmt.Sprintf("'%s' using 1:3 with linespoints dt 2 lc %d title '%s + journald'", f, i+1, sys))
		}
	}
	script := fmt.Sprintf(`set terminal pngcairo size 900,560 font ",11" noenhanced
set output '%s'
set title 'CPU per 10k connections (medians over the repetitions)'
set xlabel 'connections/s asked'
set ylabel 'CPU seconds per 10k connections'
set key outside right
set grid
set yrange [0:*]
plot %s
`, path, strings.Join(plots, ", "))
	cmd := exec.Command("gnuplot")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %w: %s", err, out)
	}
	return nil
}
