//go:build measure

package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// SPIP_AB_RATE paces the connections instead (30k of them, SPIP_AB_COUNT), SPIP_AB_ROUNDS sets
// the rounds (5), after one that warms up and is not counted. SPIP_AB_MODE chooses the capture: empty is make bench's own redirect ruleset;
// "redirect" or "tproxy" is the table `spip nft` (this tree's) renders for that mode, and in
// tproxy mode spip is passed a listener as spip.socket makes it (transparent, spip's mark).
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
	if v := os.Getenv("SPIP_AB_COUNT"); v != "" {
		count, _ = strconv.Atoi(v)
	}
	mode := os.Getenv("SPIP_AB_MODE")
	dir := t.TempDir()
	bin, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair := netns.NewPair(t, "ab")
	sys := Spip
	switch mode {
	case "":
		if out, err := netns.Exec(pair.Sensor, "nft", "-f", writeFile(t, dir, "ab.nft", Ruleset("s0", Port))); err != nil {
			t.Fatalf("nft: %v %s", err, out)
		}
	case "redirect", "tproxy":
		// Spip's own session settings, the capture's listen and capture keys.
		cfg := writeFile(t, dir, "ab.toml", CaptureConfig(mode, "first_byte_timeout = \"120s\"\n"))
		if err := LoadCapture(bin.Spip, pair.Sensor, cfg); err != nil {
			t.Fatal(err)
		}
		sys = System{Name: "spip-" + mode, Args: func(bin Binaries, _, jsonPath string) []string {
			return []string{bin.Spip, "serve", "--config", cfg, "--json", jsonPath, "--journald", "off"}
		}}
		if mode == "tproxy" {
			ln, err := TransparentListener(pair.Sensor)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			sys.Listener = ln
		}
	default:
		t.Fatalf("SPIP_AB_MODE %q: want empty, redirect or tproxy", mode)
	}
	t.Logf("load average at start: %s; capture %q", LoadAvg(), mode)
	paths := strings.Split(list, ",")
	cpu := map[string][]float64{}
	// Round 0 is not counted: the first runs in fresh namespaces were slower than any after.
	for r := -1; r < rounds; r++ {
		order := paths
		if r%2 != 0 {
			order = slices.Clone(paths) // neither always goes first
			slices.Reverse(order)
		}
		for _, path := range order {
			b := bin
			b.Spip = path
			p, err := Start(sys, b, pair.Sensor, dir)
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
			dropped := res.ListenDrops
			res.ListenDrops = 0
			if !res.Clean() {
				t.Errorf("%s: not clean: %+v", path, res)
			}
			if dropped > 0 {
				// Every connection was still made and recorded (the generator's TCP retried the
				// SYN): the CPU per connection stands, but the burst waited on the backlog.
				t.Logf("round %d %s: %d SYNs dropped for want of an accept", r+1, path, dropped)
			}
			t.Logf("round %d %s: %d recorded at %.0f/s, CPU %.3f s per 10k", r+1, path, res.Recorded, res.OfferedRate, res.CPUPer10k())
			if r >= 0 {
				cpu[path] = append(cpu[path], res.CPUPer10k())
			}
		}
	}
	for i, path := range paths {
		s := summarize(cpu[path])
		t.Logf("%s: CPU s per 10k: %s over %d rounds of %d connections", path, s.format("%.3f"), rounds, count)
		if i > 0 {
			// Round by round against the first binary: both saw the same minute of the machine.
			var ratio []float64
			for r := range cpu[path] {
				ratio = append(ratio, cpu[path][r]/cpu[paths[0]][r])
			}
			t.Logf("%s ÷ %s, round by round: %s", path, paths[0], summarize(ratio).format("%.3f"))
		}
	}
	t.Logf("load average at end: %s", LoadAvg())
}
