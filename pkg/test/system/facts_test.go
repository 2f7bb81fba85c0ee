package system

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"spip/pkg/protocol/tls"
	"spip/pkg/test/netns"
)

// 4d. The protocol facts in the booted container: real clients (curl over TLS with SNI and
// HTTP/2, openssl s_client, curl over HTTP with a user agent, OpenSSH) connect from the client
// namespace, and `journalctl -o json --all -t spip SPIP_PROTOCOL=…` inside the container finds
// their records with the facts: SNI, ALPN (journald's comma-joined list), JA4 (that of the
// record's own payload), HTTP fields, the banner (`ssh -V`'s version), a Community ID, and a
// MESSAGE that names them.
func (s *sys) protocolFacts(t *testing.T) {
	netns.RequireTools(t, "curl", "openssl", "ssh", "timeout")
	ns := s.m.Net.Client
	v4, v6 := netns.SensorV4.String(), netns.SensorV6.String()
	ver, _ := netns.Exec(ns, "ssh", "-V")
	banner, _, _ := strings.Cut(strings.TrimSpace(string(ver)), ",")
	banner = "SSH-2.0-" + banner
	type want struct {
		proto  string
		fields map[string]string
		msg    string
	}
	clients := []struct {
		port uint16
		argv []string
		want want
	}{
		{47443, []string{"curl", "-sk", "--http2", "--max-time", "5", "--resolve", "sys.example.test:47443:" + v4, "https://sys.example.test:47443/"},
			want{"tls", map[string]string{"SPIP_TLS_SNI": "sys.example.test", "SPIP_TLS_ALPN": "h2,http/1.1", "SPIP_TLS_VERSION": "1.3"}, "; tls sys.example.test"}},
		{47444, []string{"timeout", "5", "openssl", "s_client", "-connect", "[" + v6 + "]:47444", "-servername", "openssl.example.test"},
			want{"tls", map[string]string{"SPIP_TLS_SNI": "openssl.example.test"}, "; tls openssl.example.test"}},
		{47080, []string{"curl", "-s", "--max-time", "5", "-A", "spip-systest/1.0", "http://" + v4 + ":47080/.git/config"},
			want{"http", map[string]string{"SPIP_HTTP_METHOD": "GET", "SPIP_HTTP_PATH": "/.git/config", "SPIP_HTTP_VERSION": "1.1",
				"SPIP_HTTP_HOST": v4 + ":47080", "SPIP_HTTP_USER_AGENT": "spip-systest/1.0"}, "; http GET " + v4 + ":47080 /.git/config"}},
		{47022, []string{"timeout", "5", "ssh", "-p", "47022", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "x@" + v6, "true"},
			want{"ssh", map[string]string{"SPIP_SSH_BANNER": banner}, "; ssh " + banner}},
	}
	for _, c := range clients {
		// spip never answers: the clients give up. The bound is generous: on a loaded machine
		// openssl alone can take seconds to start, and a client killed before it connects sends nothing.
		if out, err := netns.Exec(ns, c.argv...); err != nil {
			t.Logf("%s: %v (expected: spip never answers)\n%s", c.argv[0], err, tail(out, 3))
		}
	}
	t.Logf("step: journalctl -o json --all -t spip SPIP_PROTOCOL=tls|http|ssh")
	for _, c := range clients {
		var e map[string]any
		for deadline := time.Now().Add(30 * time.Second); e == nil && time.Now().Before(deadline); {
			out, _ := s.m.Run("journalctl", "-o", "json", "--all", "--no-pager", "-t", "spip",
				"SPIP_PROTOCOL="+c.want.proto, fmt.Sprintf("SPIP_DESTINATION_PORT=%d", c.port))
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) == nil {
					e = m
				}
			}
			if e == nil {
				time.Sleep(300 * time.Millisecond)
			}
		}
		if e == nil {
			t.Errorf("port %d: no record with SPIP_PROTOCOL=%s in the journal", c.port, c.want.proto)
			continue
		}
		for k, v := range c.want.fields {
			if e[k] != v {
				t.Errorf("port %d: %s = %#v, want %q", c.port, k, e[k], v)
			}
		}
		if id, _ := e["SPIP_COMMUNITY_ID"].(string); !strings.HasPrefix(id, "1:") || len(id) != 30 {
			t.Errorf("port %d: SPIP_COMMUNITY_ID = %#v", c.port, e["SPIP_COMMUNITY_ID"])
		}
		if msg, _ := e["MESSAGE"].(string); !strings.HasSuffix(msg, c.want.msg) {
			t.Errorf("port %d: MESSAGE %q, want it to end %q", c.port, msg, c.want.msg)
		}
		if c.want.proto == "tls" {
			raw, _ := hex.DecodeString(fmt.Sprint(e["SPIP_PAYLOAD_HEX"]))
			if h := tls.Parse(raw); h.JA4 == "" || e["SPIP_JA4"] != h.JA4 {
				t.Errorf("port %d: SPIP_JA4 = %#v, want %q (its payload's)", c.port, e["SPIP_JA4"], h.JA4)
			}
		}
		t.Logf("port %d: %s", c.port, e["MESSAGE"])
	}
}
