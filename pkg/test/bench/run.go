package bench

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/test/netns"
)

// Options shape a run. The zero value is not useful: start from DefaultOptions.
type Options struct {
	Reps        int
	Step        time.Duration // length of one ladder step
	Rates       []int         // the coarse ladder; it is refined to Resolution past the first failure
	Resolution  int
	Burst       int // connections in the as-fast-as-possible burst
	SilentRate  int // silent connections per second, for SilentStep
	SilentStep  time.Duration
	Idle        []int // idle connection counts
	Concurrency int   // connections in flight at most
}

// DefaultOptions keep a full run near 15 minutes on a 2-core machine.
func DefaultOptions() Options {
	return Options{
		Reps:        3,
		Step:        10 * time.Second,
		Rates:       []int{6000, 8000, 10000, 12000, 14000, 16000, 18000, 20000},
		Resolution:  500,
		Burst:       50000,
		SilentRate:  2000,
		SilentStep:  5 * time.Second,
		Idle:        []int{10000, 19000},
		Concurrency: 2048,
	}
}

// Step is one ladder rung of one system in one repetition.
type Step struct {
	Rate int
	Result
	OK bool // clean, and the offered rate kept up with the target
}

// Rep is what one repetition measured of one system.
type Rep struct {
	Steps    []Step
	ZeroLoss int // the highest rate with a clean step, 0 if none
	Burst    Result
	Silent   Result
	IdleRSS  map[int]float64 // bytes per idle connection, by count
	IdleConn map[int]int     // idle connections made, by count
}

// Report is a whole run.
type Report struct {
	Opts      Options
	Systems   []string
	Reps      map[string][]Rep
	Machine   string
	LoadStart string
	LoadEnd   string
	Started   time.Time
	Took      time.Duration
}

// Run measures spip and the ceiling as opts says. It needs root, nft, conntrack, taskset and ss.
func Run(t *testing.T, opts Options) *Report {
	netns.Require(t, "nft", "conntrack", "taskset", "ss")
	rep := &Report{Opts: opts, Systems: []string{Ceiling.Name, Spip.Name}, Reps: map[string][]Rep{}, Started: time.Now()}
	rep.Machine = machine()
	rep.LoadStart = loadavg()

	// Idle connections need descriptors on both ends; the children inherit this. Where the
	// hard limit cannot be raised (no CAP_SYS_RESOURCE) the idle counts must stay under it.
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Max < 1<<17 {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 1 << 17, Max: 1 << 17}); err != nil {
			t.Logf("raising RLIMIT_NOFILE past %d: %v", rl.Max, err)
		}
	}
	// nf_conntrack_max is writable only in the initial namespace; raise it for the run (it is
	// a cap, not an allocation) and put it back after.
	const ctMax = "/proc/sys/net/netfilter/nf_conntrack_max"
	if old, err := os.ReadFile(ctMax); err == nil {
		if err := os.WriteFile(ctMax, []byte("1048576"), 0o644); err == nil {
			t.Cleanup(func() { _ = os.WriteFile(ctMax, old, 0o644) })
		}
	}

	dir := t.TempDir()
	bin, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	pairs := map[string]*netns.Pair{}
	for _, sys := range []System{Ceiling, Spip} {
		p := netns.NewPair(t, "bench-"+sys.Name)
		pairs[sys.Name] = p
		if out, err := netns.Exec(p.Sensor, "nft", "-f", writeFile(t, dir, sys.Name+".nft", Ruleset("s0", Port))); err != nil {
			t.Fatalf("nft: %v %s", err, out)
		}
		// The client reuses ports fast: the whole range, and TIME_WAIT reuse.
		if out, err := netns.Exec(p.Client, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000", "net.ipv4.tcp_tw_reuse=1"); err != nil {
			t.Fatalf("sysctl: %v %s", err, out)
		}
	}

	for r := 0; r < opts.Reps; r++ {
		systems := []System{Ceiling, Spip}
		if r%2 == 1 {
			systems = []System{Spip, Ceiling} // neither always goes first
		}
		reps := map[string]*Rep{}
		for _, sys := range systems {
			reps[sys.Name] = &Rep{IdleRSS: map[int]float64{}, IdleConn: map[int]int{}}
		}
		// Idle connections, each count on a fresh process: what a session costs, not the heap
		// a previous experiment left.
		for _, n := range opts.Idle {
			for _, sys := range systems {
				pair := pairs[sys.Name]
				p, err := Start(sys, bin, pair.Sensor, dir)
				if err != nil {
					t.Fatal(err)
				}
				per, got, err := Idle(bin, pair.Client, pair.Sensor, p, n)
				p.Stop()
				if err != nil {
					t.Fatalf("%s idle %d: %v", sys.Name, n, err)
				}
				reps[sys.Name].IdleRSS[n], reps[sys.Name].IdleConn[n] = per, got
				t.Logf("rep %d %s: %d idle connections (%d made): %.0f bytes each", r+1, sys.Name, n, got, per)
			}
		}

		procs := map[string]*Proc{}
		for _, sys := range systems {
			p, err := Start(sys, bin, pairs[sys.Name].Sensor, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			procs[sys.Name] = p
		}
		load := func(sys System, args ...string) Result {
			pair := pairs[sys.Name]
			args = append(args, "-concurrency", strconv.Itoa(opts.Concurrency), "-tag", fmt.Sprintf("r%d%s%d", r, sys.Name, time.Now().UnixNano()))
			res, err := Load(bin, pair.Client, pair.Sensor, procs[sys.Name], args...)
			if err != nil {
				t.Fatalf("%s: %v", sys.Name, err)
			}
			return res
		}

		// The ladder, interleaved rung by rung so both systems see the same noise.
		ladders := map[string]*ladder{}
		for _, sys := range systems {
			ladders[sys.Name] = &ladder{rates: opts.Rates, res: opts.Resolution}
		}
		for {
			busy := false
			for _, sys := range systems {
				l := ladders[sys.Name]
				rate, ok := l.next()
				if !ok {
					continue
				}
				busy = true
				res := load(sys, "-rate", strconv.Itoa(rate), "-duration", opts.Step.String())
				st := Step{Rate: rate, Result: res, OK: res.Clean() && res.OfferedRate >= 0.95*float64(rate)}
				if !st.OK && l.retry(rate) {
					// One more try before a rung counts as failed: the machine is shared, and a
					// burst of someone else's work must not end a ladder.
					t.Logf("rep %d %s: rate %d: offered %.0f/s, %d bad, %d SYNs dropped; trying again", r+1, sys.Name, rate, res.OfferedRate, res.Attempted-res.Recorded+res.Duplicated+res.WrongPort, res.ListenDrops)
					res = load(sys, "-rate", strconv.Itoa(rate), "-duration", opts.Step.String())
					st = Step{Rate: rate, Result: res, OK: res.Clean() && res.OfferedRate >= 0.95*float64(rate)}
				}
				l.report(rate, st.OK)
				reps[sys.Name].Steps = append(reps[sys.Name].Steps, st)
				t.Logf("rep %d %s: rate %d: offered %.0f/s, recorded %d of %d, lost %d, dup %d, wrong port %d, failed %d (%s), SYNs dropped %d, CPU %.2fs = %.3f s/10k, generator CPU %.0f%%, ok=%v",
					r+1, sys.Name, rate, res.OfferedRate, res.Recorded, res.Attempted, res.Lost, res.Duplicated, res.WrongPort, res.ConnectFailed, res.FirstError, res.ListenDrops, res.CPU, res.CPUPer10k(), 100*res.GenCPU/res.SendSeconds, st.OK)
			}
			if !busy {
				break
			}
		}
		for _, sys := range systems {
			reps[sys.Name].ZeroLoss = ladders[sys.Name].best
		}
		for _, sys := range systems {
			res := load(sys, "-count", strconv.Itoa(opts.Burst))
			reps[sys.Name].Burst = res
			t.Logf("rep %d %s: burst of %d: %.0f/s, recorded %d, lost %d, dup %d, wrong %d, failed %d, SYNs dropped %d, CPU %.3f s/10k",
				r+1, sys.Name, opts.Burst, res.OfferedRate, res.Recorded, res.Lost, res.Duplicated, res.WrongPort, res.ConnectFailed, res.ListenDrops, res.CPUPer10k())
		}
		for _, sys := range systems {
			res := load(sys, "-silent", "-rate", strconv.Itoa(opts.SilentRate), "-duration", opts.SilentStep.String())
			reps[sys.Name].Silent = res
			t.Logf("rep %d %s: silent: recorded %d of %d, lost %d, wrong port %d", r+1, sys.Name, res.Recorded, res.Attempted, res.Lost, res.WrongPort)
		}
		for _, sys := range systems {
			procs[sys.Name].Stop()
			rep.Reps[sys.Name] = append(rep.Reps[sys.Name], *reps[sys.Name])
		}
	}
	rep.LoadEnd = loadavg()
	rep.Took = time.Since(rep.Started)
	return rep
}

// ladder walks the coarse rates up until one fails, then bisects between the last good rate
// and the failure down to the resolution.
type ladder struct {
	rates   []int
	res     int
	i       int
	best    int
	failed  int // the lowest failing rate, 0 while none failed
	done    bool
	retried map[int]bool
}

// retry reports whether a failed rate gets its one second try.
func (l *ladder) retry(rate int) bool {
	if l.retried == nil {
		l.retried = map[int]bool{}
	}
	if l.retried[rate] {
		return false
	}
	l.retried[rate] = true
	return true
}

func (l *ladder) next() (int, bool) {
	if l.done {
		return 0, false
	}
	if l.failed == 0 {
		if l.i >= len(l.rates) {
			l.done = true
			return 0, false
		}
		return l.rates[l.i], true
	}
	if l.failed-l.best <= l.res {
		l.done = true
		return 0, false
	}
	mid := (l.best + l.failed) / 2
	return mid - mid%(l.res/2), true
}

func (l *ladder) report(rate int, ok bool) {
	if ok {
		l.best = max(l.best, rate)
		if l.failed == 0 {
			l.i++
		}
		return
	}
	if l.failed == 0 || rate < l.failed {
		l.failed = rate
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	var si unix.Sysinfo_t
	_ = unix.Sysinfo(&si)
	mem := float64(si.Totalram) * float64(si.Unit) / (1 << 30)
	return fmt.Sprintf("%d CPUs (%s), %.0f GiB RAM, Linux %s", numCPU(), model, math.Round(mem), strings.TrimSpace(string(kernel)))
}

func numCPU() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) == nil {
		return set.Count()
	}
	return 0
}

// MachineLine describes the machine for a report: CPUs, model, memory, kernel.
func MachineLine() string { return machine() }

// LoadAvg is the 1, 5 and 15 minute load averages.
func LoadAvg() string { return loadavg() }

// Median is the median of v and its range, formatted with f (e.g. "%.3f").
func Median(v []float64, f string) string { return summarize(v).format(f) }

// MedianOf is the median of v (0 for none).
func MedianOf(v []float64) float64 { return summarize(v).med }
