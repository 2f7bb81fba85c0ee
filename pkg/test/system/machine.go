package system

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// Machine is a booted container: a copy of the rootfs running systemd in the sensor namespace of
// a netns.Pair. The client namespace reaches it at netns.SensorV4 / SensorV6.
type Machine struct {
	Name string      // the nspawn machine name, netns.Prefix + "sys-" + our pid
	Dir  string      // the host directory holding the copy and the console log
	Root string      // the container's root directory, as the host sees it
	Net  *netns.Pair // Net.Client sends the traffic; Net.Sensor is the container's network
	pid  int         // the container's systemd, as the host sees it

	hostname string

	nspawn  *os.Process
	exited  chan struct{} // closed when nspawn exits; a new one for each start
	signals chan os.Signal
	once    sync.Once
}

// Boot starts a throwaway container and waits until its systemd is up. Everything it creates is
// removed when the test ends, passes or fails, and when the test process is interrupted.
func Boot(t testing.TB) *Machine {
	t.Helper()
	return BootWith(t, BootOptions{})
}

// BootOptions tells BootWith how one machine of several differs from the others.
type BootOptions struct {
	// Name is added to the machine's and its namespaces' names; machines booted by one test
	// process need distinct names. Empty for the one shared container.
	Name string
	// Hostname is the container's host name; empty keeps the machine name nspawn gives it.
	Hostname string
	// MachineID is written to the copy's /etc/machine-id; empty leaves the rootfs's (nspawn
	// then makes one up).
	MachineID string
}

// BootWith is Boot for a machine among several, each with its own name, namespaces, host name
// and machine id.
func BootWith(t testing.TB, o BootOptions) *Machine {
	t.Helper()
	netns.Require(t, "systemd-nspawn", "debootstrap", "nft", "ip", "nsenter", "dpkg-buildpackage")
	rootfs := Rootfs(t)
	cleanStale(t)

	m := &Machine{Name: fmt.Sprintf("%ssys-%d", netns.Prefix, os.Getpid()), hostname: o.Hostname}
	pair := "sys"
	if o.Name != "" {
		m.Name += "-" + o.Name
		pair += o.Name
	}
	m.Net = netns.NewPair(t, pair)
	dir, err := os.MkdirTemp("", m.Name+"-")
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	m.Dir, m.Root = dir, filepath.Join(dir, "root")
	t.Cleanup(m.Close)
	stopOnSignal(m)

	t.Logf("step: copy %s to %s", rootfs, m.Root)
	if out, err := exec.Command("cp", "-a", "--reflink=auto", rootfs, m.Root).CombinedOutput(); err != nil {
		t.Fatalf("copy rootfs: %v\n%s", err, out)
	}
	// The rootfs's openssh-server enabled ssh.service when it was installed; a scenario that
	// wants sshd enables it itself, on the port it chooses.
	if out, err := exec.Command("systemctl", "--root="+m.Root, "disable", "ssh.service", "ssh.socket").CombinedOutput(); err != nil {
		t.Fatalf("disable sshd in the copy: %v\n%s", err, out)
	}
	if o.MachineID != "" {
		m.WriteFile(t, "/etc/machine-id", []byte(o.MachineID+"\n"), 0o444)
	}
	if o.Hostname != "" {
		m.WriteFile(t, "/etc/hostname", []byte(o.Hostname+"\n"), 0o644)
	}

	t.Logf("step: boot %s in netns %s", m.Name, m.Net.Sensor)
	if err := m.start(); err != nil {
		t.Fatalf("boot: %v", err)
	}
	m.waitRunning(t)
	return m
}

// start runs nspawn from a goroutine that keeps its OS thread: the parent-death signal is tied
// to the thread that forked, and it must fire only when the test process dies.
func (m *Machine) start() error {
	// Appended to: a rebooted machine's console log keeps the first boot's.
	console, err := os.OpenFile(filepath.Join(m.Dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	m.exited = exited
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer console.Close()
		args := []string{"--boot", "--register=no", "--keep-unit",
			"--network-namespace-path=/run/netns/" + m.Net.Sensor,
			// Joining an existing netns drops CAP_NET_ADMIN from the bounding set; the redirect unit's nft needs it.
			"--capability=CAP_NET_ADMIN",
			"--console=read-only", "-D", m.Root, "--machine=" + m.Name}
		if m.hostname != "" {
			args = append(args, "--hostname="+m.hostname)
		}
		cmd := exec.Command("systemd-nspawn", args...)
		cmd.Stdout, cmd.Stderr = console, console
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("systemd-nspawn: %w", err)
			close(exited)
			return
		}
		m.nspawn = cmd.Process
		started <- nil
		_ = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return err
	}
	// The container's PID 1 is the nspawn descendant named systemd.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("systemd-nspawn exited:\n%s", m.console())
		default:
		}
		if pid := findDescendant(m.nspawn.Pid, "systemd"); pid > 0 {
			m.pid = pid
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no systemd under nspawn pid %d after 30s:\n%s", m.nspawn.Pid, m.console())
}

// waitRunning waits for `systemctl is-system-running` to say running or degraded.
func (m *Machine) waitRunning(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	state := ""
	for time.Now().Before(deadline) {
		out, _ := m.Run("systemctl", "is-system-running")
		state = strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			t.Logf("step: container is %s (systemd pid %d on the host)", state, m.pid)
			if state == "degraded" {
				failed, _ := m.Run("systemctl", "--failed", "--no-legend")
				t.Logf("failed units: %s", failed)
			}
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("container not up after 90s, state %q; console:\n%s", state, m.console())
}

// Run runs a command inside the container and returns its combined output.
func (m *Machine) Run(args ...string) (string, error) {
	return m.RunTimeout(2*time.Minute, args...)
}

// RunTimeout is Run with a deadline other than two minutes.
func (m *Machine) RunTimeout(d time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(m.pid), "-a"}, args...)...)
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "TERM=dumb", "SYSTEMD_PAGER=cat", "SYSTEMD_COLORS=0",
		"DEBIAN_FRONTEND=noninteractive",
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return string(out), err
}

// Exec runs a command inside the container and fails the test, with its output, when it fails.
func (m *Machine) Exec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := m.Run(args...)
	if err != nil {
		t.Fatalf("in container: %v\n%s", err, out)
	}
	return out
}

// WriteFile writes a file into the container (through its root directory on the host).
func (m *Machine) WriteFile(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	p := filepath.Join(m.Root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, perm); err != nil {
		t.Fatal(err)
	}
}

// RemoveFile removes a file from the container.
func (m *Machine) RemoveFile(t testing.TB, path string) {
	t.Helper()
	if err := os.Remove(filepath.Join(m.Root, path)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// Close powers the container off (SIGTERM to nspawn), kills what is left and removes the copy.
func (m *Machine) Close() {
	m.once.Do(func() {
		if m.signals != nil {
			signal.Stop(m.signals)
		}
		if m.nspawn != nil {
			_ = m.nspawn.Signal(syscall.SIGTERM)
			select {
			case <-m.exited:
			case <-time.After(30 * time.Second):
				_ = m.nspawn.Kill()
				if m.pid > 0 {
					// Killing a PID namespace's init kills everything in it.
					_ = syscall.Kill(m.pid, syscall.SIGKILL)
				}
				<-m.exited
			}
		}
		if m.Dir != "" {
			_ = os.RemoveAll(m.Dir)
		}
	})
}

func (m *Machine) console() string {
	b, _ := os.ReadFile(filepath.Join(m.Dir, "console.log"))
	return tail(b, 30)
}

// stopOnSignal tears the machine and its namespaces down when the test process is interrupted:
// t.Cleanup does not run on SIGINT.
func stopOnSignal(m *Machine) {
	m.signals = make(chan os.Signal, 1)
	signal.Notify(m.signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-m.signals
		fmt.Fprintf(os.Stderr, "systest: %v: stopping %s\n", sig, m.Name)
		m.Close()
		m.Net.Close()
		os.Exit(1)
	}()
}

// findDescendant returns the pid of the first process under root (breadth first) named comm.
func findDescendant(root int, comm string) int {
	children := map[int][]int{}
	names := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// stat is "pid (comm) state ppid ...", and comm may hold spaces and parentheses.
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
		names[pid] = s[open+1 : end]
	}
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if names[c] == comm {
				return c
			}
			queue = append(queue, c)
		}
	}
	return 0
}

// cleanStale stops containers and removes copies that a killed run left behind. A run's
// resources carry its pid; only those whose run is gone are touched, never a live run's.
func cleanStale(t testing.TB) {
	prefix := netns.Prefix + "sys-"
	alive := func(name string) bool {
		rest := strings.TrimPrefix(name, prefix)
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil {
			return true // not ours: leave it alone
		}
		_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
		return err == nil
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if filepath.Base(args[0]) != "systemd-nspawn" {
			continue
		}
		for _, a := range args {
			name, ok := strings.CutPrefix(a, "--machine="+prefix)
			if ok && !alive(prefix+name) {
				t.Logf("step: stopping stale container %s%s (nspawn pid %d)", prefix, name, pid)
				if inner := findDescendant(pid, "systemd"); inner > 0 {
					_ = syscall.Kill(inner, syscall.SIGKILL)
				}
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, d := range dirs {
		if !alive(filepath.Base(d)) {
			t.Logf("step: removing stale copy %s", d)
			_ = os.RemoveAll(d)
		}
	}
}
