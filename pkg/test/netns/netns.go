// Package netns builds throwaway network namespaces joined by veth for tests that send real traffic.
package netns

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace these tests make, so a run can clear what a killed
// run left behind.
const Prefix = "spiptest-"

// Addresses inside the test namespaces: documentation ranges, never routed anywhere.
var (
	ClientV4 = netip.MustParseAddr("198.51.100.1")
	SensorV4 = netip.MustParseAddr("198.51.100.2")
	ClientV6 = netip.MustParseAddr("fd00:5be::1")
	SensorV6 = netip.MustParseAddr("fd00:5be::2")
)

// Require fails the test when it cannot run as root with the tools it names, in CI, and skips it
// elsewhere: CI must never pass by skipping.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	require(t, missing, tools)
}

// RequireTools is Require for tests that need the tools but not root.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	require(t, nil, tools)
}

func require(t testing.TB, missing, tools []string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ")
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI must run this test; see .ci/run)", msg)
	}
	t.Skip(msg + " (set up as .ci/run does, or run as root)")
}

// Pair is a client namespace and a sensor namespace joined by a veth pair, with IPv4 and IPv6
// addresses: the client is ClientV4/ClientV6 on "c0", the sensor SensorV4/SensorV6 on "s0".
type Pair struct {
	Client, Sensor string
}

var cleanOnce sync.Once

// NewPair makes a pair named after name and removes it when the test ends, pass or fail.
func NewPair(t testing.TB, name string) *Pair {
	t.Helper()
	Require(t, "ip")
	cleanOnce.Do(func() { CleanStale() })
	// The pid in the name tells CleanStale in a concurrent test process (go test ./... runs
	// packages in parallel) that this pair is alive.
	base := fmt.Sprintf("%s%s-%d", Prefix, name, os.Getpid())
	p := &Pair{Client: base + "-c", Sensor: base + "-s"}
	for _, ns := range []string{p.Client, p.Sensor} {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	t.Cleanup(func() { p.Close() })
	steps := [][]string{
		{"ip", "netns", "add", p.Client},
		{"ip", "netns", "add", p.Sensor},
		{"ip", "link", "add", "c0", "netns", p.Client, "type", "veth", "peer", "name", "s0", "netns", p.Sensor},
	}
	for _, ns := range []string{p.Client, p.Sensor} {
		steps = append(steps,
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
			[]string{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"},
		)
	}
	steps = append(steps,
		[]string{"ip", "-n", p.Client, "addr", "add", ClientV4.String() + "/24", "dev", "c0"},
		[]string{"ip", "-n", p.Client, "addr", "add", ClientV6.String() + "/64", "dev", "c0", "nodad"},
		[]string{"ip", "-n", p.Sensor, "addr", "add", SensorV4.String() + "/24", "dev", "s0"},
		[]string{"ip", "-n", p.Sensor, "addr", "add", SensorV6.String() + "/64", "dev", "s0", "nodad"},
		[]string{"ip", "-n", p.Client, "link", "set", "c0", "up"},
		[]string{"ip", "-n", p.Sensor, "link", "set", "s0", "up"},
	)
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	return p
}

// Close removes both namespaces (and with them the veth pair and any nftables tables in them).
func (p *Pair) Close() {
	for _, ns := range []string{p.Client, p.Sensor} {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

// CleanStale removes namespaces a killed test run left behind: those whose name carries the pid
// of a process that is gone, or no pid at all. Namespaces of live test processes stay.
func CleanStale() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), Prefix) && !ownerAlive(e.Name()) {
			_ = exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

// ownerAlive reports whether the name ends in -PID (before a -c or -s) of a running process.
func ownerAlive(name string) bool {
	name = strings.TrimSuffix(strings.TrimSuffix(name, "-c"), "-s")
	pid, err := strconv.Atoi(name[strings.LastIndexByte(name, '-')+1:])
	if err != nil || pid <= 0 {
		return false
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// Exec runs a command inside namespace ns and returns its combined output.
func Exec(ns string, args ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("ip netns exec %s %s: %w: %s", ns, strings.Join(args, " "), err, b.String())
	}
	return b.Bytes(), err
}

// Command returns a command that runs inside namespace ns (start it yourself).
func Command(ns string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
}

// In runs fn on an OS thread that has entered namespace ns: sockets fn creates live in ns and
// keep working from any goroutine afterwards.
func In(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked: if restoring its namespace failed it must die with the goroutine.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
