package sensor

import "time"

// timerHeap orders sessions by when they are due. Each session knows its index, so a
// session that received data moves in O(log n) and a finished one leaves in O(log n).
type timerHeap struct{ s []*session }

func (h *timerHeap) Len() int { return len(h.s) }

func (h *timerHeap) next() (time.Duration, bool) {
	if len(h.s) == 0 {
		return 0, false
	}
	return h.s[0].due, true
}

func (h *timerHeap) push(x *session) {
	x.heapIdx = len(h.s)
	h.s = append(h.s, x)
	h.up(x.heapIdx)
}

func (h *timerHeap) remove(x *session) {
	i := x.heapIdx
	if i < 0 || i >= len(h.s) || h.s[i] != x {
		return
	}
	last := len(h.s) - 1
	if i != last {
		h.swap(i, last)
	}
	h.s[last] = nil
	h.s = h.s[:last]
	x.heapIdx = -1
	if i != last {
		h.fixAt(i)
	}
}

// fix restores the order after x.due changed.
func (h *timerHeap) fix(x *session) { h.fixAt(x.heapIdx) }

func (h *timerHeap) fixAt(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *timerHeap) swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	h.s[i].heapIdx = i
	h.s[j].heapIdx = j
}

func (h *timerHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if h.s[i].due <= h.s[j].due {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *timerHeap) down(i0 int) bool {
	i, n := i0, len(h.s)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.s[r].due < h.s[l].due {
			j = r
		}
		if h.s[j].due >= h.s[i].due {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
