package flood

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/test/netns"
)

// raiseNoFile lets this process (and so its children) hold up to n descriptors, or as many as
// the hard limit allows when it cannot be raised (that needs CAP_SYS_RESOURCE, which some
// containers drop even for root). It returns the soft limit now in force.
func raiseNoFile(t *testing.T, n uint64) uint64 {
	t.Helper()
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Max < n && unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}) == nil {
		return n
	}
	rl.Cur = min(n, rl.Max)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	return rl.Cur
}

// freePort finds a loopback port nobody listens on.
func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// spip is a running `spip serve` child with its JSON output and sd_notify status.
type spip struct {
	t      *testing.T
	cmd    *exec.Cmd
	json   string
	port   uint16
	mu     sync.Mutex
	status string
	// When each STATUS= and WATCHDOG=1 arrived.
	statusAt, pings []time.Time
	stderr          strings.Builder // guarded by mu
	done            chan struct{}
}

type lockedWriter struct{ s *spip }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.stderr.Write(b)
}

// Stderr is what spip printed on standard error so far.
func (s *spip) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// startSpip runs the binary with the config body (TOML, [output] and [listen] are added),
// wrapped by the command prefix (for example prlimit) if any.
func startSpip(t *testing.T, config string, prefix ...string) *spip {
	t.Helper()
	return startSpipOpts(t, opts{config: config, prefix: prefix})
}

// startSpipJSON is startSpip with the JSON mirror at jsonPath.
func startSpipJSON(t *testing.T, jsonPath, config string) *spip {
	t.Helper()
	return startSpipOpts(t, opts{json: jsonPath, config: config})
}

type opts struct {
	json   string   // the JSON mirror; "" for a temporary file
	config string   // TOML
	prefix []string // a command spip runs under, such as prlimit
	env    []string // added to the environment
}

func startSpipOpts(t *testing.T, o opts) *spip {
	t.Helper()
	jsonPath, config, prefix := o.json, o.config, o.prefix
	bin := netns.Binary(t)
	dir := t.TempDir()
	if jsonPath == "" {
		jsonPath = filepath.Join(dir, "records.json")
	}
	s := &spip{t: t, json: jsonPath, port: freePort(t), done: make(chan struct{})}
	cfgPath := filepath.Join(dir, "spip.toml")
	body := fmt.Sprintf("[listen]\naddress = \"127.0.0.1:%d\"\n%s\n", s.port, config)
	if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				now := time.Now()
				s.mu.Lock()
				if st, ok := strings.CutPrefix(line, "STATUS="); ok {
					s.status = st
					s.statusAt = append(s.statusAt, now)
				}
				if line == "WATCHDOG=1" {
					s.pings = append(s.pings, now)
				}
				s.mu.Unlock()
			}
		}
	}()
	args := append(append([]string{}, prefix...), bin, "serve", "--config", cfgPath, "--json", s.json, "--journald", "off")
	s.cmd = exec.Command(args[0], args[1:]...)
	// spip refuses unknown SPIP_* variables: pass none of the test's own.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPIP_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") && !strings.HasPrefix(kv, "WATCHDOG_") {
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	s.cmd.Env = append(append(s.cmd.Env, "NOTIFY_SOCKET="+sock), o.env...)
	s.cmd.Stderr = lockedWriter{s}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		nc.Close()
		if t.Failed() {
			t.Logf("spip's standard error:\n%s", s.Stderr())
		}
	})
	s.waitFor("ready", func(st status) bool { return true })
	return s
}

type status struct {
	Recorded, Active, Overload, Limited uint64
	Line                                string
}

var (
	recordedRe = regexp.MustCompile(`recorded (\d+) `)
	activeRe   = regexp.MustCompile(`active (\d+)/`)
	overloadRe = regexp.MustCompile(`overload (\d+)`)
	limitedRe  = regexp.MustCompile(`rate-limited (\d+)`)
)

func num(re *regexp.Regexp, s string) uint64 {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

func (s *spip) Status() (status, bool) {
	s.mu.Lock()
	line := s.status
	s.mu.Unlock()
	if line == "" {
		return status{}, false
	}
	return status{num(recordedRe, line), num(activeRe, line), num(overloadRe, line), num(limitedRe, line), line}, true
}

// notifications returns when STATUS= updates and watchdog pings arrived so far.
func (s *spip) notifications() (status, pings []time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.statusAt...), append([]time.Time(nil), s.pings...)
}

// waitFor polls the STATUS= line until ok holds. The bound is generous: it only stops a test
// that would otherwise hang, it measures nothing.
func (s *spip) waitFor(what string, ok func(status) bool) status {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			s.t.Fatalf("spip exited (%v) while waiting for %s", s.cmd.ProcessState, what)
		default:
		}
		if st, have := s.Status(); have && ok(st) {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, _ := s.Status()
	s.t.Fatalf("waiting for %s: last status %q", what, st.Line)
	return status{}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *spip) stop() {
	s.t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(2 * time.Minute):
		s.t.Fatal("spip did not stop")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Errorf("spip exited with %d", code)
	}
}

// rss is the child's resident set in bytes, from /proc.
func (s *spip) rss() uint64 {
	s.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		s.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				s.t.Fatal(err)
			}
			return kb << 10
		}
	}
	s.t.Fatal("no VmRSS")
	return 0
}

// cpu is the child's user+system CPU time so far. With a prefix such as prlimit the pid is
// the prefix's until it execs spip, which it does at once.
func (s *spip) cpu() time.Duration {
	s.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		s.t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// rec is the subset of a JSON record the tests look at.
type rec struct {
	Event        string `json:"event"`
	Message      string `json:"message"`
	SourceIP     string `json:"source_ip"`
	SourcePort   int    `json:"source_port"`
	Payload      string `json:"payload"`
	Bytes        uint64 `json:"bytes_received"`
	CloseReason  string `json:"close_reason"`
	SessionID    string `json:"session_id"`
	TopSources   string `json:"top_sources"`
	Limited      uint64 `json:"ratelimited"`
	LimitedTot   uint64 `json:"ratelimited_total"`
	OverloadTot  uint64 `json:"overload_total"`
	Sink         string `json:"sink"`
	DroppedTotal uint64 `json:"dropped_total"`
}

func readRecords(t *testing.T, path string) []rec {
	t.Helper()
	out, torn := readRecordsTorn(t, path)
	if torn != 0 {
		t.Fatalf("%s: %d lines are not JSON", path, torn)
	}
	return out
}

// readRecordsTorn reads a JSON-lines file that may hold lines cut short by a failed write,
// and counts them.
func readRecordsTorn(t *testing.T, path string) (out []rec, torn int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r rec
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			torn++
			continue
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out, torn
}

// dialer opens raw non-blocking client sockets from a set of loopback source addresses, so
// tens of thousands of connections don't run out of ephemeral ports.
type dialer struct {
	t     *testing.T
	port  uint16
	srcs  []netip.Addr
	next  int
	fds   []int
	local []netip.AddrPort // every connection's source, in order (a port can come back once freed)
}

func newDialer(t *testing.T, port uint16, srcs ...netip.Addr) *dialer {
	d := &dialer{t: t, port: port, srcs: srcs}
	t.Cleanup(d.closeAll)
	return d
}

func loopbacks(first, n int) []netip.Addr {
	var out []netip.Addr
	for i := 0; i < n; i++ {
		out = append(out, netip.AddrFrom4([4]byte{127, 0, byte((first + i) >> 8), byte(first + i)}))
	}
	return out
}

// dial starts one connection from the next source address and returns its fd. The connect
// completes in the background (the sensor's backlog may be full).
func (d *dialer) dial() int {
	d.t.Helper()
	src := d.srcs[d.next%len(d.srcs)]
	d.next++
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		d.t.Fatalf("socket after %d connections: %v", len(d.fds), err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
		unix.Close(fd)
		d.t.Fatalf("bind %s: %v", src, err)
	}
	err = unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(d.port)})
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		d.t.Fatalf("connect: %v", err)
	}
	d.fds = append(d.fds, fd)
	if sa, err := unix.Getsockname(fd); err == nil {
		a := sa.(*unix.SockaddrInet4)
		d.local = append(d.local, netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)))
	}
	return fd
}

// send writes b once the connection is up (waiting for it to connect, bounded).
func (d *dialer) send(fd int, b []byte) {
	d.t.Helper()
	for i := 0; i < 1000; i++ {
		_, err := unix.Write(fd, b)
		if err == nil {
			return
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ENOTCONN) {
			d.t.Fatalf("write: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.t.Fatal("connection never came up")
}

// established waits (bounded) for a connect to finish and reports whether it succeeded: a
// connection closed before it is up never reaches the sensor, and must not be counted as sent.
func (d *dialer) established(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for i := 0; i < 100; i++ {
		n, err := unix.Poll(pfd, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false
		}
		if n > 0 {
			soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			return err == nil && soerr == 0
		}
	}
	return false
}

func (d *dialer) closeAll() {
	for _, fd := range d.fds {
		unix.Close(fd)
	}
	d.fds = nil
}

func writeString(fd int, s string) (int, error) { return unix.Write(fd, []byte(s)) }
