package stats

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden reports under testdata/")

type goldenCase struct {
	name string
	spec genSpec
	opt  Options
}

func goldenCases() []goldenCase {
	hour := time.Hour
	return []goldenCase{
		{"mixed", genSpec{seed: 1, n: 3000, span: hour, hostile: true, events: true, big: 500}, Options{}},
		{"mixed_window_port", genSpec{seed: 1, n: 3000, span: hour, hostile: true, events: true, big: 500},
			Options{Since: genStart.Add(10 * time.Minute), Until: genStart.Add(40 * time.Minute), Port: 80, Sensor: "edge-1", Top: 3}},
		{"approximate", genSpec{seed: 2, n: 5000, span: 6 * hour, events: true}, Options{Counters: 20, Distinct: 100, Top: 4}},
		{"ipv6_only", genSpec{seed: 3, n: 400, span: 10 * time.Minute, ipv6: true}, Options{}},
		{"single", genSpec{seed: 4, n: 1, span: time.Second}, Options{}},
		{"empty_window", genSpec{seed: 5, n: 100, span: hour, events: true},
			Options{Since: genStart.Add(-48 * hour), Until: genStart.Add(-24 * hour)}},
		{"empty", genSpec{seed: 6}, Options{}},
	}
}

func reportOf(t *testing.T, recs []genRec, opt Options, export bool) *Report {
	t.Helper()
	a := NewAggregator(opt)
	var err error
	if export {
		err = a.readExport(context.Background(), bytes.NewReader(exportStream(recs)), nil)
	} else {
		err = a.ReadJSON(context.Background(), bytes.NewReader(jsonLines(recs)), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return a.Report("test")
}

// TestGolden renders each generated set as the terminal report (plain UTF-8, ASCII, colour)
// and as JSON, compared with testdata/golden; -update rewrites them.
func TestGolden(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			recs := generate(c.spec)
			rep := reportOf(t, recs, c.opt, false)
			var js bytes.Buffer
			if err := WriteJSON(&js, rep); err != nil {
				t.Fatal(err)
			}
			checkJSON(t, js.Bytes())
			compare(t, c.name+".json", js.Bytes())

			styles := map[string]Style{"txt": {}, "ascii.txt": {ASCII: true}, "color.txt": {Color: true}}
			for ext, st := range styles {
				if ext != "txt" && c.name != "mixed" {
					continue
				}
				var out bytes.Buffer
				if err := Render(&out, rep, st); err != nil {
					t.Fatal(err)
				}
				checkTerminal(t, ext, out.Bytes(), st)
				compare(t, c.name+"."+ext, out.Bytes())
			}

			// The journal's export format gives the same report as the JSON mirror.
			if c.name != "empty" {
				// journald's MESSAGE is the sensor's one-line form of a warning: control
				// characters became spaces. Compare the rest.
				rep2 := reportOf(t, recs, c.opt, true)
				for _, r := range []*Report{rep, rep2} {
					for i := range r.Losses.Warnings {
						r.Losses.Warnings[i].Value = strings.Map(func(r rune) rune {
							if r < 0x20 {
								return ' '
							}
							return r
						}, r.Losses.Warnings[i].Value)
					}
				}
				js, js2 := &bytes.Buffer{}, &bytes.Buffer{}
				if err := WriteJSON(js, rep); err != nil {
					t.Fatal(err)
				}
				if err := WriteJSON(js2, rep2); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(js.Bytes(), js2.Bytes()) {
					t.Errorf("the export stream's report differs from the JSON mirror's:\n%s", diff(js.String(), js2.String()))
				}
			}
		})
	}
}

var sgr = regexp.MustCompile("\x1b\\[[0-9;]*m")

// checkTerminal: at most Width columns a line; no escape byte but spip's own colour codes, and
// none at all without colour; only ASCII in ASCII mode.
func checkTerminal(t *testing.T, name string, out []byte, st Style) {
	t.Helper()
	if !st.Color && bytes.IndexByte(out, 0x1b) >= 0 {
		t.Errorf("%s: an escape byte reached the plain report", name)
	}
	plain := sgr.ReplaceAll(out, nil)
	if bytes.IndexByte(plain, 0x1b) >= 0 {
		t.Errorf("%s: an escape byte other than spip's colours reached the report", name)
	}
	for i, line := range strings.Split(string(plain), "\n") {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("%s: line %d has %d columns: %q", name, i+1, n, line)
		}
		for _, r := range line {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 {
				t.Errorf("%s: line %d holds %U", name, i+1, r)
			}
			if st.ASCII && r >= 0x80 {
				t.Errorf("%s: line %d holds %U in ASCII mode", name, i+1, r)
			}
		}
	}
}

func checkJSON(t *testing.T, b []byte) {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("--json is not JSON: %v", err)
	}
	for i, c := range b {
		if c >= 0x80 || c < 0x20 && c != '\n' {
			t.Fatalf("--json holds byte %#x at %d", c, i)
		}
	}
}

func compare(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", name, diff(string(want), string(got)))
	}
}

// diff shows the first differing lines.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	n := 0
	for i := 0; i < max(len(w), len(g)) && n < 8; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + itoa(i+1) + "\n  want " + wl + "\n  got  " + gl + "\n")
			n++
		}
	}
	return b.String()
}

func itoa(i int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(i)) }

func fmtInt(i int) string { return string([]byte(num(uint64(i)))) }
