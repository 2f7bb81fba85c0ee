package budget

import (
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"spip/pkg/config"
	"spip/pkg/monitor"
	"spip/pkg/sensor"
)

var (
	_ sensor.Admitter    = (*Budget)(nil)
	_ monitor.Suppressor = (*Budget)(nil)
)

func rl(rate float64, burst, v4, v6, max int) config.RateLimit {
	return config.RateLimit{PerSourceRate: rate, PerSourceBurst: burst, IPv4Prefix: v4, IPv6Prefix: v6, MaxSources: max}
}

func TestOffByDefault(t *testing.T) {
	if b := New(config.Default().RateLimit); b != nil {
		t.Fatalf("the default configuration turned the budget on: %+v", b)
	}
}

func TestAdmit(t *testing.T) {
	type step struct {
		src  string
		at   time.Duration
		want bool
	}
	cases := []struct {
		name  string
		cfg   config.RateLimit
		steps []step
	}{
		{"burst then refused", rl(1, 3, 32, 64, 10), []step{
			{"192.0.2.1", 0, true}, {"192.0.2.1", 0, true}, {"192.0.2.1", 0, true}, {"192.0.2.1", 0, false},
			{"192.0.2.2", 0, true}, // another source has its own bucket
		}},
		{"refills at the rate", rl(2, 1, 32, 64, 10), []step{
			{"192.0.2.1", 0, true}, {"192.0.2.1", 100 * time.Millisecond, false},
			{"192.0.2.1", 500 * time.Millisecond, true}, {"192.0.2.1", 600 * time.Millisecond, false},
		}},
		{"refill is capped by the burst", rl(100, 2, 32, 64, 10), []step{
			{"192.0.2.1", 0, true}, {"192.0.2.1", time.Hour, true}, {"192.0.2.1", time.Hour, true},
			{"192.0.2.1", time.Hour, false},
		}},
		{"ipv4 prefix shares a bucket", rl(1, 2, 24, 64, 10), []step{
			{"192.0.2.1", 0, true}, {"192.0.2.200", 0, true}, {"192.0.2.9", 0, false}, {"192.0.3.1", 0, true},
		}},
		{"v4-mapped is the v4 source", rl(1, 1, 32, 64, 10), []step{
			{"192.0.2.1", 0, true}, {"::ffff:192.0.2.1", 0, false},
		}},
		{"ipv6 prefix shares a bucket", rl(1, 2, 32, 64, 10), []step{
			{"2001:db8::1", 0, true}, {"2001:db8::ffff:1", 0, true}, {"2001:db8::2", 0, false},
			{"2001:db8:0:1::1", 0, true},
		}},
		// The wall clock stepping back (NTP, an operator) does not reach the budget: it reads
		// the loop's monotonic clock, which only goes forward, and refills by it.
		{"refills by the monotonic clock", rl(1, 1, 32, 64, 10), []step{
			{"192.0.2.1", time.Second, true}, {"192.0.2.1", time.Second, false}, {"192.0.2.1", 2 * time.Second, true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := New(c.cfg)
			for i, s := range c.steps {
				if got := b.Admit(netip.MustParseAddr(s.src), s.at); got != s.want {
					t.Fatalf("step %d (%s at %v): Admit = %v, want %v", i, s.src, s.at, got, s.want)
				}
			}
		})
	}
}

func TestTakeTop(t *testing.T) {
	b := New(rl(1, 1, 24, 48, 100))
	now := 1700000000 * time.Second // a monotonic reading
	for i, n := range []int{5, 3, 7} {
		for j := 0; j <= n; j++ { // the first is admitted, n are suppressed
			b.Admit(netip.AddrFrom4([4]byte{198, 51, byte(i), byte(j)}), now)
		}
	}
	for j := 0; j <= 2; j++ {
		b.Admit(netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2:3::%d", j)), now)
	}
	b.Admit(netip.MustParseAddr("203.0.113.9"), now) // admitted: never listed
	want := []string{"198.51.2.0/24=7", "198.51.0.0/24=5", "other=5"}
	if got := b.TakeTop(2); !reflect.DeepEqual(got, want) {
		t.Errorf("TakeTop(2) = %q, want %q", got, want)
	}
	if got := b.TakeTop(10); got != nil {
		t.Errorf("TakeTop after TakeTop = %q, want nothing: counts reset per summary", got)
	}
	b.Admit(netip.MustParseAddr("2001:db8:1:2:3::9"), now)
	if got, want := b.TakeTop(10), []string{"2001:db8:1::/48=1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TakeTop = %q, want %q", got, want)
	}
}

// A scan from more sources than max_sources holds the table at max_sources, forgets the least
// recently seen first, and still accounts for what the forgotten sources had suppressed.
func TestBoundedSources(t *testing.T) {
	const max = 64
	b := New(rl(1, 1, 32, 64, max))
	now := 1700000000 * time.Second // a monotonic reading
	keep := netip.MustParseAddr("192.0.2.1")
	b.Admit(keep, now)
	var suppressed uint64
	for i := 0; i < 10*max; i++ {
		src := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		b.Admit(src, now)
		if !b.Admit(src, now) {
			suppressed++
		}
		if i%8 == 0 && b.Admit(keep, now) { // keep is seen often: never forgotten, never refilled
			t.Fatalf("the often-seen source was forgotten (its bucket refilled) after %d sources", i)
		}
		if n := b.Sources(); n > max {
			t.Fatalf("%d sources tracked, max_sources is %d", n, max)
		}
	}
	var total uint64
	for _, s := range b.TakeTop(1 << 20) {
		total += count(t, s)
	}
	// The often-seen source was refused every time after its first connection.
	if want := suppressed + 10*max/8; total != want {
		t.Errorf("the summary accounts for %d suppressed connections, want %d", total, want)
	}
}

func count(t *testing.T, s string) uint64 {
	t.Helper()
	var n uint64
	if _, err := fmt.Sscanf(s[lastEq(s)+1:], "%d", &n); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// Admit runs once per accepted connection on the event loop: it must not allocate, neither for
// a known source nor for a new one replacing a forgotten one.
func TestAdmitAllocationFree(t *testing.T) {
	b := New(rl(10, 5, 32, 64, 1024))
	now := 1700000000 * time.Second // a monotonic reading
	for i := 0; i < 2048; i++ {
		b.Admit(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), now)
	}
	known := netip.MustParseAddr("10.1.7.255")
	if a := testing.AllocsPerRun(1000, func() { b.Admit(known, now) }); a != 0 {
		t.Errorf("Admit of a known source: %v allocations", a)
	}
	i := 0
	v6 := netip.MustParseAddr("2001:db8::1").As16()
	if a := testing.AllocsPerRun(1000, func() {
		i++
		v6[7], v6[6] = byte(i), byte(i>>8)
		b.Admit(netip.AddrFrom16(v6), now)
	}); a != 0 {
		t.Errorf("Admit of a new source evicting an old one: %v allocations", a)
	}
}

// TakeTop runs on the monitor's goroutine while the loop admits: run under -race.
func TestConcurrentTakeTop(t *testing.T) {
	b := New(rl(1, 1, 32, 64, 128))
	now := 1700000000 * time.Second // a monotonic reading
	var wg sync.WaitGroup
	var taken uint64
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for _, s := range b.TakeTop(1000) {
				var n uint64
				_, _ = fmt.Sscanf(s[lastEq(s)+1:], "%d", &n)
				taken += n
			}
			select {
			case <-done:
				return
			default:
			}
		}
	}()
	var refused uint64
	for i := 0; i < 20000; i++ {
		if !b.Admit(netip.AddrFrom4([4]byte{10, 2, 0, byte(i % 200)}), now) {
			refused++
		}
	}
	close(done)
	wg.Wait()
	for _, s := range b.TakeTop(1000) {
		var n uint64
		_, _ = fmt.Sscanf(s[lastEq(s)+1:], "%d", &n)
		taken += n
	}
	if taken != refused {
		t.Errorf("summaries reported %d suppressed connections, Admit refused %d", taken, refused)
	}
}

func lastEq(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '=' {
			return i
		}
	}
	return -1
}

func BenchmarkAdmit(b *testing.B) {
	bud := New(rl(10, 5, 32, 64, 65536))
	now := 1700000000 * time.Second // a monotonic reading
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		bud.Admit(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
}
