package system

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"spip/pkg/test/netns"
)

// sshPort is where these scenarios move sshd: a port capture.exclude_ports does not list, so
// only capture.exclude_sshd keeps it out of the capture.
const sshPort = 2222

// 12. sshd on port 2222 as ssh.service, then a reboot: the redirect is loaded at boot only once
// sshd listens, so 2222 is excluded and a real ssh client reaches sshd, never spip. With
// ssh.service enabled but stopped, a reload of the redirect is refused, naming the fix, and the
// loaded table stays as it was.
func (s *sys) sshServiceReboot(t *testing.T) {
	m := s.m
	t.Cleanup(func() {
		_, _ = m.Run("systemctl", "disable", "--now", "ssh.service")
		m.RemoveFile(t, "/etc/ssh/sshd_config.d/systest-port.conf")
		_, _ = m.Run("systemctl", "reload", "spip-redirect.service")
		s.requireNotListening(t, sshPort)
	})
	t.Logf("step: sshd_config Port %d, systemctl enable --now ssh.service", sshPort)
	m.WriteFile(t, "/etc/ssh/sshd_config.d/systest-port.conf", []byte(fmt.Sprintf("Port %d\n", sshPort)), 0o644)
	m.Exec(t, "systemctl", "enable", "--now", "ssh.service")
	m.Reboot(t)
	s.requireActive(t, "ssh.service", "spip.socket", "spip-redirect.service")
	s.requireSSHReached(t, "sshd")

	t.Logf("step: ssh.service enabled but stopped: systemctl reload spip-redirect.service must refuse")
	m.Exec(t, "systemctl", "stop", "ssh.service")
	before := s.excludedPorts(t)
	if out, err := m.Run("systemctl", "reload", "spip-redirect.service"); err == nil {
		t.Errorf("reload of the redirect succeeded with ssh.service enabled and no sshd listening:\n%s", out)
	}
	log := m.Exec(t, "journalctl", "--no-pager", "-u", "spip-redirect.service", "-n", "20")
	if !strings.Contains(log, "ssh.service is enabled but no sshd listens") || !strings.Contains(log, "capture.exclude_ports") {
		t.Errorf("the refused reload does not say why and what to do:\n%s", log)
	}
	if after := s.excludedPorts(t); after != before {
		t.Errorf("the refused reload changed the loaded table's excluded ports: %q, was %q", after, before)
	}
	m.Exec(t, "systemctl", "start", "ssh.service")
}

// 12b. sshd on port 2222 run by ssh.socket (PID 1 holds the listener and no sshd runs until the
// first connection), then a reboot: ssh.socket's ListenStream= port is excluded from the first
// table of the boot.
func (s *sys) sshSocketReboot(t *testing.T) {
	m := s.m
	dropIn := "/etc/systemd/system/ssh.socket.d/systest-port.conf"
	t.Cleanup(func() {
		// Debian's ssh.socket is Accept=no: its first connection started ssh.service, whose
		// sshd holds the listener too and outlives the socket unit.
		_, _ = m.Run("systemctl", "disable", "--now", "ssh.socket", "ssh.service")
		m.RemoveFile(t, dropIn)
		_, _ = m.Run("systemctl", "daemon-reload")
		_, _ = m.Run("systemctl", "reload", "spip-redirect.service")
		s.requireNotListening(t, sshPort)
	})
	t.Logf("step: ssh.socket on port %d (ListenStream= drop-in), ssh.service disabled", sshPort)
	m.Exec(t, "systemctl", "disable", "--now", "ssh.service")
	m.WriteFile(t, dropIn, []byte(fmt.Sprintf("[Socket]\nListenStream=\nListenStream=%d\n", sshPort)), 0o644)
	m.Exec(t, "systemctl", "daemon-reload")
	m.Exec(t, "systemctl", "enable", "ssh.socket")
	m.Reboot(t)
	s.requireActive(t, "ssh.socket", "spip.socket", "spip-redirect.service")
	if out := m.Exec(t, "ss", "-Hltnp", fmt.Sprintf("sport = :%d", sshPort)); !strings.Contains(out, `"systemd"`) || strings.Contains(out, "sshd") {
		t.Fatalf("port %d should be held by PID 1 for ssh.socket, not by an sshd process:\n%s", sshPort, out)
	}
	s.requireSSHReached(t, "ssh.socket")
}

// requireSSHReached checks, right after a boot and without any reload, that the loaded table
// excludes sshPort and that ssh-keyscan from the client namespace gets sshd's host keys over both
// families, then that spip recorded none of those connections.
func (s *sys) requireSSHReached(t *testing.T, by string) {
	t.Helper()
	m := s.m
	if ex := s.excludedPorts(t); !regexp.MustCompile(fmt.Sprintf(`\b%d\b`, sshPort)).MatchString(ex) {
		t.Fatalf("after the boot, table inet spip does not exclude %s's port %d: excluded %s\nredirect unit's log:\n%s", by, sshPort, ex,
			m.Exec(t, "journalctl", "--no-pager", "-b", "-u", "spip-redirect.service"))
	}
	for _, dst := range []netip.Addr{netns.SensorV4, netns.SensorV6} {
		t.Logf("step: ssh-keyscan -p %d %s from the client namespace", sshPort, dst)
		out, err := netns.Exec(s.m.Net.Client, "ssh-keyscan", "-T", "10", "-p", fmt.Sprint(sshPort), dst.String())
		if err != nil || !strings.Contains(string(out), "ssh-ed25519 ") {
			t.Fatalf("%s on port %d did not answer ssh-keyscan at %s (%v):\n%s", by, sshPort, dst, err, out)
		}
	}
	// A connection to another port, once recorded, shows the journal has caught up.
	marker := s.send(t, netip.AddrPortFrom(netns.SensorV4, 2223), []byte("marker after ssh-keyscan"), 0)
	WaitRecorded(t, "journal", false, func() []Rec { return m.Records(t) }, []Sent{marker})
	// This boot's records only: scenario 2 sent a marker to 2222 while nothing listened there.
	for _, r := range m.RecordsFrom(t, "-b", "-t", "spip", "SPIP_EVENT=connection") {
		if r.Dst.Port() == sshPort {
			t.Fatalf("spip recorded a connection to sshd's port %d: %+v", sshPort, r.Raw)
		}
	}
}

// excludedPorts returns the elements of the loaded table's excluded TCP port set.
func (s *sys) excludedPorts(t *testing.T) string {
	t.Helper()
	out := s.m.Exec(t, "nft", "list", "set", "inet", "spip", "excluded_tcp_ports")
	if i := strings.Index(out, "elements = {"); i >= 0 {
		out = out[i+len("elements = {"):]
		if j := strings.IndexByte(out, '}'); j >= 0 {
			return strings.Join(strings.Fields(out[:j]), " ")
		}
	}
	return ""
}

// requireNotListening fails the test when something in the container still listens on port
// after a scenario's cleanup: the scenarios after it send traffic there and want spip to get it.
func (s *sys) requireNotListening(t *testing.T, port int) {
	t.Helper()
	out, _ := s.m.Run("ss", "-Hltnp", fmt.Sprintf("sport = :%d", port))
	if strings.TrimSpace(out) != "" {
		units, _ := s.m.Run("systemctl", "list-units", "--no-legend", "--all", "ssh*")
		t.Errorf("after the cleanup, port %d still has a listener:\n%s\n%s", port, out, units)
	}
}
