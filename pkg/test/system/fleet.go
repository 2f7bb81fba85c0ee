package system

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// NewMachineID returns a random machine id (32 hex digits), as systemd-machine-id-setup makes.
func NewMachineID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // a v4 UUID, as systemd's own ids are
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:])
}

// Link joins two machines' networks with a veth pair: dev on each side, with addresses a and b
// (prefixes included, e.g. 203.0.113.1/30). It goes when their namespaces go.
func Link(t testing.TB, ma *Machine, devA string, a netip.Prefix, mb *Machine, devB string, b netip.Prefix) {
	t.Helper()
	steps := [][]string{
		{"ip", "link", "add", devA, "netns", ma.Net.Sensor, "type", "veth", "peer", "name", devB, "netns", mb.Net.Sensor},
		{"ip", "-n", ma.Net.Sensor, "addr", "add", a.String(), "dev", devA},
		{"ip", "-n", mb.Net.Sensor, "addr", "add", b.String(), "dev", devB},
		{"ip", "-n", ma.Net.Sensor, "link", "set", devA, "up"},
		{"ip", "-n", mb.Net.Sensor, "link", "set", devB, "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("link: %s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
}

// Reboot reboots the container the way an operator would (systemctl reboot), starts it again
// on the same root (nspawn exits when its container reboots) and waits until it is up.
func (m *Machine) Reboot(t testing.TB) {
	t.Helper()
	t.Logf("step: systemctl reboot in %s", m.Name)
	// The command may die with the container before it answers.
	_, _ = m.RunTimeout(30*time.Second, "systemctl", "reboot")
	select {
	case <-m.exited:
	case <-time.After(90 * time.Second):
		t.Fatalf("%s: nspawn still running 90s after systemctl reboot:\n%s", m.Name, m.console())
	}
	if err := m.start(); err != nil {
		t.Fatalf("boot again: %v", err)
	}
	m.waitRunning(t)
}

// RecordsFrom reads connection records with journalctl and the given selection (for example
// -D a directory of uploaded journals and SPIP_SENSOR=name) instead of the local journal.
func (m *Machine) RecordsFrom(t testing.TB, args ...string) []Rec {
	t.Helper()
	return m.records(t, append([]string{"journalctl", "-o", "json", "--all", "--no-pager"}, args...))
}

func (m *Machine) String() string { return fmt.Sprintf("%s (%s)", m.Name, m.hostname) }
