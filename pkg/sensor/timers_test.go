package sensor

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestTimerHeapRandom drives the heap with random pushes, removals and due changes and checks it
// against a plain list after every step: the earliest due is on top, every session knows its
// index, and draining yields the dues in order.
func TestTimerHeapRandom(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		var h timerHeap
		var ref []*session
		for step := 0; step < 2000; step++ {
			// Few distinct dues, so equal keys are common.
			due := func() time.Duration { return time.Duration(rng.IntN(50)) * time.Millisecond }
			switch op := rng.IntN(10); {
			case op < 4 || len(ref) == 0:
				s := &session{due: due(), heapIdx: -1}
				h.push(s)
				ref = append(ref, s)
			case op < 6:
				i := rng.IntN(len(ref))
				h.remove(ref[i])
				if ref[i].heapIdx != -1 {
					t.Fatalf("seed %d step %d: removed session has index %d", seed, step, ref[i].heapIdx)
				}
				h.remove(ref[i]) // twice is harmless, as finish may race a timeout
				ref = slices.Delete(ref, i, i+1)
			case op < 9:
				s := ref[rng.IntN(len(ref))]
				s.due = due()
				h.fix(s)
			default:
				// Expire the top, as the loop does.
				top := h.s[0]
				h.remove(top)
				ref = slices.DeleteFunc(ref, func(s *session) bool { return s == top })
			}
			checkHeap(t, &h, ref, seed, step)
		}
		var got []time.Duration
		for h.Len() > 0 {
			got = append(got, h.s[0].due)
			h.remove(h.s[0])
		}
		var want []time.Duration
		for _, s := range ref {
			want = append(want, s.due)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d: drained %v, want %v", seed, got, want)
		}
		if _, ok := h.next(); ok {
			t.Fatalf("seed %d: next() on an empty heap", seed)
		}
	}
}

func checkHeap(t *testing.T, h *timerHeap, ref []*session, seed uint64, step int) {
	t.Helper()
	if h.Len() != len(ref) {
		t.Fatalf("seed %d step %d: heap holds %d, want %d", seed, step, h.Len(), len(ref))
	}
	for i, s := range h.s {
		if s.heapIdx != i {
			t.Fatalf("seed %d step %d: session at %d says %d", seed, step, i, s.heapIdx)
		}
		if i > 0 && h.s[(i-1)/2].due > s.due {
			t.Fatalf("seed %d step %d: parent of %d is due later", seed, step, i)
		}
	}
	for _, s := range ref {
		if s.heapIdx < 0 || s.heapIdx >= h.Len() || h.s[s.heapIdx] != s {
			t.Fatalf("seed %d step %d: a live session is lost from the heap", seed, step)
		}
	}
	if len(ref) == 0 {
		return
	}
	least := ref[0].due
	for _, s := range ref {
		least = min(least, s.due)
	}
	if next, ok := h.next(); !ok || next != least {
		t.Fatalf("seed %d step %d: next() = %v, %v; want %v", seed, step, next, ok, least)
	}
}
