package stats

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

const journalRemote = "/lib/systemd/systemd-journal-remote"

// TestDirectory writes a fleet's journal files as a journal-remote collector holds them (one
// file per sensor, made by systemd-journal-remote from export streams) and checks that
// `--directory` reports exactly what the same records give from the JSON mirror, also with
// --sensor and --port, whose journalctl matches must keep the summaries and warnings.
func TestDirectory(t *testing.T) {
	netns.RequireTools(t, "journalctl", journalRemote)
	recs := generate(genSpec{seed: 21, n: 1500, span: time.Hour, hostile: true, events: true, big: 100})
	dir := journalDir(t, recs)
	for _, opt := range []Options{
		{},
		{Sensor: "edge-1"},
		{Port: 80, Since: genStart.Add(5 * time.Minute), Until: genStart.Add(50 * time.Minute)},
	} {
		got, err := Collect(context.Background(), Input{Directory: dir}, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := reportOf(t, recs, opt, false)
		if got.Totals.Connections == 0 || len(got.Losses.Dropped) == 0 {
			t.Errorf("%+v: %d connections, %d drop lines", opt, got.Totals.Connections, len(got.Losses.Dropped))
		}
		if d := reportDiff(want, got); d != "" {
			t.Errorf("%+v: the directory's report differs from the mirror's:\n%s", opt, d)
		}
	}
	if _, err := Collect(context.Background(), Input{Directory: filepath.Join(dir, "missing")}, Options{}, nil); err == nil {
		t.Error("a missing directory is not an error")
	}
}

// journalDir writes recs as a collector holds them: one journal file per sensor, made by
// systemd-journal-remote from an export stream.
func journalDir(t *testing.T, recs []genRec) string {
	t.Helper()
	dir := t.TempDir()
	bySensor := map[string][]genRec{}
	for _, g := range recs {
		bySensor[g.sensor] = append(bySensor[g.sensor], g)
	}
	for sensor, rs := range bySensor {
		cmd := exec.Command(journalRemote, "-o", filepath.Join(dir, "remote-"+sensor+".journal"), "-")
		cmd.Stdin = bytes.NewReader(exportStream(rs))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("systemd-journal-remote: %v\n%s", err, out)
		}
	}
	return dir
}

// reportDiff compares two reports of the same records from different sources, apart from the
// source's name and how counting was done; journald's MESSAGE is the sensor's one-line form of
// a warning, so control characters compare as spaces.
func reportDiff(want, got *Report) string {
	for _, r := range []*Report{got, want} {
		r.Source, r.Method = "", Method{}
		for i := range r.Losses.Warnings {
			r.Losses.Warnings[i].Value = strings.Map(func(r rune) rune {
				if r < 0x20 {
					return ' '
				}
				return r
			}, r.Losses.Warnings[i].Value)
		}
	}
	var a, b bytes.Buffer
	WriteJSON(&a, want)
	WriteJSON(&b, got)
	if a.String() == b.String() {
		return ""
	}
	return diff(a.String(), b.String())
}
