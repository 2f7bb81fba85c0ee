package protocol

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func TestIdentifyUDP(t *testing.T) {
	dig, _ := hex.DecodeString("1a2501200001000000000001076578616d706c6503636f6d000001000100002904d000000000000c000a000882e89065aba53863")
	ntpClient := append([]byte{0xe3}, make([]byte, 47)...)
	monlist := append([]byte{0x17, 0x00, 0x03, 0x2a}, make([]byte, 188)...)
	quic := append([]byte{0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0}, make([]byte, 1200)...)
	// snmpwalk -v2c -c public: SEQUENCE, INTEGER 1, OCTET STRING "public", GetNextRequest …
	snmp, _ := hex.DecodeString("302602010104067075626c6963a1190204" + "1a2b3c4d020100020100300b300906052b060102010500")
	for _, c := range []struct {
		name string
		p    []byte
		want Facts
	}{
		{"dig", dig, Facts{Protocol: "dns", DNSQueryName: "example.com", DNSQueryType: "A"}},
		{"ntp client", ntpClient, Facts{Protocol: "ntp", NTPVersion: 4, NTPMode: 3}},
		{"ntp monlist", monlist, Facts{Protocol: "ntp", NTPVersion: 2, NTPMode: 7}},
		{"ssdp", []byte("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n"), Facts{Protocol: "ssdp", SSDPTarget: "ssdp:all"}},
		{"memcached stats", []byte("\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n"), Facts{Protocol: "memcached"}},
		{"snmp v2c", snmp, Facts{Protocol: "snmp"}},
		{"sip options", []byte("OPTIONS sip:100@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5060\r\n\r\n"), Facts{Protocol: "sip"}},
		{"quic v1 initial", quic, Facts{Protocol: "quic"}},
		{"quic too short", quic[:1000], Facts{}},
		{"quic-go initial", readQUIC(t, "quicgo_x25519_0.bin"), Facts{Protocol: "quic"}},
		{"random", bytes.Repeat([]byte{0x5a, 0xa5, 0x13}, 100), Facts{}},
		{"empty", nil, Facts{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f Facts
			Identify(UDP, c.p, &f)
			if f.Protocol != c.want.Protocol || f.DNSQueryName != c.want.DNSQueryName || f.DNSQueryType != c.want.DNSQueryType ||
				f.NTPVersion != c.want.NTPVersion || f.NTPMode != c.want.NTPMode || f.SSDPTarget != c.want.SSDPTarget {
				t.Errorf("Identify(UDP) = %+v, want %+v", f, c.want)
			}
		})
	}
}

func readQUIC(t *testing.T, name string) []byte { return read(t, "quic/testdata/"+name) }

// TestIdentifyQUICSpanning: quic-go's ClientHello with a post-quantum key share spans two
// datagrams; the first alone names the protocol, both give SNI, ALPN and a JA4 with "q".
func TestIdentifyQUICSpanning(t *testing.T) {
	d0, d1 := readQUIC(t, "quicgo_mlkem_0.bin"), readQUIC(t, "quicgo_mlkem_1.bin")
	var f Facts
	Identify(UDP, d0, &f)
	if f.Protocol != "quic" || f.TLSSNI != "" {
		t.Fatalf("first datagram: %+v", f)
	}
	IdentifyQUIC([][]byte{d0, d1}, &f)
	if f.TLSSNI != "quic.example" || len(f.TLSALPN) != 1 || f.TLSALPN[0] != "h3" || f.TLSVersion != "1.3" || len(f.JA4) < 4 || f.JA4[:4] != "q13d" {
		t.Errorf("two datagrams: %+v", f)
	}
	var g Facts
	Identify(UDP, readQUIC(t, "quicgo_x25519_0.bin"), &g)
	if g.TLSSNI != "quic.example" || g.JA4 != f.JA4 {
		t.Errorf("x25519 Initial: %+v", g)
	}
}

func FuzzIdentifyUDP(f *testing.F) {
	f.Add([]byte("M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n"))
	f.Add(append([]byte{0xe3}, make([]byte, 47)...))
	f.Add([]byte("\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n"))
	f.Add([]byte("\x30\x26\x02\x01\x01\x04\x06public"))
	f.Fuzz(func(t *testing.T, p []byte) {
		var fa Facts
		Identify(UDP, p, &fa)
	})
}
