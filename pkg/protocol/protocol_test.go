package protocol

import (
	"os"
	"reflect"
	"testing"
)

func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIdentify(t *testing.T) {
	curlTLS := read(t, "tls/testdata/clienthello/curl_http2_sni.bin")
	for _, c := range []struct {
		name string
		in   []byte
		want Facts
	}{
		{"empty", nil, Facts{}},
		{"random", []byte{0x8e, 0x11, 0x02, 0xf0, 0x00}, Facts{}},
		{"curl https --http2", curlTLS, Facts{Protocol: "tls", TLSSNI: "www.example.test", TLSALPN: []string{"h2", "http/1.1"}, TLSVersion: "1.3", JA4: "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"}},
		{"tls cut short", curlTLS[:200], Facts{Protocol: "tls"}},
		{"curl http", read(t, "http/testdata/curl_http_ua.bin"), Facts{Protocol: "http", HTTPMethod: "GET", HTTPPath: "/.env", HTTPVersion: "1.1", HTTPHost: "www.example.test:14438", HTTPUserAgent: "spip-test/1.0 (e2e)"}},
		{"http cut", []byte("GET /a"), Facts{Protocol: "http", HTTPMethod: "GET", HTTPPath: "/a", Cut: CutHTTPPath}},
		{"ssh", read(t, "ssh/testdata/ssh_banner_only.bin"), Facts{Protocol: "ssh", SSHBanner: "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6"}},
		{"ssh cut", []byte("SSH-2.0-Go"), Facts{Protocol: "ssh", SSHBanner: "SSH-2.0-Go", Cut: CutSSHBanner}},
		{"sip before http", []byte("OPTIONS sip:100@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/TCP x\r\n\r\n"), Facts{Protocol: "sip"}},
		{"http OPTIONS", []byte("OPTIONS * HTTP/1.1\r\n\r\n"), Facts{Protocol: "http", HTTPMethod: "OPTIONS", HTTPPath: "*", HTTPVersion: "1.1"}},
		// nmap's RDP probe and a mstsc-style cookie.
		{"rdp neg req", []byte("\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00"), Facts{Protocol: "rdp"}},
		{"rdp cookie", []byte("\x03\x00\x00\x2a\x25\xe0\x00\x00\x00\x00\x00Cookie: mstshash=administr\r\n\x01\x00\x08\x00\x03\x00\x00\x00"), Facts{Protocol: "rdp"}},
		{"iso-tsap (S7) is tpkt, not rdp", []byte("\x03\x00\x00\x16\x11\xe0\x00\x00\x00\x01\x00\xc1\x02\x01\x00\xc2\x02\x01\x02\xc0\x01\x0a"), Facts{Protocol: "tpkt"}},
		{"smb1 negotiate", []byte("\x00\x00\x00\x54\xffSMBr\x00\x00\x00\x00"), Facts{Protocol: "smb"}},
		{"smb2 negotiate", []byte("\x00\x00\x00\xb4\xfeSMB@\x00"), Facts{Protocol: "smb"}},
		{"redis", []byte("*1\r\n$4\r\nPING\r\n"), Facts{Protocol: "redis"}},
		{"redis info", []byte("*1\r\n$4\r\nINFO\r\n"), Facts{Protocol: "redis"}},
		{"mqtt 3.1.1", []byte("\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test"), Facts{Protocol: "mqtt"}},
		{"mqtt 3.1", []byte("\x10\x12\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x04test"), Facts{Protocol: "mqtt"}},
		{"telnet", []byte("\xff\xfd\x18\xff\xfd\x20"), Facts{Protocol: "telnet"}},
		{"lone star", []byte("*\r\n"), Facts{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f Facts
			Identify(TCP, c.in, &f)
			if !reflect.DeepEqual(f, c.want) {
				t.Errorf("Identify =\n %+v\nwant\n %+v", f, c.want)
			}
		})
	}
	// Nothing is registered for UDP yet: UDP bytes are never taken for a TCP protocol.
	var f Facts
	if Identify(UDP, curlTLS, &f); f.Protocol != "" {
		t.Errorf("UDP: %+v", f)
	}
}

// FuzzIdentify: never a panic, and every value within its parser's bound.
func FuzzIdentify(f *testing.F) {
	for _, p := range []string{"tls/testdata/clienthello/go_crypto_tls.bin", "http/testdata/curl_http_ua.bin", "ssh/testdata/ssh_openssh.bin"} {
		f.Add(read(f, p))
	}
	for _, s := range []string{"*1\r\n$4\r\nPING\r\n", "\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00", "\x10\x10\x00\x04MQTT", "\x00\x00\x00\x54\xffSMB", "INVITE sip:x SIP/2.0\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var fa Facts
		Identify(TCP, p, &fa)
		if fa.Protocol == "" && !reflect.DeepEqual(fa, Facts{}) {
			t.Fatalf("facts without a protocol: %+v", fa)
		}
		if len(fa.TLSSNI) > 255 || len(fa.HTTPPath) > 1024 || len(fa.HTTPUserAgent) > 512 || len(fa.SSHBanner) > 253 || len(fa.HTTPHost) > 255 {
			t.Fatalf("unbounded: %+v", fa)
		}
	})
}

// BenchmarkIdentify is the parse cost per record for the payload mix make bench sends.
func BenchmarkIdentify(b *testing.B) {
	for _, c := range []struct{ name, path string }{
		{"tls-curl", "tls/testdata/clienthello/curl_http2_sni.bin"},
		{"tls-go", "tls/testdata/clienthello/go_crypto_tls.bin"},
		{"http", "http/testdata/curl_http_ua.bin"},
		{"ssh", "ssh/testdata/ssh_banner_only.bin"},
	} {
		p := read(b, c.path)
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				var f Facts
				Identify(TCP, p, &f)
			}
		})
	}
	b.Run("random", func(b *testing.B) {
		p := []byte("\x8e\x11\x02\xf0\x00\x17\x99\x42")
		for b.Loop() {
			var f Facts
			Identify(TCP, p, &f)
		}
	})
}
