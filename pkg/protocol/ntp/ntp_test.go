package ntp

import (
	"bytes"
	"testing"
)

func TestParse(t *testing.T) {
	client := make([]byte, 48)
	client[0] = 0xe3 // LI 3, VN 4, mode 3: what ntpdate and nmap send
	sntp := make([]byte, 48)
	sntp[0] = 0x1b // VN 3, mode 3
	// ntpdc -c monlist: VN 2, mode 7, implementation 3, request MON_GETLIST_1 (42).
	monlist := append([]byte{0x17, 0x00, 0x03, 0x2a}, make([]byte, 188)...)
	// ntpq -c rv: VN 2, mode 6, opcode 2 (read variables), sequence 1.
	readvar := []byte{0x16, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}
	for _, c := range []struct {
		name string
		p    []byte
		ok   bool
		want Packet
	}{
		{"ntpdate", client, true, Packet{Version: 4, Mode: 3}},
		{"sntp v3", sntp, true, Packet{Version: 3, Mode: 3}},
		{"monlist", monlist, true, Packet{Version: 2, Mode: 7}},
		{"ntpq readvar", readvar, true, Packet{Version: 2, Mode: 6}},
		{"client cut", client[:40], false, Packet{}},
		{"client, stratum 200", append([]byte{0xe3, 200}, client[2:]...), false, Packet{}},
		{"server response", append([]byte{0x24}, client[1:]...), false, Packet{}},
		{"control response", []byte{0x16, 0x82, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}, false, Packet{}},
		{"control count past the end", []byte{0x16, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 1, 0}, false, Packet{}},
		{"version 0", append([]byte{0x03}, client[1:]...), false, Packet{}},
		{"text", bytes.Repeat([]byte("GET / "), 10), false, Packet{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Parse(c.p)
			if ok != c.ok || got != c.want {
				t.Errorf("Parse = %+v, %v; want %+v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(append([]byte{0xe3}, make([]byte, 47)...))
	f.Add([]byte{0x17, 0x00, 0x03, 0x2a, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		if pk, ok := Parse(p); ok && (pk.Version < 1 || pk.Version > 4 || pk.Mode == 0) {
			t.Errorf("Parse(%x) = %+v", p, pk)
		}
	})
}
