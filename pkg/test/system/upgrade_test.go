package system

import (
	"net/netip"
	"strings"
	"testing"

	"spip/pkg/test/netns"
)

// 13. Upgrade from the previous release (0.1.0, built from its commit), the way hosts will get
// this version: its spip.socket has no Mark=, and the package never restarts a running socket,
// so systemd keeps the old socket's settings. Every connection made during the upgrade is
// recorded; after it, the new redirect is loaded, the new spip records the true destination
// through the old socket and says (STATUS=, a warning record) that spip.socket must be
// restarted for the mark; restarted as it says, the warning is gone. Runs after the purge, on a
// container without spip.
func (s *sys) upgradeFromPrevious(t *testing.T) {
	m := s.m
	prev := s.prev.Wait(t)
	m.Install(t, prev)
	if v := s.installedVersion(t); v != s.prev.Version {
		t.Fatalf("installed %s, want the previous release %s", v, s.prev.Version)
	}
	m.Exec(t, "systemctl", "enable", "--now", "spip.socket")
	s.requireActive(t, "spip.socket", "spip-redirect.service")
	s.requireTable(t, "tproxy to :12345")
	if mark := s.show(t, "spip.socket", "Mark"); mark != "" && mark != "-1" {
		t.Logf("note: the previous release's spip.socket has Mark=%s", mark)
	}
	s.sendAndCheck(t, "previous release", 20)
	socketID := s.show(t, "spip.socket", "InvocationID")

	deb := s.base.Wait(t)
	var out string
	sent := s.underLoad(t, "apt-get install (upgrade from "+s.prev.Version+")", func() { out = m.Install(t, deb) })
	t.Logf("apt-get:\n%s", tail([]byte(out), 15))
	WaitRecorded(t, "journal (upgrade)", false, func() []Rec { return m.Records(t) }, sent)
	if v := s.installedVersion(t); v != s.base.Version {
		t.Fatalf("installed %s after the upgrade, want %s", v, s.base.Version)
	}
	if id := s.show(t, "spip.socket", "InvocationID"); id != socketID {
		t.Errorf("the upgrade restarted spip.socket (invocation %s, was %s): its backlog was dropped", id, socketID)
	}
	s.requireActive(t, "spip.socket", "spip-redirect.service", "spip.service")
	// The new table: notrack_out matches spip's mark, which the old socket does not set.
	s.requireTable(t, "meta mark 0x00005350 notrack")
	s.sendAndCheck(t, "new version, old socket", 20)

	status := s.show(t, "spip.service", "StatusText")
	if !strings.Contains(status, "restart spip.socket") {
		t.Errorf("with the old socket, STATUS= does not say to restart spip.socket: %q", status)
	}
	warn := m.Exec(t, "journalctl", "--no-pager", "-o", "cat", "-t", "spip", "-p", "warning", "--since", "-5min")
	if !strings.Contains(warn, "restart spip.socket") {
		t.Errorf("no warning record says to restart spip.socket; warnings:\n%s", warn)
	}

	t.Logf("step: systemctl restart spip.socket, as the warning says")
	m.Exec(t, "systemctl", "restart", "spip.socket")
	m.Exec(t, "systemctl", "start", "spip.service")
	s.requireActive(t, "spip.socket", "spip-redirect.service", "spip.service")
	s.sendAndCheck(t, "new version, restarted socket", 20)
	if status := s.show(t, "spip.service", "StatusText"); strings.Contains(status, "restart spip.socket") {
		t.Errorf("STATUS= still says to restart spip.socket after it was restarted: %q", status)
	}
	if out, err := m.Run("spip", "check"); err != nil {
		t.Errorf("spip check after the upgrade: %v\n%s", err, out)
	}
}

// sendAndCheck sends n connections to random ports over both families and requires each to be
// recorded once with its original destination and payload.
func (s *sys) sendAndCheck(t *testing.T, what string, n int) {
	t.Helper()
	var sent []Sent
	for i, p := range s.randomPorts(n) {
		dst := netns.SensorV4
		if i%2 == 1 {
			dst = netns.SensorV6
		}
		sent = append(sent, s.send(t, netip.AddrPortFrom(dst, p), s.payload(i), 0))
	}
	t.Logf("step: %d connections (%s)", n, what)
	WaitRecorded(t, "journal ("+what+")", false, func() []Rec { return s.m.Records(t) }, sent)
}

// installedVersion is dpkg's version of the installed spip package.
func (s *sys) installedVersion(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(s.m.Exec(t, "dpkg-query", "-W", "-f", "${Version}", "spip"))
}
