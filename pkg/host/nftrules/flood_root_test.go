//go:build measure

package nftrules_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"spip/pkg/test/bench"
	"spip/pkg/test/netns"
)

// floodEnv selects the capture variants TestFlood runs (comma-separated names from floodCases,
// or "all"); SPIPFLOOD_RATE and SPIPFLOOD_SECONDS set the load. It is a measurement for
// BENCHMARKS.md, not a pass/fail test, built only with -tags measure; without the variable it runs all.
const floodEnv = "SPIPFLOOD"

var floodCases = []struct {
	name  string
	mode  string // capture.mode; "" loads the bench's plain redirect (no timeout policy)
	reset bool   // session.close_with_reset
}{
	{name: "redirect-stock", reset: true},
	{name: "redirect-stock-fin", reset: false},
	{name: "redirect-tuned", mode: "redirect", reset: true},
	{name: "redirect-tuned-fin", mode: "redirect", reset: false},
	{name: "tproxy", mode: "tproxy", reset: true},
}

// FloodResult is one variant's figures.
type FloodResult struct {
	Name          string       `json:"name"`
	Load          bench.Result `json:"load"`
	PeakConntrack int          `json:"peak_conntrack"`
	SSHProbes     int          `json:"ssh_probes"`
	SSHFailed     int          `json:"ssh_failed"`
	// States counts the conntrack entries by state (and [UNREPLIED]) halfway through the load.
	States map[string]int `json:"states_midway"`
}

// ctStates counts the entries of `conntrack -L` output by their state column.
func ctStates(out []byte) map[string]int {
	m := map[string]int{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || f[0] != "tcp" {
			continue
		}
		k := f[3]
		if strings.Contains(l, "[UNREPLIED]") {
			k += " UNREPLIED"
		}
		m[k]++
	}
	return m
}

// TestFlood offers one client address's connections at a steady rate through each capture
// variant, with spip serve behind it, and reports lost records, rewritten source ports, the
// sensor namespace's peak conntrack count, and whether a port-22 listener stayed reachable.
func TestFlood(t *testing.T) {
	// A measurement, built only with -tags measure so that make test never skips it.
	sel := os.Getenv(floodEnv)
	if sel == "" {
		sel = "all"
	}
	netns.Require(t, "nft", "ip", "conntrack", "taskset")
	rate := envInt("SPIPFLOOD_RATE", 4000)
	secs := envInt("SPIPFLOOD_SECONDS", 180)
	dir := t.TempDir()
	bin, err := bench.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, fc := range floodCases {
		if sel != "all" && !strings.Contains(","+sel+",", ","+fc.name+",") {
			continue
		}
		t.Run(fc.name, func(t *testing.T) {
			p := netns.NewPair(t, "flood")
			serveBanner(t, p.Sensor, "[::]:22", "real-22")
			cfg := filepath.Join(dir, fc.name+".toml")
			mode := fc.mode
			if mode == "" {
				mode = "redirect"
			}
			body := bench.CaptureConfig(mode, fmt.Sprintf("close_with_reset = %v\n", fc.reset))
			if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			sys := bench.System{Name: fc.name, Args: func(bin bench.Binaries, _, jsonPath string) []string {
				return []string{bin.Spip, "serve", "--config", cfg, "--json", jsonPath, "--journald", "off"}
			}}
			proc, err := bench.Start(sys, bin, p.Sensor, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer proc.Stop()
			if fc.mode == "" {
				rules := filepath.Join(dir, "stock.nft")
				if err := os.WriteFile(rules, []byte(bench.Ruleset("s0", bench.Port)), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := netns.Exec(p.Sensor, "nft", "-f", rules); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
			} else if err := bench.LoadCapture(bin.Spip, p.Sensor, cfg); err != nil {
				t.Fatal(err)
			}

			res := FloodResult{Name: fc.name}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // SSH probe and conntrack sampling, once a second
				defer wg.Done()
				ssh := netip.AddrPortFrom(netns.SensorV4, 22)
				half := time.Now().Add(time.Duration(secs) * time.Second / 2)
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Second):
					}
					res.SSHProbes++
					if got := banner(t, p.Client, ssh); got != "real-22" {
						res.SSHFailed++
					}
					if out, err := netns.Exec(p.Sensor, "cat", "/proc/sys/net/netfilter/nf_conntrack_count"); err == nil {
						if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > res.PeakConntrack {
							res.PeakConntrack = n
						}
					}
					if res.States == nil && time.Now().After(half) {
						out, _ := netns.Exec(p.Sensor, "conntrack", "-L")
						res.States = ctStates(out)
					}
				}
			}()
			res.Load, err = bench.Load(bin, p.Client, p.Sensor, proc,
				"-v6", "", "-rate", strconv.Itoa(rate), "-duration", fmt.Sprintf("%ds", secs), "-wait", "60s")
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			out, _ := json.Marshal(res)
			t.Logf("FLOOD %s", out)
		})
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
