package e2e

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"spip/pkg/protocol/tls"
	"spip/pkg/test/netns"
)

// client is one real client run in the client namespace against one port of the sensor, and
// what its record must say.
type client struct {
	name string
	port uint16
	v6   bool
	argv func(host string) []string
	want map[string]any // JSON values the record must hold (strings, or []string for arrays)
}

// TestServeProtocolFacts is issue 13's end-to-end check: real clients (curl over TLS with SNI
// and HTTP/2, openssl s_client with and without a server name, curl over HTTP with a user agent,
// OpenSSH) connect through the tproxy capture to ports of the sensor, over IPv4 and IPv6, and
// each record names the protocol and its facts. Nothing a live client sends is hard-coded: SNI,
// ALPN, path and agent are what the test told the client to send, the banner is what `ssh -V`
// says, the JA4 is computed from the record's own payload_hex, and community_id is checked
// against a second implementation written here from the specification.
func TestServeProtocolFacts(t *testing.T) {
	netns.Require(t, "nft", "ip", "curl", "openssl", "ssh", "timeout")
	p := netns.NewPair(t, "e2e-facts")
	cfgPath := filepath.Join(t.TempDir(), "spip.toml")
	if err := os.WriteFile(cfgPath, []byte(tproxyConfig+"[record]\ncommunity_id_seed = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := netns.Exec(p.Sensor, netns.Binary(t), "nft", "--config", cfgPath, "--load"); err != nil {
		t.Fatalf("spip nft --load: %v\n%s", err, out)
	}
	jsonPath := filepath.Join(t.TempDir(), "records.jsonl")
	spip := startSpip(t, p.Sensor, "tproxy", []string{netns.Binary(t), "serve", "--config", cfgPath,
		"--journald", "off", "--sensor-name", sensorName, "--json", jsonPath})
	waitFor(t, spip, jsonPath, "the started record", func(rs []map[string]any) bool { return countEvent(rs, "started") == 1 })

	banner := sshBanner(t)
	alpn := []string{"h2", "http/1.1"}
	clients := []client{
		{name: "curl https v4", port: 443, argv: func(h string) []string {
			return []string{"curl", "-sk", "--http2", "--max-time", "5", "--resolve", "www.example.test:443:" + h, "https://www.example.test/"}
		}, want: map[string]any{"protocol": "tls", "tls_sni": "www.example.test", "tls_alpn": alpn}},
		{name: "curl https v6", port: 8443, v6: true, argv: func(h string) []string {
			return []string{"curl", "-sk", "--http2", "--max-time", "5", "--resolve", "v6.example.test:8443:[" + h + "]", "https://v6.example.test:8443/"}
		}, want: map[string]any{"protocol": "tls", "tls_sni": "v6.example.test", "tls_alpn": alpn}},
		{name: "openssl with a server name", port: 4433, argv: func(h string) []string {
			return []string{"timeout", "5", "openssl", "s_client", "-connect", h + ":4433", "-servername", "openssl.example.test"}
		}, want: map[string]any{"protocol": "tls", "tls_sni": "openssl.example.test"}},
		{name: "openssl without a server name v6", port: 993, v6: true, argv: func(h string) []string {
			return []string{"timeout", "5", "openssl", "s_client", "-connect", "[" + h + "]:993", "-noservername"}
		}, want: map[string]any{"protocol": "tls", "tls_sni": nil}},
		{name: "curl http v4", port: 8080, argv: func(h string) []string {
			return []string{"curl", "-s", "--max-time", "5", "-A", "spip-e2e/1.0 (facts)", "http://" + h + ":8080/.env?x=1"}
		}, want: map[string]any{"protocol": "http", "http_method": "GET", "http_path": "/.env?x=1", "http_version": "1.1",
			"http_host": "198.51.100.2:8080", "http_user_agent": "spip-e2e/1.0 (facts)"}},
		{name: "curl http v6", port: 80, v6: true, argv: func(h string) []string {
			return []string{"curl", "-s", "--max-time", "5", "-A", "spip-e2e/1.0 (v6)", "http://[" + h + "]/admin"}
		}, want: map[string]any{"protocol": "http", "http_method": "GET", "http_path": "/admin", "http_host": "[fd00:5be::2]", "http_user_agent": "spip-e2e/1.0 (v6)"}},
		{name: "ssh v4", port: 2222, argv: func(h string) []string { return sshArgv(h, 2222) },
			want: map[string]any{"protocol": "ssh", "ssh_banner": banner, "hassh": nil}},
		{name: "ssh v6", port: 2200, v6: true, argv: func(h string) []string { return sshArgv(h, 2200) },
			want: map[string]any{"protocol": "ssh", "ssh_banner": banner}},
	}
	for _, c := range clients {
		host := netns.SensorV4.String()
		if c.v6 {
			host = netns.SensorV6.String()
		}
		// The clients fail: spip never answers. What matters is what they sent.
		out, _ := netns.Exec(p.Client, c.argv(host)...)
		t.Logf("%s: %d bytes of client output", c.name, len(out))
	}
	waitFor(t, spip, jsonPath, fmt.Sprintf("%d connection records", len(clients)), func(rs []map[string]any) bool {
		return countEvent(rs, "connection") >= len(clients)
	})
	_ = spip.cmd.Process.Signal(syscall.SIGTERM)
	if err := spip.wait(); err != nil {
		t.Fatalf("spip: %v\n%s", err, spip.out.String())
	}
	byPort := map[string]map[string]any{}
	for _, r := range readRecords(t, jsonPath) {
		if r["event"] == "connection" {
			byPort[fmt.Sprint(r["destination_port"])] = r
		}
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			r := byPort[fmt.Sprint(c.port)]
			if r == nil {
				t.Fatalf("no record for port %d", c.port)
			}
			for k, want := range c.want {
				got, present := r[k]
				switch w := want.(type) {
				case nil:
					if present {
						t.Errorf("%s = %v, want it absent", k, got)
					}
				case []string:
					if fmt.Sprint(got) != fmt.Sprint(anySlice(w)) {
						t.Errorf("%s = %v, want %v", k, got, w)
					}
				default:
					if got != want {
						t.Errorf("%s = %#v, want %#v", k, got, want)
					}
				}
			}
			t.Logf("protocol=%v tls_sni=%v tls_alpn=%v tls_version=%v ja4=%v http=%v %v %v host=%v ua=%v ssh_banner=%v hassh=%v community_id=%v",
				r["protocol"], r["tls_sni"], r["tls_alpn"], r["tls_version"], r["ja4"], r["http_method"], r["http_path"], r["http_version"],
				r["http_host"], r["http_user_agent"], r["ssh_banner"], r["hassh"], r["community_id"])
			raw, err := hex.DecodeString(r["payload_hex"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if c.want["protocol"] == "tls" {
				// The JA4 of the bytes the client sent, as captured: the parser's own goldens pin
				// the algorithm; this pins that the record carries the fingerprint of its payload.
				h := tls.Parse(raw)
				if h.JA4 == "" || r["ja4"] != h.JA4 || r["tls_version"] != tls.VersionName(h.Version) {
					t.Errorf("ja4 %v tls_version %v, want %q %q from the payload", r["ja4"], r["tls_version"], h.JA4, tls.VersionName(h.Version))
				}
				wantSNI := byte('i')
				if c.want["tls_sni"] != nil {
					wantSNI = 'd'
				}
				if ja4, _ := r["ja4"].(string); len(ja4) < 4 || ja4[3] != wantSNI {
					t.Errorf("ja4 %q: SNI letter, want %c", ja4, wantSNI)
				}
			}
			src, err := addrPort(r, "source_ip", "source_port")
			if err != nil {
				t.Fatal(err)
			}
			dst, err := addrPort(r, "destination_ip", "destination_port")
			if err != nil {
				t.Fatal(err)
			}
			wantDst := netns.SensorV4
			if c.v6 {
				wantDst = netns.SensorV6
			}
			if dst.Addr() != wantDst || dst.Port() != c.port {
				t.Errorf("destination %s, want %s port %d", dst, wantDst, c.port)
			}
			if want := communityIDv1(0, 6, src.Addr().AsSlice(), dst.Addr().AsSlice(), src.Port(), dst.Port()); r["community_id"] != want {
				t.Errorf("community_id %v, want %s", r["community_id"], want)
			}
		})
	}
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func sshArgv(host string, port int) []string {
	return []string{"timeout", "5", "ssh", "-p", fmt.Sprint(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "e2e@" + host, "true"}
}

// sshBanner is the identification string this machine's ssh sends: "SSH-2.0-" and the version
// `ssh -V` prints before its first comma (RFC 4253 §4.2; OpenSSH puts its version there).
func sshBanner(t *testing.T) string {
	out, err := exec.Command("ssh", "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("ssh -V: %v %s", err, out)
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), ",")
	return "SSH-2.0-" + v
}

// communityIDv1 is a second implementation of Community ID v1, written from
// corelight/community-id-spec's README independently of pkg/protocol/communityid: seed (2 bytes,
// big endian), the ordered addresses (4 bytes for IPv4), the protocol, a zero byte, the ports.
func communityIDv1(seed uint16, proto byte, a, b []byte, pa, pb uint16) string {
	if ip := net.IP(a).To4(); ip != nil {
		a = ip
	}
	if ip := net.IP(b).To4(); ip != nil {
		b = ip
	}
	swap := false
	switch cmp := strings.Compare(string(a), string(b)); {
	case cmp > 0:
		swap = true
	case cmp == 0 && pa > pb:
		swap = true
	}
	if swap {
		a, b, pa, pb = b, a, pb, pa
	}
	buf := binary.BigEndian.AppendUint16(nil, seed)
	buf = append(append(buf, a...), b...)
	buf = append(buf, proto, 0)
	buf = binary.BigEndian.AppendUint16(buf, pa)
	buf = binary.BigEndian.AppendUint16(buf, pb)
	sum := sha1.Sum(buf)
	return "1:" + base64.StdEncoding.EncodeToString(sum[:])
}

// TestCommunityIDv1Vectors pins the test's own implementation to the specification's examples.
func TestCommunityIDv1Vectors(t *testing.T) {
	a, b := net.ParseIP("1.2.3.4"), net.ParseIP("5.6.7.8")
	for _, c := range []struct {
		proto byte
		a, b  net.IP
		pa    uint16
		pb    uint16
		want  string
	}{
		{6, a, b, 1122, 3344, "1:wCb3OG7yAFWelaUydu0D+125CLM="},
		{6, b, a, 3344, 1122, "1:wCb3OG7yAFWelaUydu0D+125CLM="},
		{17, a, b, 1122, 3344, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="},
	} {
		if got := communityIDv1(0, c.proto, c.a, c.b, c.pa, c.pb); got != c.want {
			t.Errorf("%v:%d -> %v:%d/%d = %s, want %s", c.a, c.pa, c.b, c.pb, c.proto, got, c.want)
		}
	}
}
