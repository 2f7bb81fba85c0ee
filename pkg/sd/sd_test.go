package sd_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"spip/pkg/sd"
	"spip/pkg/test/netns"
)

// notifySocket binds a unixgram socket as systemd's notify socket; onMsg runs for each
// message, in order, on the reading goroutine.
func notifySocket(t *testing.T, onMsg func(string)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := c.ReadFromUnix(buf)
			if err != nil {
				return
			}
			onMsg(string(buf[:n]))
		}
	}()
	return path
}

func TestNotify(t *testing.T) {
	got := make(chan string, 4)
	t.Setenv("NOTIFY_SOCKET", notifySocket(t, func(m string) { got <- m }))
	if err := sd.Notify(sd.Ready, sd.Status("line one\nline two")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "READY=1\nSTATUS=line one line two" {
			t.Errorf("got %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived")
	}
	os.Unsetenv("NOTIFY_SOCKET")
	if err := sd.Notify(sd.Ready); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v, want a silent no-op", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := fmt.Sprint(os.Getpid())
	tests := []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"2000000", "", time.Second}, // WATCHDOG_PID unset: the watchdog is ours (go-systemd accepts it)
		{"2000000", self, time.Second},
		{"2000000", "1", 0}, // another process's watchdog
		{"junk", "", 0},
		{"-5", "", 0},
	}
	for _, tt := range tests {
		t.Setenv("WATCHDOG_USEC", tt.usec)
		t.Setenv("WATCHDOG_PID", tt.pid)
		if tt.usec == "" {
			os.Unsetenv("WATCHDOG_USEC")
		}
		if tt.pid == "" {
			os.Unsetenv("WATCHDOG_PID")
		}
		if got := sd.WatchdogInterval(); got != tt.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, want %v", tt.usec, tt.pid, got, tt.want)
		}
	}
}

// emptyConfig is a config file that leaves every setting at its built-in default.
func emptyConfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spip.toml")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// event is one notify message as the binary sent it, with what the test saw at that moment.
type event struct {
	text      string
	listening bool // a connection to the sensor's port succeeded right when READY=1 arrived
}

// TestServeNotify runs the real binary under a real NOTIFY_SOCKET and WATCHDOG_USEC, as
// systemd would (WATCHDOG_PID left unset: the pid isn't known before exec, and go-systemd
// accepts the watchdog without it). READY=1 comes only once the port takes connections;
// STATUS= follows the counters; WATCHDOG=1 arrives; SIGHUP gives RELOADING=1 then READY=1;
// SIGTERM gives STOPPING=1 and a clean exit.
//
// The journald sink is off: its socket path is journald's fixed one, and rather than add a
// knob to the binary for tests, the sink is tested in-process against a socket the test binds
// (pkg/sink, pkg/sink/journald) and against the real journald in the booted-container test.
func TestServeNotify(t *testing.T) {
	bin := netns.Binary(t)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var mu sync.Mutex
	var events []event
	probed := false // only the first READY=1 is probed: each probe is a recorded connection
	path := notifySocket(t, func(m string) {
		e := event{text: m}
		mu.Lock()
		first := !probed
		mu.Unlock()
		if first && strings.Contains("\n"+m+"\n", "\nREADY=1\n") {
			probed = true
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err == nil {
				e.listening = true
				c.Close()
			}
		}
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	})
	jsonPath := filepath.Join(t.TempDir(), "spip.json")
	cmd := exec.Command(bin, "serve", "--config", emptyConfig(t),
		"--listen", addr, "--journald", "off", "--json", jsonPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+path, "WATCHDOG_USEC=1000000",
		"SPIP_OUTPUT_STATUS_INTERVAL=200ms", "SPIP_SESSION_IDLE_TIMEOUT=500ms")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	var exitErr error
	done := false
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(events)
	}
	// seen reports the first message after the first n that holds a line starting with line.
	seen := func(line string, after int) (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		for i := after; i < len(events); i++ {
			for _, l := range strings.Split(events[i].text, "\n") {
				if strings.HasPrefix(l, line) {
					return i, true
				}
			}
		}
		return 0, false
	}
	wait := func(what, line string, after int) int {
		t.Helper()
		gone := -1 // iterations since spip exited: what it sent last may still be in flight
		for i := 0; i < 2000; i++ {
			if at, ok := seen(line, after); ok {
				return at
			}
			select {
			case err := <-exited:
				exitErr, gone, done = err, 0, true
			case <-time.After(10 * time.Millisecond):
				if gone >= 0 {
					if gone++; gone > 100 {
						t.Fatalf("spip exited (%v) before %s; stderr:\n%s", exitErr, what, stderr.String())
					}
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no %s; messages: %+v", what, events)
		return 0
	}

	ready := wait("READY=1", "READY=1", 0)
	mu.Lock()
	if !events[ready].listening {
		t.Errorf("READY=1 arrived before %s took connections", addr)
	}
	mu.Unlock()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("GET /notify HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Two connections: the probe made when READY=1 arrived, and this one.
	wait("STATUS= counting the connections", "STATUS=recorded 2 ", ready)
	wait("a watchdog ping", "WATCHDOG=1", ready)

	before := count()
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloading := wait("RELOADING=1 after SIGHUP", "RELOADING=1", before)
	if _, ok := seen("MONOTONIC_USEC=", reloading); !ok {
		t.Error("RELOADING=1 without MONOTONIC_USEC=")
	}
	wait("READY=1 after the reload", "READY=1", reloading+1)

	before = count()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wait("STOPPING=1 after SIGTERM", "STOPPING=1", before)
	if !done {
		select {
		case exitErr = <-exited:
		case <-time.After(30 * time.Second):
			t.Fatal("spip did not exit after SIGTERM")
		}
	}
	exited <- exitErr // for the cleanup
	if exitErr != nil {
		t.Errorf("spip exited with %v; stderr:\n%s", exitErr, stderr.String())
	}

	mu.Lock()
	for _, e := range events {
		t.Logf("notify: %q", e.text)
	}
	mu.Unlock()
	f, err := os.Open(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var conns, withPayload, events2 int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		if r["event"] == "connection" {
			conns++
			if r["payload"] == "GET /notify HTTP/1.0\r\n\r\n" {
				withPayload++
			}
		} else {
			events2++
		}
	}
	if conns != 2 || withPayload != 1 || events2 < 2 {
		t.Errorf("json file: %d connection records (%d with the payload), %d event records; want 2 (1) and started/stopping", conns, withPayload, events2)
	}
}

// TestServeBadConfig: a configuration error exits 78 with a message saying what to fix, and
// never tells systemd it is ready.
func TestServeBadConfig(t *testing.T) {
	bin := netns.Binary(t)
	var mu sync.Mutex
	var got []string
	path := notifySocket(t, func(m string) { mu.Lock(); got = append(got, m); mu.Unlock() })
	cmd := exec.Command(bin, "serve", "--config", emptyConfig(t),
		"--listen", "127.0.0.1:80000", "--journald", "off", "--json", "-")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+path, "WATCHDOG_USEC=1000000")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 78 {
		t.Fatalf("exit %v, want 78; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "listen.address") {
		t.Errorf("the message does not name the key to fix:\n%s", out)
	}
	time.Sleep(100 * time.Millisecond) // let a stray datagram, if any, be read
	mu.Lock()
	defer mu.Unlock()
	for _, m := range got {
		if strings.Contains(m, "READY=1") {
			t.Errorf("READY=1 sent by a sensor that failed to start: %q", got)
		}
	}
}
