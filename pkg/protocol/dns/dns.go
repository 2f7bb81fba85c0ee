// Package dns reads the question of a DNS query as it arrives in one UDP datagram.
package dns

import (
	"encoding/binary"
	"strconv"
)

// MaxName is the longest name in presentation form that Parse returns (RFC 1035 §2.3.4 allows
// 255 octets on the wire, 253 characters written out).
const MaxName = 255

// Query is the first question of a DNS query.
type Query struct {
	Name   string // labels joined with ".", no trailing dot ("" for the root); bytes as sent
	Type   string // "A", "ANY", …, or "TYPE65280" (RFC 3597) for a type without a name here
	Class  uint16
	Opcode uint8
}

// Parse reads p as a DNS query: a header with the QR bit clear, at least one question, no
// answers, and a first question whose name (uncompressed: nothing precedes it to point to)
// and type and class are all there. ok is false for anything else, so a match is a real query.
func Parse(p []byte) (q Query, ok bool) {
	if len(p) < 12 {
		return q, false
	}
	flags := binary.BigEndian.Uint16(p[2:4])
	qd, an := binary.BigEndian.Uint16(p[4:6]), binary.BigEndian.Uint16(p[6:8])
	ns, ar := binary.BigEndian.Uint16(p[8:10]), binary.BigEndian.Uint16(p[10:12])
	opcode := uint8(flags>>11) & 0xf
	// QR clear; opcodes QUERY, IQUERY, STATUS, NOTIFY, UPDATE; Z bit clear.
	if flags&0x8000 != 0 || opcode > 5 || opcode == 3 || flags&0x0040 != 0 {
		return q, false
	}
	if qd == 0 || qd > 4 || an != 0 || ns > 16 || ar > 16 {
		return q, false
	}
	name := make([]byte, 0, 64)
	i := 12
	for {
		if i >= len(p) {
			return q, false
		}
		l := int(p[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(p) || len(name)+l+1 > MaxName {
			return q, false // a pointer, a reserved label type, cut short, or too long
		}
		if len(name) > 0 {
			name = append(name, '.')
		}
		name = append(name, p[i:i+l]...)
		i += l
	}
	if i+4 > len(p) {
		return q, false
	}
	q.Name = string(name)
	q.Type = TypeName(binary.BigEndian.Uint16(p[i : i+2]))
	q.Class = binary.BigEndian.Uint16(p[i+2 : i+4])
	q.Opcode = opcode
	return q, true
}

var typeNames = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
	28: "AAAA", 33: "SRV", 35: "NAPTR", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY",
	50: "NSEC3", 52: "TLSA", 64: "SVCB", 65: "HTTPS", 99: "SPF", 252: "AXFR", 251: "IXFR",
	255: "ANY", 256: "URI", 257: "CAA",
}

// TypeName is the mnemonic of a query type, or TYPEn for one without a name here.
func TypeName(t uint16) string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return "TYPE" + strconv.Itoa(int(t))
}
