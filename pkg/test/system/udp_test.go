package system

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// 2c. UDP capture as the README says to turn it on: capture.udp = true in /etc/spip/spip.toml,
// spip-udp.socket enabled, the redirect reloaded and the sensor restarted. dig queries from the
// client to the sensor's addresses are never answered, and each is one record in
// `journalctl -o json --all -t spip SPIP_TRANSPORT=udp` with its original destination, the
// query as payload, protocol dns and the name and type asked. Stopping spip.socket removes
// every rule (and the UDP socket with it); starting it again, and turning capture.udp off,
// leaves the shared state as it was.
func (s *sys) udpCapture(t *testing.T) {
	netns.RequireTools(t, "dig")
	m := s.m
	t.Logf("step: systemctl enable --now spip-udp.socket")
	m.Exec(t, "systemctl", "enable", "--now", "spip-udp.socket")
	s.config = "[capture]\nudp = true\n"
	s.applyConfig(t)
	s.requireActive(t, "spip-udp.socket")
	s.requireTable(t, `ct timeout set "spip_udp"`)

	type query struct {
		dst  netip.AddrPort
		name string
	}
	var queries []query
	for i, p := range append([]uint16{53, 161}, s.randomPorts(4)...) {
		dst := netns.SensorV4
		if i%2 == 1 {
			dst = netns.SensorV6
		}
		q := query{netip.AddrPortFrom(dst, p), fmt.Sprintf("q%d-%d.systest.example.", i, s.rnd.IntN(1e6))}
		out, _ := netns.Exec(m.Net.Client, "dig", "@"+dst.String(), "-p", fmt.Sprint(p), "+tries=1", "+time=1", q.name, "A")
		if strings.Contains(string(out), "status:") {
			t.Errorf("dig %s got an answer:\n%s", q.dst, out)
		}
		queries = append(queries, q)
	}
	t.Logf("step: %d dig queries sent; reading journalctl -o json --all -t spip SPIP_TRANSPORT=udp", len(queries))
	var found map[string]map[string]any
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		found = map[string]map[string]any{}
		out := m.Exec(t, "journalctl", "-o", "json", "--all", "--no-pager", "-t", "spip", "SPIP_TRANSPORT=udp")
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) != nil {
				continue
			}
			payload, _ := hex.DecodeString(fmt.Sprint(e["SPIP_PAYLOAD_HEX"]))
			for _, q := range queries {
				if strings.Contains(string(payload), dnsLabels(q.name)) {
					found[q.name] = e
				}
			}
		}
		if len(found) == len(queries) || time.Now().After(deadline) {
			break
		}
	}
	for _, q := range queries {
		e, ok := found[q.name]
		if !ok {
			t.Errorf("dig %s (%s): no UDP record in the journal", q.dst, q.name)
			continue
		}
		got := fmt.Sprintf("%v:%v", e["SPIP_DESTINATION_IP"], e["SPIP_DESTINATION_PORT"])
		if want := fmt.Sprintf("%s:%d", q.dst.Addr(), q.dst.Port()); got != want || e["SPIP_DATAGRAMS"] != "1" || e["SPIP_CLOSE_REASON"] != "timeout" {
			t.Errorf("dig %s: record has destination %s, datagrams %v, close %v", q.dst, got, e["SPIP_DATAGRAMS"], e["SPIP_CLOSE_REASON"])
		}
		if e["SPIP_PROTOCOL"] != "dns" || e["SPIP_DNS_QUERY_NAME"] != strings.TrimSuffix(q.name, ".") || e["SPIP_DNS_QUERY_TYPE"] != "A" {
			t.Errorf("dig %s: protocol %v, dns_query_name %v, dns_query_type %v", q.dst, e["SPIP_PROTOCOL"], e["SPIP_DNS_QUERY_NAME"], e["SPIP_DNS_QUERY_TYPE"])
		}
	}
	if st := s.show(t, "spip.service", "StatusText"); !strings.Contains(st, "udp:") {
		t.Errorf("STATUS= does not count UDP: %q", st)
	}

	t.Logf("step: systemctl stop spip.socket removes every rule")
	m.Exec(t, "systemctl", "stop", "spip.socket")
	if out, err := m.Run("nft", "list", "table", "inet", "spip"); err == nil {
		t.Errorf("table inet spip still loaded after stopping spip.socket:\n%s", out)
	}
	if st := s.show(t, "spip-udp.socket", "ActiveState"); st != "inactive" {
		t.Errorf("spip-udp.socket is %s after stopping spip.socket, want inactive (PartOf=)", st)
	}
	m.Exec(t, "systemctl", "start", "spip.socket", "spip.service")
	s.requireActive(t, "spip.socket")
	if st := s.show(t, "spip-redirect.service", "ActiveState"); st == "failed" {
		// Seen once in the booted container: status 219/CGROUP when the redirect unit started
		// again right after its stop. Logged and retried once, as an operator would.
		out, _ := m.Run("systemctl", "status", "--no-pager", "-n", "10", "spip-redirect.service")
		t.Logf("spip-redirect.service failed on the quick restart; retrying once:\n%s", out)
		m.Exec(t, "systemctl", "reset-failed", "spip-redirect.service")
		m.Exec(t, "systemctl", "restart", "spip.socket", "spip.service")
	}
	s.requireActive(t, "spip.socket", "spip-redirect.service", "spip.service", "spip-udp.socket")
	s.config = ""
	s.applyConfig(t)
	// The next scenario reloads the redirect again: make sure it can, and say why if not.
	if out, err := m.Run("systemctl", "reload", "spip-redirect.service"); err != nil {
		j, _ := m.Run("journalctl", "--no-pager", "-n", "40", "-u", "spip-redirect.service", "-u", "spip.socket", "-u", "spip-udp.socket")
		t.Errorf("systemctl reload spip-redirect.service after the UDP scenario: %v\n%s\n%s", err, out, j)
	}
	if table := m.Exec(t, "nft", "list", "table", "inet", "spip"); strings.Contains(table, "udp") {
		t.Errorf("capture.udp off, yet the table captures UDP:\n%s", table)
	}
}

// dnsLabels is name in DNS wire format, without the final root label.
func dnsLabels(name string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b.WriteByte(byte(len(l)))
		b.WriteString(l)
	}
	return b.String()
}
