// Package budget is the optional per-source connection budget: a token bucket per source address or prefix.
package budget

import (
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"

	"spip/pkg/config"
)

// Budget admits connections per source (an address, or the prefix it falls in) at Rate per
// second beyond a burst of Burst, and counts what it refuses. It tracks at most MaxSources
// sources; the least recently seen is forgotten first, so a scan from many addresses costs a
// fixed amount of memory. Admit runs on the sensor's event loop; TakeTop runs on the monitor's
// goroutine, so a mutex guards the table (uncontended almost always: TakeTop runs once per
// summary interval).
type Budget struct {
	rate   float64 // tokens per nanosecond
	burst  float64
	bits4  int
	bits6  int
	mu     sync.Mutex
	index  map[netip.Addr]int32 // masked source → slot
	slots  []slot               // fixed at MaxSources: no allocation once full
	head   int32                // most recently seen, -1 when empty
	tail   int32                // least recently seen
	forgot uint64               // suppressed counts lost with evicted sources, since the last TakeTop
}

type slot struct {
	key        netip.Addr
	tokens     float64
	last       int64 // monotonic nanoseconds of the last refill
	suppressed uint64
	prev, next int32
}

// New returns the budget rc describes, or nil when it is off (per_source_rate = 0).
func New(rc config.RateLimit) *Budget {
	if rc.PerSourceRate <= 0 || rc.MaxSources < 1 {
		return nil
	}
	burst := float64(max(rc.PerSourceBurst, 1))
	return &Budget{
		rate:  rc.PerSourceRate / float64(time.Second),
		burst: burst,
		bits4: min(max(rc.IPv4Prefix, 0), 32),
		bits6: min(max(rc.IPv6Prefix, 0), 128),
		index: make(map[netip.Addr]int32, rc.MaxSources),
		slots: make([]slot, 0, rc.MaxSources),
		head:  -1,
		tail:  -1,
	}
}

// key is the source's address masked to the configured prefix.
func (b *Budget) key(src netip.Addr) netip.Addr {
	src = src.Unmap()
	bits := b.bits6
	if src.Is4() {
		bits = b.bits4
	}
	p, err := src.Prefix(bits)
	if err != nil {
		return src
	}
	return p.Addr()
}

// Admit reports whether a new connection from src is within its source's budget, and counts
// it when it is not. now is a monotonic clock reading (the event loop's time since it started):
// with the wall clock, a step back froze every refill until the clock caught up again.
func (b *Budget) Admit(src netip.Addr, now time.Duration) bool {
	k := b.key(src)
	t := int64(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	i, ok := b.index[k]
	if !ok {
		i = b.claim(k, t)
	} else {
		b.touch(i)
	}
	s := &b.slots[i]
	if dt := t - s.last; dt > 0 {
		s.tokens = min(b.burst, s.tokens+float64(dt)*b.rate)
		s.last = t
	}
	if s.tokens >= 1 {
		s.tokens--
		return true
	}
	s.suppressed++
	return false
}

// claim gives k a slot with a full bucket: a new slot while there is room, else the least
// recently seen source's.
func (b *Budget) claim(k netip.Addr, t int64) int32 {
	var i int32
	if len(b.slots) < cap(b.slots) {
		i = int32(len(b.slots))
		b.slots = append(b.slots, slot{prev: -1, next: -1})
	} else {
		i = b.tail
		old := &b.slots[i]
		b.forgot += old.suppressed
		delete(b.index, old.key)
		b.unlink(i)
	}
	b.slots[i] = slot{key: k, tokens: b.burst, last: t, prev: -1, next: -1}
	b.index[k] = i
	b.pushFront(i)
	return i
}

func (b *Budget) touch(i int32) {
	if b.head == i {
		return
	}
	b.unlink(i)
	b.pushFront(i)
}

func (b *Budget) unlink(i int32) {
	s := &b.slots[i]
	if s.prev >= 0 {
		b.slots[s.prev].next = s.next
	} else {
		b.head = s.next
	}
	if s.next >= 0 {
		b.slots[s.next].prev = s.prev
	} else {
		b.tail = s.prev
	}
	s.prev, s.next = -1, -1
}

func (b *Budget) pushFront(i int32) {
	s := &b.slots[i]
	s.prev, s.next = -1, b.head
	if b.head >= 0 {
		b.slots[b.head].prev = i
	}
	b.head = i
	if b.tail < 0 {
		b.tail = i
	}
}

// TakeTop returns up to n sources with the most suppressed connections since the last call,
// most first, formatted "addr/prefix=count", and resets every count. Counts of sources
// forgotten to make room are reported as "other=count", so the list adds up to what was
// suppressed.
func (b *Budget) TakeTop(n int) []string {
	type top struct {
		key   netip.Addr
		count uint64
	}
	var all []top
	b.mu.Lock()
	for i := range b.slots {
		s := &b.slots[i]
		if s.suppressed > 0 {
			all = append(all, top{s.key, s.suppressed})
			s.suppressed = 0
		}
	}
	forgot := b.forgot
	b.forgot = 0
	b.mu.Unlock()

	sort.Slice(all, func(i, j int) bool {
		if all[i].count != all[j].count {
			return all[i].count > all[j].count
		}
		return all[i].key.Less(all[j].key)
	})
	var out []string
	var rest uint64
	for i, t := range all {
		if i >= n {
			rest += t.count
			continue
		}
		bits := b.bits6
		if t.key.Is4() {
			bits = b.bits4
		}
		out = append(out, netip.PrefixFrom(t.key, bits).String()+"="+strconv.FormatUint(t.count, 10))
	}
	if rest += forgot; rest > 0 && n > 0 {
		out = append(out, "other="+strconv.FormatUint(rest, 10))
	}
	return out
}

// Sources is how many sources the budget tracks now.
func (b *Budget) Sources() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.slots)
}
