package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBench is `make bench`: it runs only when SPIP_BENCH_OUT names the BENCHMARKS.md to
// rewrite, because it takes about 15 minutes and measures rather than checks. SPIP_BENCH_REPS,
// SPIP_BENCH_STEP and SPIP_BENCH_RATES (comma-separated) shorten it for a trial.
func TestBench(t *testing.T) {
	out := os.Getenv("SPIP_BENCH_OUT")
	if out == "" {
		t.Skip("a benchmark, not a test: run `make bench` (sets SPIP_BENCH_OUT)")
	}
	opts := DefaultOptions()
	if v := os.Getenv("SPIP_BENCH_REPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("SPIP_BENCH_REPS: %v", err)
		}
		opts.Reps = n
	}
	if v := os.Getenv("SPIP_BENCH_STEP"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SPIP_BENCH_STEP: %v", err)
		}
		opts.Step = d
	}
	if v := os.Getenv("SPIP_BENCH_RATES"); v != "" {
		opts.Rates = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				t.Fatalf("SPIP_BENCH_RATES: %v", err)
			}
			opts.Rates = append(opts.Rates, n)
		}
	}
	rep := Run(t, opts)

	command := "sudo make bench"
	if os.Getenv("SPIP_BENCH_REPS")+os.Getenv("SPIP_BENCH_STEP")+os.Getenv("SPIP_BENCH_RATES") != "" {
		command = "sudo make bench SPIP_BENCH_REPS=" + os.Getenv("SPIP_BENCH_REPS") + " SPIP_BENCH_STEP=" + os.Getenv("SPIP_BENCH_STEP") + " SPIP_BENCH_RATES=" + os.Getenv("SPIP_BENCH_RATES")
	}
	if err := rep.Plot(filepath.Join(filepath.Dir(out), PlotName)); err != nil {
		t.Errorf("plot: %v", err)
	}
	doc, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	section := rep.Markdown(command)
	t.Log("\n" + section)
	if err := os.WriteFile(out, []byte(Splice(string(doc), section)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSplice(t *testing.T) {
	sec := BeginMarker + "\nnew\n" + EndMarker + "\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"empty", "", "# spip benchmarks\n\n" + sec},
		{"no markers", "# B\n\n## Hostile input\nkept\n", "# B\n\n## Hostile input\nkept\n\n" + sec},
		{"replace", "# B\n" + BeginMarker + "\nold\n" + EndMarker + "\n## Hostile input\nkept\n", "# B\n" + BeginMarker + "\nnew\n" + EndMarker + "\n## Hostile input\nkept\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Splice(tc.doc, sec); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLadder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int // steps at or below pass
		want  int
	}{
		{"all pass", 100000, 8000},
		{"first fails", 1000, 1000},
		{"between", 5300, 5000},
		{"bisects", 6900, 6500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &ladder{rates: []int{2000, 4000, 6000, 8000}, res: 500}
			for n := 0; n < 20; n++ {
				rate, ok := l.next()
				if !ok {
					break
				}
				l.report(rate, rate <= tc.limit)
			}
			if l.best != tc.want {
				t.Errorf("best %d, want %d", l.best, tc.want)
			}
		})
	}
}
