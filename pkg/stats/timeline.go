package stats

// intervals are the widths a timeline bucket may have, in seconds: each a multiple of the one
// before, so counts merge exactly when the timeline widens.
var intervals = []int64{1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 28 * 86400, 364 * 86400}

const timelineBuckets = 4096

// timeline counts events per interval in fixed memory: when an event falls outside the
// buckets' span, the interval widens until it fits.
type timeline struct {
	level  int // index into intervals
	start  int64
	counts []uint64
	lo, hi int64 // the earliest and latest time counted
	used   bool
}

func (tl *timeline) width() int64 { return intervals[tl.level] }

func (tl *timeline) add(t int64, n uint64) {
	if !tl.used {
		tl.counts = make([]uint64, timelineBuckets)
		tl.start = floorDiv(t, tl.width()) * tl.width()
		tl.lo, tl.hi, tl.used = t, t, true
	}
	tl.lo, tl.hi = min(tl.lo, t), max(tl.hi, t)
	if i := (t - tl.start) / tl.width(); t >= tl.start && i < timelineBuckets {
		tl.counts[i] += n
		return
	}
	// Re-align on the span counted so far, at the narrowest interval (never narrower than
	// now) whose buckets hold it all: the result depends on the span, not on the order.
	level := tl.level
	for level < len(intervals)-1 && (tl.hi-floorDiv(tl.lo, intervals[level])*intervals[level])/intervals[level] >= timelineBuckets {
		level++
	}
	w := intervals[level]
	start := floorDiv(tl.lo, w) * w
	counts := make([]uint64, timelineBuckets)
	for i, c := range tl.counts {
		if c != 0 {
			counts[min(max((tl.start+int64(i)*tl.width()-start)/w, 0), timelineBuckets-1)] += c
		}
	}
	tl.level, tl.start, tl.counts = level, start, counts
	counts[min(max((t-start)/w, 0), timelineBuckets-1)] += n
}

// series returns the counts from `from` to `to` (unix seconds) in at most cols buckets of one of
// the intervals, at least the timeline's own: the interval and the counts.
func (tl *timeline) series(from, to int64, cols int) (int64, int64, []uint64) {
	if to < from {
		to = from
	}
	level := tl.level
	for level < len(intervals)-1 && (to-floorDiv(from, intervals[level])*intervals[level])/intervals[level]+1 > int64(cols) {
		level++
	}
	w := intervals[level]
	start := floorDiv(from, w) * w
	n := (to-start)/w + 1
	out := make([]uint64, n)
	if tl.used {
		for i, c := range tl.counts {
			if c == 0 {
				continue
			}
			ts := tl.start + int64(i)*tl.width()
			if ts < start {
				continue
			}
			if j := (ts - start) / w; j < n {
				out[j] += c
			}
		}
	}
	return w, start, out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}
