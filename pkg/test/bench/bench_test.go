package bench

import (
	"testing"
)

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
