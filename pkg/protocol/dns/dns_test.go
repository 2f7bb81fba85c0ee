package dns

import (
	"encoding/hex"
	"strings"
	"testing"
)

// digQuery is what `dig @host example.com A` sent (dig 9.18: recursion desired, AD, an EDNS
// OPT record with a cookie), captured with nc -u -l.
const digQuery = "1a2501200001000000000001076578616d706c6503636f6d0000010001" +
	"00002904d000000000000c000a000882e89065aba53863"

func TestParse(t *testing.T) {
	dig, _ := hex.DecodeString(digQuery)
	for _, c := range []struct {
		name string
		p    []byte
		ok   bool
		want Query
	}{
		{"dig", dig, true, Query{Name: "example.com", Type: "A", Class: 1}},
		{"any", []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03isc\x03org\x00\x00\xff\x00\x01"), true, Query{Name: "isc.org", Type: "ANY", Class: 1}},
		{"root NS", []byte("\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01"), true, Query{Name: "", Type: "NS", Class: 1}},
		{"version.bind CH TXT", []byte("\x00\x06\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07version\x04bind\x00\x00\x10\x00\x03"), true, Query{Name: "version.bind", Type: "TXT", Class: 3}},
		{"unknown type", []byte("\x00\x06\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\xff\x00\x00\x01"), true, Query{Name: "a", Type: "TYPE65280", Class: 1}},
		{"response", []byte("\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x03isc\x03org\x00\x00\xff\x00\x01"), false, Query{}},
		{"answers in a query", []byte("\x12\x34\x01\x00\x00\x01\x00\x01\x00\x00\x00\x00\x03isc\x03org\x00\x00\xff\x00\x01"), false, Query{}},
		{"pointer", []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"), false, Query{}},
		{"cut name", []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07exam"), false, Query{}},
		{"no type", []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00"), false, Query{}},
		{"header only", []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"), false, Query{}},
		{"text", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false, Query{}},
		{"empty", nil, false, Query{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Parse(c.p)
			if ok != c.ok || got != c.want {
				t.Errorf("Parse = %+v, %v; want %+v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestNameBound(t *testing.T) {
	p := []byte("\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")
	for i := 0; i < 5; i++ {
		p = append(p, 63)
		p = append(p, strings.Repeat("a", 63)...)
	}
	p = append(p, 0, 0, 1, 0, 1)
	if _, ok := Parse(p); ok {
		t.Errorf("a name over %d bytes parsed", MaxName)
	}
}

func FuzzParse(f *testing.F) {
	dig, _ := hex.DecodeString(digQuery)
	f.Add(dig)
	f.Add([]byte("\x00\x06\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07version\x04bind\x00\x00\x10\x00\x03"))
	f.Fuzz(func(t *testing.T, p []byte) {
		q, ok := Parse(p)
		if !ok {
			return
		}
		if len(q.Name) > MaxName || q.Type == "" {
			t.Errorf("Parse(%x) = %+v", p, q)
		}
	})
}
