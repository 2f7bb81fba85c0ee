package ssdp

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		name string
		p    string
		ok   bool
		want Search
	}{
		{"all", "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n", true, Search{Target: "ssdp:all"}},
		{"lower case, no CR", "M-SEARCH * HTTP/1.1\nhost:1.2.3.4:1900\nst:upnp:rootdevice\nman:\"ssdp:discover\"\n\n", true, Search{Target: "upnp:rootdevice"}},
		{"no ST", "M-SEARCH * HTTP/1.1\r\nHOST: x\r\n\r\n", true, Search{}},
		{"ST after the headers", "M-SEARCH * HTTP/1.1\r\n\r\nST: nope\r\n", true, Search{}},
		{"cut", "M-SEARCH * HTTP/1.1\r\nST: " + strings.Repeat("x", 300), true, Search{Target: strings.Repeat("x", MaxTarget), Cut: true}},
		{"notify", "NOTIFY * HTTP/1.1\r\nNT: upnp:rootdevice\r\n\r\n", false, Search{}},
		{"http", "GET / HTTP/1.1\r\n\r\n", false, Search{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Parse([]byte(c.p))
			if ok != c.ok || got != c.want {
				t.Errorf("Parse = %+v, %v; want %+v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ssdp:all\r\n\r\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		if s, ok := Parse(p); ok && len(s.Target) > MaxTarget {
			t.Errorf("target of %d bytes", len(s.Target))
		}
	})
}
