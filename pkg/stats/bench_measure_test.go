//go:build measure

package stats

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestMeasureJSON measures records/s from a JSON mirror of typical records (payloads of 0-200
// bytes, one in 500 at the 4 KiB cap), read from a file as `spip stats --file` does. Not
// asserted: the figure goes into BENCHMARKS.md. SPIP_STATS_RECORDS sets the size (default 1e6).
//
//	go test -tags measure -run TestMeasureJSON -v ./pkg/stats
func TestMeasureJSON(t *testing.T) {
	n := envInt("SPIP_STATS_RECORDS", 1_000_000)
	path := filepath.Join(t.TempDir(), "records.json")
	data := jsonLines(generate(genSpec{seed: 42, n: n, span: 24 * time.Hour, events: true, big: 500}))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records, %.1f MiB, %.0f bytes/record, GOMAXPROCS %d", n, float64(len(data))/(1<<20), float64(len(data))/float64(n), runtime.GOMAXPROCS(0))
	for rep := range 3 {
		start := time.Now()
		rusage0 := cpuTime()
		rep0, err := Collect(context.Background(), Input{Files: []string{path}}, Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		t.Logf("run %d: %d connections in %.2fs = %.0f records/s (CPU %.2fs)", rep, rep0.Totals.Connections, el.Seconds(), float64(n)/el.Seconds(), cpuTime()-rusage0)
	}
	// The reference in the same run: the fastest a line can be touched (wc -l) and jq.
	for _, ref := range [][]string{{"wc", "-l", path}, {"sh", "-c", "jq -c '{s:.source_ip,p:.destination_port}' " + path + " | sort | uniq -c | wc -l"}} {
		if _, err := exec.LookPath(ref[0]); err != nil {
			continue
		}
		start := time.Now()
		if out, err := exec.Command(ref[0], ref[1:]...).CombinedOutput(); err != nil {
			t.Logf("%v: %v %s", ref, err, bytes.TrimSpace(out))
			continue
		}
		el := time.Since(start)
		t.Logf("reference %v: %.2fs = %.0f records/s", ref, el.Seconds(), float64(n)/el.Seconds())
	}
}

// TestMeasureJournal compares the journal path with journalctl alone: the same records in a
// journal file written by systemd-journal-remote, read by `spip stats --directory` and by
// `journalctl --directory -o export` with the same arguments into /dev/null.
//
//	go test -tags measure -run TestMeasureJournal -v ./pkg/stats
func TestMeasureJournal(t *testing.T) {
	n := envInt("SPIP_STATS_RECORDS", 300_000)
	dir := t.TempDir()
	cmd := exec.Command(journalRemote, "-o", filepath.Join(dir, "remote-bench.journal"), "-")
	cmd.Stdin = bytes.NewReader(exportStream(generate(genSpec{seed: 42, n: n, span: 24 * time.Hour, events: true, big: 500})))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-journal-remote: %v\n%s", err, out)
	}
	args := journalArgs(Input{Directory: dir}, Options{})
	for rep := range 3 {
		start, c0 := time.Now(), childCPU()
		jc := exec.Command("journalctl", args...)
		if out, err := jc.CombinedOutput(); err != nil {
			t.Fatalf("journalctl: %v %s", err, out)
		}
		jEl, jCPU := time.Since(start), childCPU()-c0

		start, c0, s0 := time.Now(), childCPU(), cpuTime()
		r, err := Collect(context.Background(), Input{Directory: dir}, Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sEl, sCPU, own := time.Since(start), childCPU()-c0, cpuTime()-s0
		t.Logf("run %d: journalctl alone %.2fs (CPU %.2fs) = %.0f records/s; spip stats %.2fs (journalctl CPU %.2fs + stats CPU %.2fs) = %.0f records/s, %d connections; spip/journalctl wall %.2f",
			rep, jEl.Seconds(), jCPU, float64(n)/jEl.Seconds(), sEl.Seconds(), sCPU, own, float64(n)/sEl.Seconds(), r.Totals.Connections, sEl.Seconds()/jEl.Seconds())
	}
}
