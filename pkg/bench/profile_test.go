package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"spip/pkg/nettest"
)

// TestProfile records a perf profile (kernel and Go frames) of each sensor while it serves a
// burst, for BENCHMARKS.md's "where the time goes". It runs only when SPIP_PROFILE_DIR names
// where to put spip.perf and ceiling.perf; read them with `perf report -i FILE --no-children`.
func TestProfile(t *testing.T) {
	out := os.Getenv("SPIP_PROFILE_DIR")
	if out == "" {
		t.Skip("set SPIP_PROFILE_DIR to record perf profiles")
	}
	nettest.Require(t, "nft", "conntrack", "taskset", "ss", "perf")
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
		pair := nettest.NewPair(t, "prof-"+sys.Name)
		if out, err := nettest.Exec(pair.Sensor, "nft", "-f", writeFile(t, dir, sys.Name+".nft", Ruleset("s0", Port))); err != nil {
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
		res, err := Load(bin, pair.Client, pair.Sensor, p, "-count", strconv.Itoa(count), "-concurrency", "2048")
		_ = perf.Process.Signal(os.Interrupt)
		_ = perf.Wait()
		p.Stop()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d recorded of %d, %.0f/s, CPU %.3f s/10k", sys.Name, res.Recorded, res.Attempted, res.OfferedRate, res.CPUPer10k())
	}
}
