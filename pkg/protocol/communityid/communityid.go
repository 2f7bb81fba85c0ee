// Package communityid computes Community ID v1 flow hashes (corelight/community-id-spec).
package communityid

import (
	"crypto/sha1"
	"encoding/base64"
	"net/netip"
)

// IP protocol numbers the hash covers.
const (
	TCP uint8 = 6
	UDP uint8 = 17
)

// Hash returns "1:" and the base64 of SHA-1 over the seed, the two endpoints ordered so the
// smaller address (then port) comes first, the protocol and a zero byte. IPv4 addresses, also
// v4-mapped ones, are hashed as their 4 bytes, as Zeek and Suricata do. Without both addresses,
// or with one of each family, there is no flow to name and Hash returns "".
func Hash(seed uint16, proto uint8, src, dst netip.AddrPort) string {
	a, b := src.Addr().Unmap(), dst.Addr().Unmap()
	if !a.IsValid() || !b.IsValid() || a.Is4() != b.Is4() {
		return ""
	}
	pa, pb := src.Port(), dst.Port()
	if c := a.Compare(b); c > 0 || c == 0 && pa > pb {
		a, b, pa, pb = b, a, pb, pa
	}
	var buf [2 + 16 + 16 + 2 + 4]byte
	m := buf[:0]
	m = append(m, byte(seed>>8), byte(seed))
	m = appendAddr(m, a)
	m = appendAddr(m, b)
	m = append(m, proto, 0, byte(pa>>8), byte(pa), byte(pb>>8), byte(pb))
	sum := sha1.Sum(m)
	out := make([]byte, 2, 2+base64.StdEncoding.EncodedLen(len(sum)))
	out[0], out[1] = '1', ':'
	return string(base64.StdEncoding.AppendEncode(out, sum[:]))
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}
