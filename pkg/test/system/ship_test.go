package system

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"spip/pkg/test/clickhouse"
	"spip/pkg/test/netns"
)

// 1b. spip-ship.service, enabled as the README says, ships the journal's records to a
// ClickHouse on the other side of the network (the client namespace), with the password from a
// credential and the store's address allowed by a drop-in: the connections sent are queryable,
// byte-exact, each once.
func (s *sys) ship(t *testing.T) {
	m := s.m
	ch := clickhouse.StartIn(t, m.Net.Client, netns.ClientV4)
	schema, err := os.ReadFile(filepath.Join(netns.RepoRoot(), "packaging", "clickhouse", "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	ch.Exec(string(schema))

	t.Logf("step: [ship] url = %s, /etc/credstore/clickhouse-password, IPAddressAllow=%s; systemctl enable --now spip-ship.service", ch.URL(), netns.ClientV4)
	s.writeConfig(t, s.config+fmt.Sprintf("\n[ship]\nurl = %q\nuser = %q\nflush_interval = \"500ms\"\n", ch.URL(), clickhouse.User))
	m.WriteFile(t, "/etc/credstore/clickhouse-password", []byte(clickhouse.Password+"\n"), 0o600)
	m.WriteFile(t, "/etc/systemd/system/spip-ship.service.d/store.conf",
		[]byte("[Service]\nIPAddressAllow="+netns.ClientV4.String()+"\n"), 0o644)
	defer func() {
		_, _ = m.Run("systemctl", "disable", "--now", "spip-ship.service")
		// The drop-in and the credential are the operator's, not the package's: purge leaves
		// them, so the scenario takes its own away.
		m.RemoveFile(t, "/etc/systemd/system/spip-ship.service.d/store.conf")
		_, _ = m.Run("rmdir", "/etc/systemd/system/spip-ship.service.d")
		m.RemoveFile(t, "/etc/credstore/clickhouse-password")
		_, _ = m.Run("systemctl", "daemon-reload")
		s.writeConfig(t, s.config)
	}()
	m.Exec(t, "spip", "check")
	m.Exec(t, "systemctl", "daemon-reload")
	m.Exec(t, "systemctl", "enable", "--now", "spip-ship.service")
	s.requireActive(t, "spip-ship.service")

	var sent []Sent
	for i, p := range s.randomPorts(30) {
		sent = append(sent, s.send(t, netip.AddrPortFrom(netns.SensorV4, p), s.payload(i), 0))
	}
	var ports []string
	for _, x := range sent {
		ports = append(ports, strconv.Itoa(int(x.Src.Port())))
	}
	q := fmt.Sprintf("SELECT uniqExact(session_id) FROM spip.connections WHERE source_ip = '%s' AND source_port IN (%s)",
		netns.ClientV4, strings.Join(ports, ","))
	got := ""
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if got, _ = ch.Query(q); got == strconv.Itoa(len(sent)) {
			break
		}
	}
	status := s.show(t, "spip-ship.service", "StatusText")
	t.Logf("spip-ship.service: %s", status)
	if got != strconv.Itoa(len(sent)) {
		out, _ := m.Run("journalctl", "--no-pager", "-u", "spip-ship.service", "-n", "30")
		t.Fatalf("%s connections of %d in ClickHouse:\n%s", got, len(sent), out)
	}
	for what, q := range map[string]string{
		"rows where hex(payload) != upper(payload_hex)":                         "SELECT countIf(hex(payload) != upper(payload_hex)) FROM spip.connections",
		"sessions in more than one row after OPTIMIZE FINAL":                    "SELECT count() - uniqExact(session_id) FROM spip.connections FINAL",
		"connections sent whose destination port differs from the one recorded": fmt.Sprintf("SELECT countIf(destination_ip != '%s') FROM spip.connections WHERE source_port IN (%s)", netns.SensorV4, strings.Join(ports, ",")),
	} {
		if n := ch.MustQuery(q); n != "0" {
			t.Errorf("%s: %s", what, n)
		}
	}
	if n := ch.MustQuery("SELECT count() FROM spip.events WHERE event = 'started'"); n == "0" {
		t.Errorf("no started event in spip.events")
	}
	if !strings.Contains(status, "shipped ") {
		t.Errorf("STATUS= %q does not say what was shipped", status)
	}
	total := ch.MustQuery("SELECT count() FROM spip.connections")
	t.Logf("ClickHouse holds %s connections (the %d sent now and what scenario 1 recorded)", total, len(sent))
}
