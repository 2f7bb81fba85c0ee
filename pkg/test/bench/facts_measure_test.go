//go:build measure

package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFacts is make bench's protocol-facts measurement: spip against the same spip built with
// -tags spipnofacts, both behind the redirect, both sent the same payload mix (MixFiles), a
// paced ladder walked rung by rung in turn, then SPIP_BENCH_FACTS_PAIRS (default 10) paired
// samples at 2,000 conns/s, the builds back to back in alternating order. It reports CPU per 10k
// connections of each build and each build's zero-loss rate, and rewrites the facts section of
// SPIP_BENCH_OUT.
func TestFacts(t *testing.T) {
	out := os.Getenv("SPIP_BENCH_OUT")
	if out == "" {
		t.Skip("set SPIP_BENCH_OUT to the BENCHMARKS.md to rewrite (make bench does)")
	}
	opts := DefaultOptions()
	if v := os.Getenv("SPIP_BENCH_REPS"); v != "" {
		opts.Reps, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("SPIP_BENCH_STEP"); v != "" {
		opts.Step, _ = time.ParseDuration(v)
	}
	if v := os.Getenv("SPIP_BENCH_RATES"); v != "" {
		opts.Rates = nil
		for _, f := range strings.Split(v, ",") {
			n, _ := strconv.Atoi(strings.TrimSpace(f))
			opts.Rates = append(opts.Rates, n)
		}
	}
	rep := &FactsReport{Started: time.Now(), Machine: machine(), Command: "sudo make bench"}
	for _, v := range []string{"SPIP_BENCH_REPS", "SPIP_BENCH_STEP", "SPIP_BENCH_RATES", "SPIP_BENCH_FACTS_PAIRS"} {
		if os.Getenv(v) != "" {
			rep.Command += " " + v + "=" + os.Getenv(v)
		}
	}
	load0 := loadavg()
	pairsNS, dir := setup(t, Spip.Name, SpipNoFacts.Name)
	pairs := 10
	if v := os.Getenv("SPIP_BENCH_FACTS_PAIRS"); v != "" {
		pairs, _ = strconv.Atoi(v)
	}
	rep.PairRate, rep.PairStep = 2000, 5*time.Second
	bin, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	noBin := bin
	if noBin.Spip, err = BuildNoFacts(dir); err != nil {
		t.Fatal(err)
	}
	mix := strings.Join(MixFiles(), ",")
	builds := map[string]Binaries{Spip.Name: bin, SpipNoFacts.Name: noBin}

	for r := 0; r < opts.Reps; r++ {
		systems := []System{SpipNoFacts, Spip}
		if r%2 == 1 {
			systems = []System{Spip, SpipNoFacts}
		}
		procs := map[string]*Proc{}
		for _, sys := range systems {
			p, err := Start(sys, builds[sys.Name], pairsNS[sys.Name].Sensor, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			procs[sys.Name] = p
		}
		ladders := map[string]*ladder{}
		for _, sys := range systems {
			ladders[sys.Name] = &ladder{rates: opts.Rates, res: opts.Resolution}
		}
		steps := map[string]map[int]Step{Spip.Name: {}, SpipNoFacts.Name: {}}
		var order []int
		for {
			busy := false
			for _, sys := range systems {
				l := ladders[sys.Name]
				rate, ok := l.next()
				if !ok {
					continue
				}
				busy = true
				run := func() Step {
					res, err := Load(builds[sys.Name], pairsNS[sys.Name].Client, pairsNS[sys.Name].Sensor, procs[sys.Name],
						"-rate", strconv.Itoa(rate), "-duration", opts.Step.String(), "-mix", mix,
						"-concurrency", strconv.Itoa(opts.Concurrency), "-tag", fmt.Sprintf("f%d%s%d", r, sys.Name, time.Now().UnixNano()))
					if err != nil {
						t.Fatalf("%s: %v", sys.Name, err)
					}
					return Step{Rate: rate, Result: res, OK: res.Clean() && res.OfferedRate >= 0.95*float64(rate)}
				}
				st := run()
				if !st.OK && l.retry(rate) {
					st = run()
				}
				l.report(rate, st.OK)
				if _, seen := steps[Spip.Name][rate]; !seen {
					if _, seen := steps[SpipNoFacts.Name][rate]; !seen {
						order = append(order, rate)
					}
				}
				steps[sys.Name][rate] = st
				t.Logf("rep %d %s: rate %d: offered %.0f/s, recorded %d of %d, lost %d, SYNs dropped %d, CPU %.2fs = %.3f s/10k, ok=%v",
					r+1, sys.Name, rate, st.OfferedRate, st.Recorded, st.Attempted, st.Lost, st.ListenDrops, st.CPU, st.CPUPer10k(), st.OK)
			}
			if !busy {
				break
			}
		}
		for _, rate := range order {
			w, okW := steps[Spip.Name][rate]
			n, okN := steps[SpipNoFacts.Name][rate]
			if okW && okN {
				rep.Rungs = append(rep.Rungs, FactsRung{Rep: r + 1, Rate: rate, With: w, No: n})
			}
		}
		rep.ZeroWith = append(rep.ZeroWith, ladders[Spip.Name].best)
		rep.ZeroNo = append(rep.ZeroNo, ladders[SpipNoFacts.Name].best)
		// Paired samples at one rate both builds keep up with: on a shared machine the ladder's
		// few rungs are too noisy to tell a few percent apart, many short pairs can.
		for i := 0; i < pairs; i++ {
			order := []System{SpipNoFacts, Spip}
			if i%2 == 1 {
				order = []System{Spip, SpipNoFacts}
			}
			var pair FactsPair
			for _, sys := range order {
				res, err := Load(builds[sys.Name], pairsNS[sys.Name].Client, pairsNS[sys.Name].Sensor, procs[sys.Name],
					"-rate", strconv.Itoa(rep.PairRate), "-duration", rep.PairStep.String(), "-mix", mix,
					"-concurrency", strconv.Itoa(opts.Concurrency), "-tag", fmt.Sprintf("p%d%d%s%d", r, i, sys.Name, time.Now().UnixNano()))
				if err != nil {
					t.Fatalf("%s: %v", sys.Name, err)
				}
				st := Step{Rate: rep.PairRate, Result: res, OK: res.Clean() && res.OfferedRate >= 0.95*float64(rep.PairRate)}
				if sys.Name == Spip.Name {
					pair.With = st
				} else {
					pair.No = st
				}
			}
			rep.Pairs = append(rep.Pairs, pair)
			t.Logf("rep %d pair %d: with facts %.3f s/10k (ok=%v), without %.3f s/10k (ok=%v)", r+1, i+1, pair.With.CPUPer10k(), pair.With.OK, pair.No.CPUPer10k(), pair.No.OK)
		}
		for _, p := range procs {
			p.Stop()
		}
	}
	rep.Load = load0 + " → " + loadavg()
	rep.Took = time.Since(rep.Started)
	t.Log("\n" + rep.Markdown())
	if err := rep.writeTo(out); err != nil {
		t.Fatal(err)
	}
}
