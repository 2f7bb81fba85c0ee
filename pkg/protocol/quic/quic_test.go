package quic

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeysRFC9001 checks the key derivation against RFC 9001 Appendix A.1.
func TestKeysRFC9001(t *testing.T) {
	dcid, _ := hex.DecodeString("8394c8f03e515708")
	k, err := clientKeys(V1, dcid)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(k.iv[:]); got != "fa044b2f42a3fd3b46fb255c" {
		t.Errorf("client iv = %s", got)
	}
	var mask [16]byte
	k.hp.Encrypt(mask[:], make([]byte, 16))
	hp := expandLabel(expandLabel(extract(t, dcid), "client in", 32), "quic hp", 16)
	if got := hex.EncodeToString(hp); got != "9f50449e04a0e810283a1e9933adedd2" {
		t.Errorf("client hp = %s", got)
	}
	key := expandLabel(expandLabel(extract(t, dcid), "client in", 32), "quic key", 16)
	if got := hex.EncodeToString(key); got != "1f369613dd76d5467730efcbe3b1a22d" {
		t.Errorf("client key = %s", got)
	}
}

// TestParseQuicGo reads the first datagrams quic-go v0.65.0 (Go 1.26 crypto/tls) sent to a UDP
// port that never answered, for ServerName "quic.example" and ALPN h3: once with X25519 only
// (the ClientHello fits one datagram), once with the default X25519MLKEM768 key share (the
// ClientHello spans the first two datagrams).
func TestParseQuicGo(t *testing.T) {
	for _, c := range []struct {
		name      string
		datagrams [][]byte
		complete  bool
	}{
		{"x25519", [][]byte{read(t, "quicgo_x25519_0.bin")}, true},
		{"mlkem, first datagram", [][]byte{read(t, "quicgo_mlkem_0.bin")}, false},
		{"mlkem, two datagrams", [][]byte{read(t, "quicgo_mlkem_0.bin"), read(t, "quicgo_mlkem_1.bin")}, true},
		{"mlkem, three datagrams", [][]byte{read(t, "quicgo_mlkem_0.bin"), read(t, "quicgo_mlkem_1.bin"), read(t, "quicgo_mlkem_2.bin")}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, ok := Parse(c.datagrams...)
			if !ok || h.Version != V1 {
				t.Fatalf("Parse: ok %v, version %x", ok, h.Version)
			}
			if h.TLS.Complete != c.complete {
				t.Fatalf("complete = %v, want %v (%+v)", h.TLS.Complete, c.complete, h.TLS)
			}
			if !c.complete {
				return
			}
			if h.TLS.SNI != "quic.example" || len(h.TLS.ALPN) != 1 || h.TLS.ALPN[0] != "h3" || h.TLS.Version != 0x0304 {
				t.Errorf("hello: %+v", h.TLS)
			}
			if !strings.HasPrefix(h.JA4, "q13d") || !strings.Contains(h.JA4, "h3_") {
				t.Errorf("JA4 = %q, want q13d…h3_…", h.JA4)
			}
			t.Logf("JA4 %s", h.JA4)
		})
	}
}

func TestParseRejects(t *testing.T) {
	x := read(t, "quicgo_x25519_0.bin")
	flipped := bytes.Clone(x)
	flipped[len(flipped)-30] ^= 1 // the AEAD tag no longer matches
	for _, c := range []struct {
		name string
		p    []byte
		ok   bool
	}{
		{"tampered", flipped, true},
		{"short header", append([]byte{0x40}, x[1:]...), false},
		{"unknown version", append([]byte{x[0], 0, 0, 0, 9}, x[5:]...), false},
		{"cut", x[:60], true},
		{"empty", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, ok := Parse(c.p)
			if ok != c.ok || h.TLS.Complete || h.JA4 != "" {
				t.Errorf("Parse = %+v, %v", h, ok)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	x, _ := os.ReadFile(filepath.Join("testdata", "quicgo_x25519_0.bin"))
	f.Add(x)
	f.Add(x[:100])
	f.Fuzz(func(t *testing.T, p []byte) {
		Parse(p, p)
	})
}

func extract(t *testing.T, dcid []byte) []byte {
	t.Helper()
	prk, err := hkdfExtract(dcid)
	if err != nil {
		t.Fatal(err)
	}
	return prk
}
