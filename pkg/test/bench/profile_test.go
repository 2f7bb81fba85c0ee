//go:build measure

package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"spip/pkg/test/netns"
)

// TestProfile records a perf profile (kernel and Go frames) of each sensor while it serves a
// burst, for BENCHMARKS.md's "where the time goes". It runs only when SPIP_PROFILE_DIR names
// where to put spip.perf and ceiling.perf; read them with `perf report -i FILE --no-children`.
// SPIP_PROFILE_COUNT sets the connections (100k), SPIP_PROFILE_RATE paces them (default: a burst).
func TestProfile(t *testing.T) {
	out := os.Getenv("SPIP_PROFILE_DIR")
	if out == "" {
		t.Skip("set SPIP_PROFILE_DIR to record perf profiles")
	}
	netns.Require(t, "nft", "conntrack", "taskset", "ss", "perf")
	count := 100000
	if v := os.Getenv("SPIP_PROFILE_COUNT"); v != "" {
		count, _ = strconv.Atoi(v)
	}
	dir := t.TempDir()
	bin, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sys := range []System{Spip, Ceiling} {
		pair := netns.NewPair(t, "prof-"+sys.Name)
		if out, err := netns.Exec(pair.Sensor, "nft", "-f", writeFile(t, dir, sys.Name+".nft", Ruleset("s0", Port))); err != nil {
			t.Fatalf("nft: %v %s", err, out)
		}
		p, err := Start(sys, bin, pair.Sensor, dir)
		if err != nil {
			t.Fatal(err)
		}
		perf := exec.Command("perf", "record", "-q", "-F", "4999", "-g", "-p", strconv.Itoa(p.Pid()), "-o", filepath.Join(out, sys.Name+".perf"))
		perf.Stderr = os.Stderr
		if err := perf.Start(); err != nil {
			t.Fatal(err)
		}
		args := []string{"-count", strconv.Itoa(count), "-concurrency", "2048"}
		if rate := os.Getenv("SPIP_PROFILE_RATE"); rate != "" {
			args = append(args, "-rate", rate) // paced: count connections at this rate
		}
		res, err := Load(bin, pair.Client, pair.Sensor, p, args...)
		_ = perf.Process.Signal(os.Interrupt)
		_ = perf.Wait()
		p.Stop()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d recorded of %d, %.0f/s, CPU %.3f s/10k", sys.Name, res.Recorded, res.Attempted, res.OfferedRate, res.CPUPer10k())
	}
}

// TestAB compares spip binaries (SPIP_AB="old,new" paths) on the same bursts, alternating, for
// the "what each optimisation bought" figures: CPU seconds per 10k connections of each.
// SPIP_AB_RATE paces the connections instead (30k of them).
func TestAB(t *testing.T) {
	list := os.Getenv("SPIP_AB")
	if list == "" {
		t.Skip("set SPIP_AB to two or more spip binaries")
	}
	netns.Require(t, "nft", "conntrack", "taskset", "ss")
	rounds, count := 5, 30000
	if v := os.Getenv("SPIP_AB_ROUNDS"); v != "" {
		rounds, _ = strconv.Atoi(v)
	}
	dir := t.TempDir()
	bin, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair := netns.NewPair(t, "ab")
	if out, err := netns.Exec(pair.Sensor, "nft", "-f", writeFile(t, dir, "ab.nft", Ruleset("s0", Port))); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	paths := strings.Split(list, ",")
	cpu := map[string][]float64{}
	for r := 0; r < rounds; r++ {
		for _, path := range paths {
			b := bin
			b.Spip = path
			p, err := Start(Spip, b, pair.Sensor, dir)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"-count", strconv.Itoa(count), "-concurrency", "2048"}
			if rate := os.Getenv("SPIP_AB_RATE"); rate != "" {
				args = append(args, "-rate", rate)
			}
			res, err := Load(b, pair.Client, pair.Sensor, p, args...)
			p.Stop()
			if err != nil {
				t.Fatal(err)
			}
			if !res.Clean() {
				t.Errorf("%s: not clean: %+v", path, res)
			}
			cpu[path] = append(cpu[path], res.CPUPer10k())
		}
	}
	for _, path := range paths {
		s := summarize(cpu[path])
		t.Logf("%s: CPU s per 10k: %s over %d bursts of %d", path, s.format("%.3f"), rounds, count)
	}
}
