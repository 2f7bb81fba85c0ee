//go:build !spipnofacts

package sensor_test

import (
	"os"
	"testing"
	"time"

	"spip/pkg/protocol/communityid"
	"spip/pkg/protocol/tls"
)

// TestFacts: a ClientHello sent in pieces (several reads) gives the record its protocol facts,
// and every record carries the Community ID with the configured seed.
func TestFacts(t *testing.T) {
	hello, err := os.ReadFile("../protocol/tls/testdata/clienthello/go_crypto_tls.bin")
	if err != nil {
		t.Fatal(err)
	}
	want := tls.Parse(hello)
	c := cfg()
	c.CommunityIDSeed = 7
	h := start(t, c, "127.0.0.1:0")
	conn := h.dial(t)
	for _, part := range [][]byte{hello[:3], hello[3:700], hello[700:]} {
		if _, err := conn.Write(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	src := localOf(conn)
	conn.Close()
	h.col.wait(t, 1)
	r := h.col.bySource(t, src)
	if r.Facts.Protocol != "tls" || r.Facts.JA4 != want.JA4 || r.Facts.TLSSNI != "go.example.test" || r.Facts.TLSVersion != "1.3" {
		t.Errorf("facts = %+v, want JA4 %s", r.Facts, want.JA4)
	}
	if wantID := communityid.Hash(7, communityid.TCP, src, h.addr); r.CommunityID != wantID || wantID == "" {
		t.Errorf("community_id = %q, want %q", r.CommunityID, wantID)
	}
}

// TestFactsUDP: a UDP flow's Community ID is over protocol 17, and a ClientHello's bytes sent
// over UDP are not taken for TCP's TLS.
func TestFactsUDP(t *testing.T) {
	hello, err := os.ReadFile("../protocol/tls/testdata/clienthello/curl_http2_sni.bin")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg()
	c.UDPIdleTimeout = 200 * time.Millisecond
	c.MaxUDPFlows = 10
	h := startUDP(t, c)
	src := sendFrom(t, h.udp, hello)
	r := h.col.wait(t, 1)[0]
	if want := communityid.Hash(0, communityid.UDP, src, h.udp); r.CommunityID != want {
		t.Errorf("community_id = %q, want %q (UDP)", r.CommunityID, want)
	}
	if r.Facts.Protocol == "tls" {
		t.Errorf("UDP datagram named %q", r.Facts.Protocol)
	}
}
