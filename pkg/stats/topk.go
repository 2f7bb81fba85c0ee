package stats

import (
	"cmp"
	"slices"
)

// TopK counts keys in bounded memory with the Space-Saving algorithm (Metwally, Agrawal and
// El Abbadi, 2005). It holds at most Cap counters. While it has seen no more distinct keys than
// that, every count is exact. After that a new key takes over the smallest counter and
// inherits its count as its possible error, so each reported count is at most Err too high,
// and any key not in the table occurred at most Min() times; both are at most total/Cap.
type TopK struct {
	Cap     int
	index   map[string]int32
	entries []tkEntry
	heap    []int32 // entry indices, a min-heap by count
	total   uint64
	evicted uint64
}

type tkEntry struct {
	key    string
	count  uint64
	err    uint64
	pos    int32 // the entry's place in heap
	sample []byte
	aux    uint64
}

// NewTopK returns a TopK with c counters.
func NewTopK(c int) *TopK {
	return &TopK{Cap: c, index: make(map[string]int32, min(c, 1024))}
}

// Add counts key n times and returns the index of its counter and whether the counter was
// (re)assigned to key by this call, so that a caller may attach a sample.
func (t *TopK) Add(key []byte, n uint64) (int, bool) {
	t.total += n
	if i, ok := t.index[string(key)]; ok {
		t.entries[i].count += n
		t.down(int(t.entries[i].pos))
		return int(i), false
	}
	if len(t.entries) < t.Cap {
		i := int32(len(t.entries))
		t.entries = append(t.entries, tkEntry{key: string(key), count: n, pos: int32(len(t.heap))})
		t.heap = append(t.heap, i)
		t.index[t.entries[i].key] = i
		t.up(len(t.heap) - 1)
		return int(i), true
	}
	t.evicted++
	i := t.heap[0]
	e := &t.entries[i]
	delete(t.index, e.key)
	e.key, e.err, e.count, e.sample, e.aux = string(key), e.count, e.count+n, nil, 0
	t.index[e.key] = i
	t.down(0)
	return int(i), true
}

// SetSample attaches a copy of b (at most max bytes) and a number to counter i.
func (t *TopK) SetSample(i int, b []byte, max int, aux uint64) {
	t.entries[i].sample = append([]byte(nil), b[:min(len(b), max)]...)
	t.entries[i].aux = aux
}

// Total is the sum of all counts added.
func (t *TopK) Total() uint64 { return t.total }

// Exact reports whether every count is exact: no counter was ever taken over.
func (t *TopK) Exact() bool { return t.evicted == 0 }

// Min is the smallest count held once the table is full: an upper bound of any count left out,
// and of any counter's error.
func (t *TopK) Min() uint64 {
	if t.evicted == 0 || len(t.heap) == 0 {
		return 0
	}
	return t.entries[t.heap[0]].count
}

// Distinct is the number of counters in use.
func (t *TopK) Distinct() int { return len(t.entries) }

// Item is one counted key.
type Item struct {
	Key    string
	Count  uint64
	Err    uint64
	Sample []byte
	Aux    uint64
}

// Top returns the n largest counts, largest first, ties by key.
func (t *TopK) Top(n int) []Item {
	items := make([]Item, len(t.entries))
	for i, e := range t.entries {
		items[i] = Item{e.key, e.count, e.err, e.sample, e.aux}
	}
	slices.SortFunc(items, func(a, b Item) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return items[:min(n, len(items))]
}

func (t *TopK) less(a, b int) bool {
	return t.entries[t.heap[a]].count < t.entries[t.heap[b]].count
}

func (t *TopK) swap(a, b int) {
	t.heap[a], t.heap[b] = t.heap[b], t.heap[a]
	t.entries[t.heap[a]].pos = int32(a)
	t.entries[t.heap[b]].pos = int32(b)
}

func (t *TopK) up(j int) {
	for j > 0 {
		p := (j - 1) / 2
		if !t.less(j, p) {
			return
		}
		t.swap(j, p)
		j = p
	}
}

func (t *TopK) down(j int) {
	n := len(t.heap)
	for {
		l := 2*j + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && t.less(r, l) {
			m = r
		}
		if !t.less(m, j) {
			return
		}
		t.swap(j, m)
		j = m
	}
}
