package communityid

import (
	"encoding/json"
	"net/netip"
	"os"
	"testing"
)

// TestVectors checks the specification's own baseline values (testdata/vectors.json says where
// each comes from).
func TestVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Vectors []struct {
			Proto        uint8
			Saddr, Daddr string
			Sport, Dport uint16
			Seed         uint16
			CommunityID  string `json:"communityid"`
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Vectors) < 10 {
		t.Fatalf("%d vectors", len(doc.Vectors))
	}
	for _, v := range doc.Vectors {
		src := netip.AddrPortFrom(netip.MustParseAddr(v.Saddr), v.Sport)
		dst := netip.AddrPortFrom(netip.MustParseAddr(v.Daddr), v.Dport)
		if got := Hash(v.Seed, v.Proto, src, dst); got != v.CommunityID {
			t.Errorf("%v -> %v proto %d seed %d: %s, want %s", src, dst, v.Proto, v.Seed, got, v.CommunityID)
		}
	}
}

func TestMappedAndInvalid(t *testing.T) {
	want := "1:wCb3OG7yAFWelaUydu0D+125CLM="
	src := netip.MustParseAddrPort("[::ffff:1.2.3.4]:1122")
	dst := netip.MustParseAddrPort("5.6.7.8:3344")
	if got := Hash(0, TCP, src, dst); got != want {
		t.Errorf("v4-mapped source: %s, want %s (the 4-byte form)", got, want)
	}
	if got := Hash(0, TCP, src, netip.AddrPort{}); got != "" {
		t.Errorf("no destination: %q", got)
	}
	if got := Hash(0, TCP, netip.MustParseAddrPort("[2001:db8::1]:1"), dst); got != "" {
		t.Errorf("mixed families: %q", got)
	}
	// Same address both ends: the port orders them.
	a, b := netip.MustParseAddrPort("10.0.0.1:2000"), netip.MustParseAddrPort("10.0.0.1:1000")
	if Hash(0, TCP, a, b) != Hash(0, TCP, b, a) {
		t.Error("not symmetric when only ports differ")
	}
}

func BenchmarkHash(b *testing.B) {
	src := netip.MustParseAddrPort("203.0.113.7:40000")
	dst := netip.MustParseAddrPort("198.51.100.2:443")
	for b.Loop() {
		Hash(0, TCP, src, dst)
	}
}

// FuzzHash: the hash names the flow, not its direction, and v4-mapped addresses hash as IPv4.
func FuzzHash(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4}, []byte{5, 6, 7, 8}, uint16(1122), uint16(3344), uint16(0))
	f.Add(make([]byte, 16), make([]byte, 16), uint16(0), uint16(0), uint16(1))
	f.Fuzz(func(t *testing.T, a, b []byte, pa, pb, seed uint16) {
		aa, ok1 := netip.AddrFromSlice(a)
		ab, ok2 := netip.AddrFromSlice(b)
		if !ok1 || !ok2 {
			return
		}
		src, dst := netip.AddrPortFrom(aa, pa), netip.AddrPortFrom(ab, pb)
		h := Hash(seed, TCP, src, dst)
		if h != Hash(seed, TCP, dst, src) {
			t.Fatal("direction changes the hash")
		}
		if h != Hash(seed, TCP, netip.AddrPortFrom(aa.Unmap(), pa), netip.AddrPortFrom(ab.Unmap(), pb)) {
			t.Fatal("v4-mapped form changes the hash")
		}
		if h != "" && len(h) != 30 {
			t.Fatalf("%q", h)
		}
	})
}
