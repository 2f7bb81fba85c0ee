package stats

import (
	"bytes"
	"compress/gzip"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"spip/pkg/record"
	"spip/pkg/test/netns"
)

// TestTopKBound: on a skewed stream far larger than its counters, every reported count is at
// least the true count and at most its stated error above it, and every value left out
// occurred at most Min() times.
func TestTopKBound(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(rnd, 1.1, 1, 50000)
	tk := NewTopK(100)
	truth := map[string]uint64{}
	for range 200000 {
		k := strconv.FormatUint(z.Uint64(), 10)
		truth[k]++
		tk.Add([]byte(k), 1)
	}
	if tk.Exact() {
		t.Fatal("100 counters for thousands of values claim to be exact")
	}
	listed := map[string]bool{}
	for _, it := range tk.Top(100) {
		listed[it.Key] = true
		if it.Count < truth[it.Key] || it.Count-it.Err > truth[it.Key] {
			t.Errorf("%s: counted %d ± %d, true %d", it.Key, it.Count, it.Err, truth[it.Key])
		}
	}
	for k, n := range truth {
		if !listed[k] && n > tk.Min() {
			t.Errorf("%s occurred %d times, more than the bound %d, and is not listed", k, n, tk.Min())
		}
	}
	if bound := tk.Total() / 100; tk.Min() > bound {
		t.Errorf("Min %d above total/counters %d", tk.Min(), bound)
	}
	// The heaviest values are found, in order.
	top := tk.Top(3)
	for i, want := range []string{"0", "1", "2"} {
		if top[i].Key != want {
			t.Errorf("top %d = %s, want %s", i, top[i].Key, want)
		}
	}
}

func TestTopKExactUnderBudget(t *testing.T) {
	tk := NewTopK(10)
	for i := range 10 {
		for range i + 1 {
			tk.Add([]byte{byte(i)}, 1)
		}
	}
	if !tk.Exact() || tk.Min() != 0 {
		t.Fatal("10 values in 10 counters are not exact")
	}
	for i, it := range tk.Top(10) {
		if it.Count != uint64(10-i) || it.Err != 0 {
			t.Errorf("row %d: %+v", i, it)
		}
	}
}

// TestDistinct: exact up to the budget, then within 4 standard errors of the truth.
func TestDistinct(t *testing.T) {
	d := NewDistinct(1000)
	for i := range uint64(1000) {
		d.Add(mix64(i))
		d.Add(mix64(i))
	}
	if !d.Exact() || d.Count() != 1000 {
		t.Fatalf("1000 values: %d exact=%v", d.Count(), d.Exact())
	}
	for _, n := range []uint64{5000, 50000, 500000} {
		d := NewDistinct(1000)
		for i := range n {
			d.Add(hash2(i, 7))
		}
		rel := math.Abs(float64(d.Count())-float64(n)) / float64(n)
		if d.Exact() || rel > 4*HLLStdError {
			t.Errorf("%d values: estimated %d (%.2f%% off, exact=%v)", n, d.Count(), rel*100, d.Exact())
		}
	}
}

func TestTimeline(t *testing.T) {
	var tl timeline
	tl.add(1000, 1)
	tl.add(1000+3600*24*30, 1) // a month later: widens
	tl.add(500, 2)             // before the start: widens leftwards
	w, start, counts := tl.series(0, 1000+3600*24*30, 60)
	var sum uint64
	for _, c := range counts {
		sum += c
	}
	if sum != 4 || len(counts) > 60 || start > 500 || w < 3600 {
		t.Errorf("interval %d start %d counts %v (sum %d)", w, start, counts, sum)
	}
}

func TestParseJSONLine(t *testing.T) {
	cases := []struct {
		line string
		ok   bool
		ua   string
	}{
		{`{"event":"connection","http_user_agent":"a\"b\\c\u001b\ud83d\ude00"}`, true, "a\"b\\c\x1b😀"},
		{`{"x":{"y":[1,"}"]},"http_user_agent":"ok"}`, true, "ok"},
		{` { "http_user_agent" : "sp" , "n" : 1 } `, true, "sp"},
		{`{"http_user_agent":"\ud800"}`, true, "\uFFFD"},
		{`{}`, true, ""},
		{`{"http_user_agent":"cut`, false, ""},
		{`{"a":1,}`, false, ""},
		{`["a"]`, false, ""},
		{`{"a":1} x`, false, ""},
		{`{"http_user_agent":"\x"}`, false, ""},
		{``, false, ""},
	}
	for _, c := range cases {
		var r raw
		arena := make([]byte, 0, len(c.line))
		err := parseJSONLine([]byte(c.line), &r, &arena)
		if (err == nil) != c.ok || string(r[sHTTPUserAgent]) != c.ua {
			t.Errorf("%s: err %v ua %q, want ok=%v %q", c.line, err, r[sHTTPUserAgent], c.ok, c.ua)
		}
	}
}

func FuzzParseJSONLine(f *testing.F) {
	for _, g := range generate(genSpec{seed: 9, n: 20, span: 1e9, hostile: true, events: true}) {
		f.Add(jsonLines([]genRec{g}))
	}
	f.Add([]byte(`{"a":"\ud83d\ude00\u0000","b":[{"c":"]"}]}`))
	for _, g := range generate(genSpec{seed: 10, n: 5, span: 1e9, hostile: true, events: true}) {
		f.Add(record.NewEncoder(g.sensor).AppendECS(nil, &g.r))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var r raw
		arena := make([]byte, 0, len(line))
		_ = parseJSONLine(bytes.TrimRight(line, "\n"), &r, &arena)
		if cap(arena) != len(line) {
			t.Fatalf("the arena moved: cap %d, line %d", cap(arena), len(line))
		}
		a := NewAggregator(Options{})
		a.Add(&r)
	})
}

// TestReadCompressed: a gzip rotation reads like the plain file; damaged lines are counted.
func TestReadCompressed(t *testing.T) {
	recs := generate(genSpec{seed: 11, n: 200, span: 1e12})
	plain := append(jsonLines(recs), "not json\n{\"event\":\"connection\"}\n"...)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(plain)
	w.Close()
	for name, data := range map[string][]byte{"plain": plain, "gzip": gz.Bytes()} {
		r, closeFn, err := decompress(context.Background(), bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		a := NewAggregator(Options{})
		if err := a.ReadJSON(context.Background(), r, nil); err != nil {
			t.Fatal(err)
		}
		closeFn()
		rep := a.Report("x")
		if rep.Totals.Connections != 200 || rep.Losses.Unreadable != 2 {
			t.Errorf("%s: %d connections, %d unreadable; want 200, 2", name, rep.Totals.Connections, rep.Losses.Unreadable)
		}
	}
}

func TestSlotIndex(t *testing.T) {
	for _, c := range []struct {
		x     *slotIndex
		names map[string]slot
	}{{jsonIndex, jsonSlots}, {journalIndex, journalSlots}} {
		for name, s := range c.names {
			if got, ok := c.x.lookup([]byte(name)); !ok || got != s {
				t.Errorf("%s: slot %d %v, want %d", name, got, ok, s)
			}
			for _, other := range []string{name + "x", "x" + name, name[:len(name)-1], ""} {
				if _, known := c.names[other]; !known {
					if _, ok := c.x.lookup([]byte(other)); ok {
						t.Errorf("%q found", other)
					}
				}
			}
		}
	}
}

// TestOrderIndependent: records in any order give the same report (exact tables, timeline).
func TestOrderIndependent(t *testing.T) {
	recs := generate(genSpec{seed: 31, n: 2000, span: 3 * 3600 * 1e9, events: true})
	shuffled := append([]genRec(nil), recs...)
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	var a, b bytes.Buffer
	WriteJSON(&a, reportOf(t, recs, Options{}, false))
	WriteJSON(&b, reportOf(t, shuffled, Options{}, false))
	if a.String() != b.String() {
		t.Errorf("shuffled records give another report:\n%s", diff(a.String(), b.String()))
	}
}

// TestReadCompressedTools: the rotations logrotate makes with compresscmd set to bzip2, xz or
// zstd (the tools themselves compress) read like the plain file.
func TestReadCompressedTools(t *testing.T) {
	netns.RequireTools(t, "bzip2", "xz", "zstd")
	recs := generate(genSpec{seed: 12, n: 100, span: 1e12})
	plain := jsonLines(recs)
	for _, tool := range []string{"bzip2", "xz", "zstd"} {
		cmd := exec.Command(tool, "-c")
		cmd.Stdin = bytes.NewReader(plain)
		packed, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		path := filepath.Join(t.TempDir(), "records.json.1."+tool)
		if err := os.WriteFile(path, packed, 0o644); err != nil {
			t.Fatal(err)
		}
		rep, err := Collect(context.Background(), Input{Files: []string{path}}, Options{}, nil)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if rep.Totals.Connections != 100 || rep.Losses.Unreadable != 0 {
			t.Errorf("%s: %d connections, %d unreadable", tool, rep.Totals.Connections, rep.Losses.Unreadable)
		}
	}
}

// TestECSMirror: a mirror written with output.json_format = "ecs" gives the same report as
// spip's own format.
func TestECSMirror(t *testing.T) {
	recs := generate(genSpec{seed: 13, n: 1500, span: 3600e9, hostile: true, events: true, big: 100})
	var ecs []byte
	for i := range recs {
		recs[i].extra = nil // the protocol fields come from the record itself in ECS
		ecs = record.NewEncoder(recs[i].sensor).AppendECS(ecs, &recs[i].r)
	}
	a := NewAggregator(Options{})
	if err := a.ReadJSON(context.Background(), bytes.NewReader(ecs), nil); err != nil {
		t.Fatal(err)
	}
	got := a.Report("test")
	want := reportOf(t, recs, Options{}, false)
	if got.Totals.Connections != 1500 || got.Losses.Unreadable != 0 {
		t.Fatalf("%d connections, %d unreadable", got.Totals.Connections, got.Losses.Unreadable)
	}
	// ECS's message is the one-line form, as journald's: reportDiff compares it so.
	if d := reportDiff(want, got); d != "" {
		t.Errorf("the ECS mirror's report differs:\n%s", d)
	}
}
