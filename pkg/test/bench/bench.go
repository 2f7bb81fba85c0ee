// Package bench runs spip and a reference sensor behind the real nftables redirect in network namespaces and measures them.
package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/host/nftrules"
	"spip/pkg/socket"
	"spip/pkg/test/netns"
)

// Port is where the redirect sends every connection in the sensor namespace.
const Port = 12345

// CPUs: the sensor and the load generator each get a core of their own, so neither steals the
// other's time and the sensor's CPU seconds are its own.
const (
	SensorCPU  = "0"
	LoadgenCPU = "1"
)

// Ruleset is the redirect of the sensor namespace: the shape spip-redirect.service loads (only
// the sensor interface, only local addresses, SSH excluded), in a table of its own.
func Ruleset(iface string, port int) string {
	return fmt.Sprintf(`table inet spipbench {
	chain prerouting {
		type nat hook prerouting priority dstnat + 10; policy accept;
		iifname %q fib daddr type local tcp dport != 22 redirect to :%d
	}
}
`, iface, port)
}

// Binaries are the programs a run needs, built once.
type Binaries struct {
	Spip, Ceiling, Loadgen string
}

// Build compiles spip, the ceiling and the load generator into dir; SPIP_BENCH_SPIP names a
// spip binary to use instead of building one.
func Build(dir string) (Binaries, error) {
	b := Binaries{
		Spip:    filepath.Join(dir, "spip"),
		Ceiling: filepath.Join(dir, "spip-ceiling"),
		Loadgen: filepath.Join(dir, "spip-loadgen"),
	}
	pkgs := map[string]string{"./cmd/spip": b.Spip, "./cmd/spip-ceiling": b.Ceiling, "./cmd/spip-loadgen": b.Loadgen}
	if path := os.Getenv("SPIP_BENCH_SPIP"); path != "" {
		// Measure a given spip binary (an older build, for a comparison) instead of the tree's.
		b.Spip = path
		delete(pkgs, "./cmd/spip")
	}
	for pkg, out := range pkgs {
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir = netns.RepoRoot()
		if o, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %w\n%s", pkg, err, o)
		}
	}
	return b, nil
}

// System is one sensor under test: how to start it writing JSON lines to a file.
type System struct {
	Name string
	Args func(bin Binaries, dir, jsonPath string) []string
	// Listener, when set, is passed to the sensor as systemd passes spip.socket's (LISTEN_FDS,
	// name "spip") instead of the sensor opening its own.
	Listener *os.File
}

// CaptureConfig is the spip.toml of a sensor behind the ruleset `spip nft` renders for mode:
// spip on Port, port 22 excluded (the namespaces run no sshd, so none is looked for), room for
// every connection of a burst; session adds [session] keys ("key = value" lines).
func CaptureConfig(mode, session string) string {
	return fmt.Sprintf("[listen]\naddress = \"[::]:%d\"\n[capture]\nmode = %q\nexclude_ports = [\"22\"]\nexclude_sshd = false\n"+
		"[session]\nmax_sessions = 65536\n%s", Port, mode, session)
}

// LoadCapture loads into namespace ns the table that `spip nft` (the binary spip) renders from
// the configuration file cfg, as spip-redirect.service does on a host.
func LoadCapture(spip, ns, cfg string) error {
	cmd := netns.Command(ns, spip, "nft", "--config", cfg, "--load")
	cmd.Env = spipEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("spip nft --load: %w\n%s", err, out)
	}
	return nil
}

// spipEnv is the environment without SPIP_ variables: spip refuses those it does not know, and
// the bench's own settings are SPIP_BENCH_* and SPIP_AB*.
func spipEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPIP_") {
			env = append(env, kv)
		}
	}
	return env
}

// TransparentListener opens in namespace ns the listener spip.socket opens: dual stack on Port,
// IP_TRANSPARENT (Transparent=yes) and spip's mark (Mark=), which the tproxy table's notrack
// rules match. The caller closes it.
func TransparentListener(ns string) (*os.File, error) {
	var fd int
	err := netns.In(ns, func() (err error) {
		if fd, err = socket.Listen(netip.AddrPortFrom(netip.IPv6Unspecified(), Port)); err != nil {
			return err
		}
		if err = socket.SetTransparent(fd); err == nil {
			err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, nftrules.Mark)
		}
		if err != nil {
			unix.Close(fd)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "spip.socket"), nil
}

// Spip runs `spip serve` with the JSON sink only, its sessions allowed to idle long enough for
// the idle experiment.
var Spip = System{Name: "spip", Args: func(bin Binaries, dir, jsonPath string) []string {
	cfg := filepath.Join(dir, "spip.toml")
	_ = os.WriteFile(cfg, []byte("[capture]\nmode = \"redirect\"\n[session]\nfirst_byte_timeout = \"120s\"\nmax_sessions = 65536\n"), 0o644)
	return []string{bin.Spip, "serve", "--config", cfg, "--listen", fmt.Sprintf("[::]:%d", Port), "--json", jsonPath, "--journald", "off"}
}}

// Ceiling is the naive reference sensor.
var Ceiling = System{Name: "ceiling", Args: func(bin Binaries, dir, jsonPath string) []string {
	return []string{bin.Ceiling, "-listen", fmt.Sprintf("[::]:%d", Port), "-json", jsonPath, "-timeout", "120s"}
}}

// Proc is a running sensor.
type Proc struct {
	Sys  System
	JSON string
	cmd  *exec.Cmd
	ns   string
	done chan error
	stop sync.Once
}

// Start runs sys in namespace ns on SensorCPU and waits until it listens.
func Start(sys System, bin Binaries, ns, dir string) (*Proc, error) {
	jsonPath := filepath.Join(dir, sys.Name+".jsonl")
	if err := os.WriteFile(jsonPath, nil, 0o644); err != nil {
		return nil, err
	}
	argv := sys.Args(bin, dir, jsonPath)
	args := append([]string{"taskset", "-c", SensorCPU}, argv...)
	if sys.Listener != nil {
		// LISTEN_PID must be the sensor's pid: the shell's, which ip netns exec, the shell and
		// taskset all keep by exec'ing the next.
		args = append([]string{"sh", "-c", `LISTEN_PID=$$ exec "$@"`, "sh"}, args...)
	}
	cmd := netns.Command(ns, args...)
	// The sensor dies with the harness, also when the harness is killed (ip netns exec and
	// taskset exec, so the signal setting reaches the sensor).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = spipEnv()
	logf, err := os.Create(filepath.Join(dir, sys.Name+".log"))
	if err != nil {
		return nil, err
	}
	if sys.Listener != nil {
		cmd.ExtraFiles = []*os.File{sys.Listener}
		cmd.Env = append(cmd.Env, "LISTEN_FDS=1", "LISTEN_FDNAMES=spip")
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &Proc{Sys: sys, JSON: jsonPath, cmd: cmd, ns: ns, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	ready := func() bool {
		out, _ := netns.Exec(ns, "ss", "-Hltn", fmt.Sprintf("sport = :%d", Port))
		return len(bytes.TrimSpace(out)) > 0
	}
	if sys.Listener != nil {
		// The passed socket listens before the sensor runs: it is ready once it has written the
		// event it writes just before READY=1.
		ready = func() bool {
			b, _ := os.ReadFile(jsonPath)
			return bytes.Contains(b, []byte(`"started"`))
		}
	}
	for i := 0; ; i++ {
		if ready() {
			break
		}
		select {
		case err := <-p.done:
			log, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("%s exited: %v: %s", sys.Name, err, log)
		case <-time.After(50 * time.Millisecond):
		}
		if i > 200 {
			p.Stop()
			return nil, fmt.Errorf("%s: not listening after 10s", sys.Name)
		}
	}
	// ip netns exec and taskset exec the sensor: the pid is the sensor's own.
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
	if want := filepath.Base(argv[0]); !strings.HasPrefix(want, strings.TrimSpace(string(comm))) {
		p.Stop()
		return nil, fmt.Errorf("pid %d is %q, not %s", cmd.Process.Pid, comm, want)
	}
	return p, nil
}

// Pid is the sensor process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stop ends the sensor with SIGTERM and waits for it (SIGKILL after 10 s).
func (p *Proc) Stop() {
	p.stop.Do(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 100

// CPUSeconds is the process's user and system time, all threads, from /proc/PID/stat.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it are space-separated.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return float64(ut+st) / clockTick, nil
}

// RSS is the process's resident set in bytes, from /proc/PID/status.
func RSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// Result is what spip-loadgen reports (cmd/spip-loadgen's Result).
type Result struct {
	Mode          string  `json:"mode"`
	TargetRate    float64 `json:"target_rate"`
	Attempted     int     `json:"attempted"`
	Connected     int     `json:"connected"`
	ConnectFailed int     `json:"connect_failed"`
	SendSeconds   float64 `json:"send_seconds"`
	OfferedRate   float64 `json:"offered_rate"`
	Recorded      int     `json:"recorded"`
	Lost          int     `json:"lost"`
	Duplicated    int     `json:"duplicated"`
	WrongPort     int     `json:"wrong_port"`
	// WrongSourcePort: records whose source port NAT rewrote (see cmd/spip-loadgen).
	WrongSourcePort int     `json:"wrong_source_port"`
	WaitSeconds     float64 `json:"wait_seconds"`
	FirstError      string  `json:"first_error"`
	GenCPU          float64 `json:"gen_cpu_seconds"`

	CPU float64 `json:"cpu_seconds"` // the sensor's, over the run (filled in by Load)
	// ListenDrops counts SYNs and handshakes the sensor namespace's kernel dropped because the
	// sensor did not accept fast enough (TcpExt ListenDrops). The generator's TCP retries them,
	// so they show as delay; a scanner that does not retry would have lost them.
	ListenDrops uint64 `json:"listen_drops"`
}

// ListenDrops reads TcpExt ListenDrops of namespace ns.
func ListenDrops(ns string) (uint64, error) {
	out, err := netns.Exec(ns, "cat", "/proc/net/netstat")
	if err != nil {
		return 0, err
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		rest, ok := strings.CutPrefix(line, "TcpExt:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "ListenDrops" && i < len(f) {
				return strconv.ParseUint(f[i], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s: no TcpExt ListenDrops in /proc/net/netstat", ns)
}

// Clean is true when every attempted connection was made and recorded once, at its port, and
// the sensor's kernel dropped no SYN for want of an accept.
func (r Result) Clean() bool {
	return r.ConnectFailed == 0 && r.Lost == 0 && r.Duplicated == 0 && r.WrongPort == 0 && r.Recorded == r.Attempted && r.ListenDrops == 0
}

// CPUPer10k is the sensor's CPU seconds per 10,000 recorded connections.
func (r Result) CPUPer10k() float64 {
	if r.Recorded == 0 {
		return 0
	}
	return r.CPU / float64(r.Recorded) * 10000
}

// Load runs the load generator in namespace ns on LoadgenCPU against p, with conntrack of the
// sensor namespace flushed first, and returns its report with the sensor's CPU time.
func Load(bin Binaries, clientNS, sensorNS string, p *Proc, args ...string) (Result, error) {
	var r Result
	if out, err := netns.Exec(sensorNS, "conntrack", "-F"); err != nil && !bytes.Contains(out, []byte("0 flow entries")) {
		return r, err
	}
	drops0, err := ListenDrops(sensorNS)
	if err != nil {
		return r, err
	}
	cpu0, err := CPUSeconds(p.Pid())
	if err != nil {
		return r, err
	}
	full := append([]string{"taskset", "-c", LoadgenCPU, bin.Loadgen, "-records", p.JSON}, args...)
	cmd := netns.Command(clientNS, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("spip-loadgen %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	cpu1, err := CPUSeconds(p.Pid())
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return r, fmt.Errorf("spip-loadgen output %q: %w", stdout.String(), err)
	}
	r.CPU = cpu1 - cpu0
	drops1, err := ListenDrops(sensorNS)
	if err != nil {
		return r, err
	}
	r.ListenDrops = drops1 - drops0
	return r, nil
}

// Idle holds n idle connections open against p and returns the sensor's RSS growth per
// connection and how many connected.
func Idle(bin Binaries, clientNS, sensorNS string, p *Proc, n int) (perConn float64, connected int, err error) {
	if out, err := netns.Exec(sensorNS, "conntrack", "-F"); err != nil && !bytes.Contains(out, []byte("0 flow entries")) {
		return 0, 0, err
	}
	time.Sleep(500 * time.Millisecond)
	base, err := RSS(p.Pid())
	if err != nil {
		return 0, 0, err
	}
	cmd := netns.Command(clientNS, "taskset", "-c", LoadgenCPU, bin.Loadgen, "-idle", strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, 0, err
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		return 0, 0, fmt.Errorf("spip-loadgen -idle: %q %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	connected, _ = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "ready ")))
	// Let the sensor accept the last of them before looking.
	time.Sleep(time.Second)
	held, err := RSS(p.Pid())
	if err != nil {
		return 0, 0, err
	}
	if connected == 0 {
		return 0, 0, fmt.Errorf("no idle connection was made")
	}
	return float64(held-base) / float64(connected), connected, nil
}
