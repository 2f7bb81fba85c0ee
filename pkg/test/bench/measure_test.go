//go:build measure

// The measurements: built only with -tags measure (make bench), so that make test, which must
// never skip a test, does not carry them.

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
		t.Skip("set SPIP_BENCH_OUT to the BENCHMARKS.md to rewrite (make bench does)")
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
