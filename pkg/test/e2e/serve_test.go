package e2e

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"spip/pkg/socket"
	"spip/pkg/test/netns"
)

// redirectRuleset is the shape DESIGN.md gives spip-redirect.service, written out here so this
// test checks the binary against the ruleset, not against spip's own renderer. The tproxy runs
// load what `spip nft` renders from tproxyConfig: its rules are spip's to get right.
const redirectRuleset = `
table inet spip {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type != local return
		tcp dport { 22 } return
		meta l4proto tcp redirect to :12345
	}
}
`

const tproxyConfig = `[listen]
address = "[::]:12345"
[capture]
mode = "tproxy"
exclude_ports = ["22"]
exclude_sshd = false
`

// bound limits every wait: a failing test ends, a passing one never depends on it.
const bound = 30 * time.Second

const sensorName = "e2e-sensor"

// kind is what a client does with its connection, and so the close reason spip must record.
type kind int

const (
	sendAndClose kind = iota // payload, then FIN: eof
	silentClose              // connect, close: eof with an empty payload
	silentHold               // connect, wait: spip closes it at the first-byte timeout
	openAtStop               // sends a little and stays open until spip stops: shutdown
	sharedSource             // like sendAndClose, from a source port an earlier connection used
)

var wantClose = map[kind]string{sendAndClose: "eof", silentClose: "eof", silentHold: "timeout", openAtStop: "shutdown", sharedSource: "eof"}

// sent is one client connection and what spip must say about it.
type sent struct {
	kind    kind
	port    uint16         // the client's source port, bound before connect
	src     netip.AddrPort // the client socket's LocalAddr
	dst     netip.AddrPort // what the client dialled
	payload []byte
	conn    net.Conn
}

// TestServeRecordsEveryConnection is issue 2's done criterion: through the nftables redirect, a
// connection from the client netns to any port but 22 of the sensor, over IPv4 and IPv6, gives
// exactly one seed-compatible JSON line with that port as destination_port, whether spip opens its
// socket itself or is handed one by socket activation; SSH still answers; SIGTERM flushes and exits 0.
// The same holds in tproxy mode, where every record's source port is also exactly the client's.
func TestServeRecordsEveryConnection(t *testing.T) {
	netns.Require(t, "nft", "ip", "systemd-socket-activate")
	bin := netns.Binary(t)
	modes := []struct {
		name        string
		capture     string   // capture.mode
		wrap        []string // the command spip runs under
		args        []string
		transparent bool // hand systemd-socket-activate a transparent listener to pass through
	}{
		{name: "self", capture: "redirect", args: []string{"--listen", "[::]:12345"}},
		// The original spip's own set-up: a hand-made REDIRECT of every port and `spip serve
		// --listen` with the default configuration (tproxy mode): the kernel's NAT entry still
		// gives each connection's true destination.
		{name: "seed", capture: "", args: []string{"--listen", "[::]:12345"}},
		// The README's systemd-socket-activate line, default configuration: the passed socket
		// is not transparent, which tproxy mode warns about and records all the same.
		{name: "act-default", capture: "", wrap: []string{"systemd-socket-activate", "-l", "[::]:12345"}},
		// systemd-socket-activate passes no LISTEN_FDNAMES unless told: spip must take the one socket anyway.
		{name: "act", capture: "redirect", wrap: []string{"systemd-socket-activate", "-l", "[::]:12345"}},
		{name: "actnamed", capture: "redirect", wrap: []string{"systemd-socket-activate", "-l", "[::]:12345", "--fdname=spip"}},
		// spip sets IP_TRANSPARENT on the socket it opens itself.
		{name: "tproxy-self", capture: "tproxy", args: []string{"--listen", "[::]:12345"}},
		// systemd-socket-activate cannot make a transparent socket, but it passes on the ones it
		// is handed (sd_listen_fds): the test makes one as PID 1 does for Transparent=yes.
		{name: "tproxy-act", capture: "tproxy", transparent: true, wrap: []string{
			"sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"`, "sh", "systemd-socket-activate", "--fdname=spip"}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			argv := append(append(append([]string{}, m.wrap...), bin, "serve", "--config", "/dev/null",
				"--journald", "off", "--sensor-name", sensorName), m.args...)
			runScenario(t, "e2e-"+m.name, m.capture, argv, len(m.wrap) > 0, m.transparent)
		})
	}
}

// TestServeWarnsOpaqueSocketInTProxyMode: a passed socket without IP_TRANSPARENT cannot take
// tproxied connections, but direct and redirected ones reach it: spip records them and says what
// to fix in a warning record (and on standard error for a person at a terminal), instead of
// exiting and recording nothing.
func TestServeWarnsOpaqueSocketInTProxyMode(t *testing.T) {
	netns.Require(t, "ip", "systemd-socket-activate")
	p := netns.NewPair(t, "e2e-opaque")
	jsonPath := filepath.Join(t.TempDir(), "records.jsonl")
	spip := startSpip(t, p.Sensor, "tproxy", []string{"systemd-socket-activate", "-l", "[::]:12345", "--fdname=spip",
		netns.Binary(t), "serve", "--config", "/dev/null", "--journald", "off", "--sensor-name", sensorName, "--json", jsonPath})
	// The first connection starts spip; it waits in the backlog meanwhile.
	c := &sent{kind: sendAndClose, dst: netip.AddrPortFrom(netns.SensorV4, 12345), payload: []byte("opaque")}
	dialRetry(t, p.Client, c, &sourcePorts{rng: rand.New(rand.NewPCG(1, 2)), used: map[uint16]bool{}})
	waitFor(t, spip, jsonPath, "the connection record", func(rs []map[string]any) bool { return countEvent(rs, "connection") == 1 })
	_ = spip.cmd.Process.Signal(syscall.SIGTERM)
	if err := spip.wait(); err != nil {
		t.Fatalf("spip with a non-transparent socket in tproxy mode: %v, want exit status 0\n%s", err, spip.out.String())
	}
	recs := readRecords(t, jsonPath)
	warned := false
	for _, r := range recs {
		msg, _ := r["message"].(string)
		if r["event"] == "warning" && strings.Contains(msg, "not transparent") && strings.Contains(msg, "Transparent=yes") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning record naming the fix (Transparent=yes): %v", recs)
	}
	if out := spip.out.String(); !strings.Contains(out, "Transparent=yes") {
		t.Errorf("standard error does not name the fix (Transparent=yes):\n%s", out)
	}
	checkRecords(t, recs, []*sent{c}, true)
}

// TestServeLostNATEntry: a connection the redirect sent to spip whose NAT entry is gone before
// spip accepts it (it waited in the backlog through a restart longer than the entry's timeout)
// reaches spip's own port with nothing to say where it was headed. Its record keeps the address
// fields and says in destination_error that the original destination is unknown, instead of
// passing the sensor's own port off as the destination; a connection with its entry is exact.
func TestServeLostNATEntry(t *testing.T) {
	netns.Require(t, "nft", "ip", "conntrack")
	p := netns.NewPair(t, "e2e-lostnat")
	nft := netns.Command(p.Sensor, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(redirectRuleset)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s", err, out)
	}
	// The listener exists before spip does, as spip.socket's does.
	var fd int
	if err := netns.In(p.Sensor, func() (err error) {
		fd, err = socket.Listen(netip.MustParseAddrPort("[::]:12345"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ln := os.NewFile(uintptr(fd), "listener")
	t.Cleanup(func() { ln.Close() })

	ports := &sourcePorts{rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3)), used: map[uint16]bool{}}
	lost := &sent{kind: openAtStop, port: ports.next(), dst: netip.AddrPortFrom(netns.SensorV4, 8080), payload: []byte("waited")}
	if err := netns.In(p.Client, lost.run); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lost.conn.Close() })
	// The connection is established and its bytes are in the socket; now its entry goes.
	if out, err := netns.Exec(p.Sensor, "conntrack", "-D", "-p", "tcp", "--orig-port-dst", "8080"); err != nil {
		t.Fatalf("conntrack -D: %v\n%s", err, out)
	}
	jsonPath := filepath.Join(t.TempDir(), "records.jsonl")
	spip := startSpip(t, p.Sensor, "redirect", []string{"sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"`, "sh",
		netns.Binary(t), "serve", "--config", "/dev/null", "--journald", "off", "--sensor-name", sensorName, "--json", jsonPath}, ln)
	fresh := &sent{kind: sendAndClose, port: ports.next(), dst: netip.AddrPortFrom(netns.SensorV4, 8081), payload: []byte("fresh")}
	if err := netns.In(p.Client, fresh.run); err != nil {
		t.Fatal(err)
	}
	waitFor(t, spip, jsonPath, "the fresh connection's record", func(rs []map[string]any) bool { return countEvent(rs, "connection") == 1 })
	_ = spip.cmd.Process.Signal(syscall.SIGTERM)
	if err := spip.wait(); err != nil {
		t.Fatalf("spip: %v\n%s", err, spip.out.String())
	}
	var got map[string]any
	var others []map[string]any
	for _, r := range readRecords(t, jsonPath) {
		if r["event"] != "connection" {
			continue
		}
		if r["payload"] == "waited" {
			got = r
		} else {
			others = append(others, r)
		}
	}
	if got == nil {
		t.Fatalf("no record of the connection whose NAT entry was gone\n%s", spip.out.String())
	}
	dst, err := addrPort(got, "destination_ip", "destination_port")
	if err != nil || dst != netip.AddrPortFrom(netns.SensorV4, 12345) {
		t.Errorf("destination %s (%v), want the address fields kept: %s", dst, err, netip.AddrPortFrom(netns.SensorV4, 12345))
	}
	if msg, _ := got["destination_error"].(string); !strings.Contains(msg, "original destination unknown") {
		t.Errorf("destination_error %q, want it to say the original destination is unknown", msg)
	}
	if len(others) != 1 {
		t.Fatalf("%d other connection records, want 1 (the fresh one)", len(others))
	}
	checkRecord(t, others[0], fresh)
}

func runScenario(t *testing.T, name, capture string, argv []string, activated, transparent bool) {
	p := netns.NewPair(t, name)
	if capture == "tproxy" {
		cfgPath := filepath.Join(t.TempDir(), "spip.toml")
		if err := os.WriteFile(cfgPath, []byte(tproxyConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := netns.Exec(p.Sensor, netns.Binary(t), "nft", "--config", cfgPath, "--load"); err != nil {
			t.Fatalf("spip nft --load: %v\n%s", err, out)
		}
	} else {
		nft := netns.Command(p.Sensor, "nft", "-f", "-")
		nft.Stdin = strings.NewReader(redirectRuleset)
		if out, err := nft.CombinedOutput(); err != nil {
			t.Fatalf("nft -f: %v\n%s", err, out)
		}
	}
	listenSSH(t, p.Sensor)

	jsonPath := filepath.Join(t.TempDir(), "records.jsonl")
	argv = append(argv, "--json", jsonPath)
	var extra []*os.File
	if transparent {
		var fd int
		if err := netns.In(p.Sensor, func() (err error) {
			if fd, err = socket.Listen(netip.MustParseAddrPort("[::]:12345")); err == nil {
				err = socket.SetTransparent(fd)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "transparent listener")
		t.Cleanup(func() { f.Close() })
		extra = append(extra, f)
	}
	spip := startSpip(t, p.Sensor, capture, argv, extra...)

	v4 := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netns.SensorV4, port) }
	v6 := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netns.SensorV6, port) }
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	srcPorts := &sourcePorts{rng: rng, used: map[uint16]bool{}}

	// A self-listening spip is ready once it says so; an activated one starts with its first
	// connection, which waits in the socket's backlog meanwhile.
	if !activated {
		waitFor(t, spip, jsonPath, "the started record", func(rs []map[string]any) bool { return countEvent(rs, "started") == 1 })
	}
	first := &sent{kind: openAtStop, dst: v4(8080), payload: []byte("partial \x00\xff")}
	dialRetry(t, p.Client, first, srcPorts)
	waitFor(t, spip, jsonPath, "the started record", func(rs []map[string]any) bool { return countEvent(rs, "started") == 1 })

	var conns []*sent
	for _, port := range randomPorts(rng, 60) {
		conns = append(conns, &sent{kind: sendAndClose, dst: v4(port), payload: payload(rng, "v4", port)})
	}
	for _, port := range randomPorts(rng, 25) {
		conns = append(conns, &sent{kind: sendAndClose, dst: v6(port), payload: payload(rng, "v6", port)})
	}
	// Edge ports, and the same port twice: the source tells the records apart.
	// 12345 is spip's own port: a real probe of it, redirected or tproxied onto itself, is no error.
	for _, port := range []uint16{1, 21, 23, 80, 443, 12344, 12345, 12346, 65535, 65535} {
		conns = append(conns, &sent{kind: sendAndClose, dst: v4(port), payload: payload(rng, "edge", port)})
		conns = append(conns, &sent{kind: sendAndClose, dst: v6(port), payload: payload(rng, "edge6", port)})
	}
	for _, port := range randomPorts(rng, 10) {
		conns = append(conns, &sent{kind: silentClose, dst: v4(port)}, &sent{kind: silentClose, dst: v6(port)})
	}
	for _, port := range randomPorts(rng, 3) {
		conns = append(conns, &sent{kind: silentHold, dst: v4(port)}, &sent{kind: silentHold, dst: v6(port)})
	}
	rng.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
	for _, c := range conns {
		c.port = srcPorts.next()
	}
	// One source port to several ports in turn, as scanners with a fixed source port do.
	for _, dst := range []func(uint16) netip.AddrPort{v4, v6} {
		port := srcPorts.next()
		for _, dport := range randomPorts(rng, 3) {
			conns = append(conns, &sent{kind: sharedSource, port: port, dst: dst(dport), payload: payload(rng, "shared", dport)})
		}
	}
	if err := netns.In(p.Client, func() error {
		for _, c := range conns {
			if err := c.run(); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			if c.conn != nil {
				c.conn.Close()
			}
		}
	})

	// Everything but the connection held open is recorded while spip runs.
	waitFor(t, spip, jsonPath, fmt.Sprintf("%d connection records", len(conns)), func(rs []map[string]any) bool {
		return countEvent(rs, "connection") >= len(conns)
	})

	// SSH is excluded from the redirect: its own listener answers, over both families.
	for _, dst := range []netip.AddrPort{v4(22), v6(22)} {
		checkSSH(t, p.Client, dst)
	}

	if err := spip.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := spip.wait(); err != nil {
		t.Fatalf("spip after SIGTERM: %v\n%s", err, spip.out.String())
	}

	all := append(conns, first)
	recs := readRecords(t, jsonPath)
	checkRecords(t, recs, all, capture == "tproxy")
	if t.Failed() {
		t.Logf("spip output:\n%s", spip.out.String())
	}
}

// run makes the connection from the current (client) namespace. It must not start goroutines:
// only this thread is in the namespace.
func (c *sent) run() error {
	local := netns.ClientV4
	if c.dst.Addr().Is6() {
		local = netns.ClientV6
	}
	d := net.Dialer{Timeout: bound, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, c.port))}
	if c.kind == sharedSource {
		// The port's previous connection may still be closing.
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.Dial("tcp", c.dst.String())
	if err != nil {
		return fmt.Errorf("dial %s: %w", c.dst, err)
	}
	c.conn = conn
	c.src = unmap(conn.LocalAddr().(*net.TCPAddr).AddrPort())
	_ = conn.SetDeadline(time.Now().Add(bound))
	if len(c.payload) > 0 {
		if _, err := conn.Write(c.payload); err != nil {
			return fmt.Errorf("write to %s: %w", c.dst, err)
		}
	}
	switch c.kind {
	case sendAndClose, silentClose, sharedSource:
		c.conn = nil
		return conn.Close()
	}
	return nil
}

// dialRetry makes c, retrying while nothing listens yet (spip or systemd-socket-activate starting).
func dialRetry(t *testing.T, ns string, c *sent, ports *sourcePorts) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		c.port = ports.next() // a refused attempt leaves a conntrack entry: never reuse its tuple
		err := netns.In(ns, c.run)
		if err == nil {
			t.Cleanup(func() {
				if c.conn != nil {
					c.conn.Close()
				}
			})
			return
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sourcePorts hands out client ports, each once per test. The client binds them because Linux
// reuses an ephemeral port for connections to different destination ports, and the redirect maps
// all of those onto one reply tuple (the sensor's :12345): NAT then rewrites the source port of
// every flow but the first, and the record would carry a port the client never used. Ports below
// the ephemeral range (32768-60999) can't clash with the SSH checks' ephemeral ones.
type sourcePorts struct {
	rng  *rand.Rand
	used map[uint16]bool
}

func (s *sourcePorts) next() uint16 {
	for {
		p := uint16(1024 + s.rng.IntN(32768-1024))
		if !s.used[p] {
			s.used[p] = true
			return p
		}
	}
}

func unmap(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }

// randomPorts returns n distinct ports, none of them 22 or 12345.
func randomPorts(rng *rand.Rand, n int) []uint16 {
	seen := map[uint16]bool{22: true, 12345: true}
	var out []uint16
	for len(out) < n {
		p := uint16(1 + rng.IntN(65535))
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// payload is unique per connection and mixes text with bytes that stress both encodings.
func payload(rng *rand.Rand, tag string, port uint16) []byte {
	b := []byte(fmt.Sprintf("%s:%d:%x:", tag, port, rng.Uint64()))
	switch rng.IntN(4) {
	case 0:
		b = append(b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	case 1:
		b = append(b, 0x16, 0x03, 0x01, 0x00, 0x00, 0xff, 0xfe, 0x80)
	case 2:
		b = append(b, "\x00\nMESSAGE_ID=0ac47f5aa9004466bb382a7164e382ab\n\"}\\"...)
	default:
		for i := 0; i < 1+rng.IntN(64); i++ {
			b = append(b, byte(rng.IntN(256)))
		}
	}
	return b
}

// listenSSH stands in for sshd on port 22 of the sensor namespace.
func listenSSH(t *testing.T, ns string) {
	t.Helper()
	var ln net.Listener
	if err := netns.In(ns, func() (err error) {
		ln, err = net.Listen("tcp", "[::]:22")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "SSH-2.0-e2e\r\n")
			c.Close()
		}
	}()
}

func checkSSH(t *testing.T, ns string, dst netip.AddrPort) {
	t.Helper()
	var banner []byte
	err := netns.In(ns, func() error {
		c, err := net.DialTimeout("tcp", dst.String(), bound)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(bound))
		banner, err = bufio.NewReader(c).ReadBytes('\n')
		return err
	})
	if err != nil || string(banner) != "SSH-2.0-e2e\r\n" {
		t.Errorf("%s is not the SSH stand-in: %q, %v", dst, banner, err)
	}
}

type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startSpip runs argv in namespace ns with spip's capture.mode set to capture (unless empty); extra become
// descriptors 3 and up.
func startSpip(t *testing.T, ns, capture string, argv []string, extra ...*os.File) *proc {
	t.Helper()
	// Short sessions keep the test quick.
	settings := []string{
		"SPIP_SESSION_FIRST_BYTE_TIMEOUT=1s",
		"SPIP_SESSION_IDLE_TIMEOUT=20s",
		"SPIP_SESSION_MAX_DURATION=60s",
		"SPIP_SESSION_SHUTDOWN_GRACE=300ms",
	}
	if capture != "" { // "" runs the default configuration's mode
		settings = append(settings, "SPIP_CAPTURE_MODE="+capture)
	}
	for i, arg := range argv {
		if arg == "systemd-socket-activate" {
			// It hands its child only TERM, PATH, USER, HOME and what -E names.
			wrapped := append([]string{}, argv[:i+1]...)
			for _, kv := range settings {
				wrapped = append(wrapped, "-E", kv)
			}
			argv = append(wrapped, argv[i+1:]...)
			break
		}
	}
	cmd := netns.Command(ns, argv...)
	cmd.ExtraFiles = extra
	// SPIP_* from the caller's environment would be errors (unknown) or change the test.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPIP_") && !strings.HasPrefix(kv, "LISTEN_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, settings...)
	p := &proc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait returns nil once spip exited with status 0.
func (p *proc) wait() error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(bound):
		return errors.New("spip did not exit within the bound after SIGTERM")
	}
}

func waitFor(t *testing.T, p *proc, path, what string, ok func([]map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		rs := readRecordsLoose(path)
		if ok(rs) {
			return
		}
		if p.exited() {
			t.Fatalf("spip exited while waiting for %s: %v\n%s", what, p.err, p.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v (%d records so far)\n%s", what, bound, len(rs), p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readRecordsLoose reads what is in the file so far, ignoring a torn last line.
func readRecordsLoose(path string) []map[string]any {
	b, _ := os.ReadFile(path)
	var out []map[string]any
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func countEvent(rs []map[string]any, event string) int {
	n := 0
	for _, r := range rs {
		if r["event"] == event {
			n++
		}
	}
	return n
}

// readRecords reads the finished file strictly: every line whole and valid, integers as integers.
func readRecords(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end with a whole line", path)
	}
	var out []map[string]any
	for i, line := range bytes.Split(b[:len(b)-1], []byte("\n")) {
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("line %d is not JSON: %v: %q", i+1, err, line)
		}
		out = append(out, m)
	}
	return out
}

// checkRecords matches records to connections; with exactPorts (tproxy) a record whose source
// port is not the client's is an error, not a limit of the redirect.
func checkRecords(t *testing.T, recs []map[string]any, conns []*sent, exactPorts bool) {
	t.Helper()
	// started comes first; stopping comes after every connection (a summary may follow it).
	if len(recs) < 2 || recs[0]["event"] != "started" || countEvent(recs, "stopping") != 1 {
		t.Errorf("want one started record first and one stopping record: %d records, first %v", len(recs), recs[0]["event"])
	}
	stopped := false
	for _, r := range recs {
		stopped = stopped || r["event"] == "stopping"
		if stopped && r["event"] == "connection" {
			t.Errorf("connection record after the stopping record: %v", r)
		}
	}
	bySrc := map[netip.AddrPort]*sent{}
	byPayload := map[string]*sent{}
	for _, c := range conns {
		if c.kind == sharedSource {
			byPayload[hex.EncodeToString(c.payload)] = c
		} else {
			bySrc[c.src] = c
		}
	}
	rewritten := 0
	seen := map[*sent]int{}
	ids := map[string]bool{}
	for _, r := range recs {
		if r["event"] != "connection" {
			continue
		}
		src, err := addrPort(r, "source_ip", "source_port")
		if err != nil {
			t.Errorf("record %v: %v", r["session_id"], err)
			continue
		}
		c := bySrc[src]
		if hx, _ := r["payload_hex"].(string); byPayload[hx] != nil {
			c = byPayload[hx]
			if src != c.src {
				// The earlier flow's conntrack entry holds the reply tuple (sensor:12345 -> this
				// source), so NAT gave this flow another source port: a limit of the redirect.
				rewritten++
				if exactPorts {
					t.Errorf("record source %s for a connection from %s: tproxy must keep the source port", src, c.src)
				}
				if src.Addr() != c.src.Addr() {
					t.Errorf("record source %s for a connection from %s", src, c.src)
				}
			}
		}
		if c == nil {
			t.Errorf("record from %s matches no connection this test made: %v", src, r)
			continue
		}
		seen[c]++
		id, _ := r["session_id"].(string)
		if len(id) != 36 || ids[id] {
			t.Errorf("session_id %q is not a fresh UUID", id)
		}
		ids[id] = true
		checkRecord(t, r, c)
	}
	var missing int
	for _, c := range conns {
		switch n := seen[c]; {
		case n == 0:
			missing++
			t.Errorf("no record for %s -> %s (%v)", c.src, c.dst, wantClose[c.kind])
		case n > 1:
			t.Errorf("%d records for %s -> %s", n, c.src, c.dst)
		}
	}
	t.Logf("%d connections made, %d recorded, %d missing; %d of %d reusing a source port recorded with a NAT-rewritten source port",
		len(conns), len(seen), missing, rewritten, len(byPayload))
}

func checkRecord(t *testing.T, r map[string]any, c *sent) {
	t.Helper()
	where := fmt.Sprintf("%s -> %s", c.src, c.dst)
	dst, err := addrPort(r, "destination_ip", "destination_port")
	if err != nil || dst != c.dst {
		t.Errorf("%s: destination %s (%v), destination_error %v", where, dst, err, r["destination_error"])
	}
	if _, ok := r["destination_error"]; ok {
		t.Errorf("%s: destination_error %v", where, r["destination_error"])
	}
	if _, ok := r["timestamp"].(json.Number); !ok {
		t.Errorf("%s: timestamp %#v is not a JSON integer", where, r["timestamp"])
	}
	if got, want := r["payload_hex"], hex.EncodeToString(c.payload); got != want {
		t.Errorf("%s: payload_hex %v, want %s", where, got, want)
	}
	if got, want := r["payload"], lossy(c.payload); got != want {
		t.Errorf("%s: payload %q, want %q", where, got, want)
	}
	if got := r["bytes_received"]; got != json.Number(fmt.Sprint(len(c.payload))) {
		t.Errorf("%s: bytes_received %v, want %d", where, got, len(c.payload))
	}
	if r["payload_truncated"] != false {
		t.Errorf("%s: payload_truncated %v", where, r["payload_truncated"])
	}
	if got, want := r["close_reason"], wantClose[c.kind]; got != want {
		t.Errorf("%s: close_reason %v, want %s", where, got, want)
	}
	if r["transport"] != "tcp" || r["sensor"] != sensorName {
		t.Errorf("%s: transport %v, sensor %v", where, r["transport"], r["sensor"])
	}
}

// lossy is b as a JSON string carries it: invalid UTF-8 bytes become U+FFFD, as encoding/json does.
func lossy(b []byte) string {
	j, _ := json.Marshal(string(b))
	var s string
	_ = json.Unmarshal(j, &s)
	return s
}

func addrPort(r map[string]any, ipKey, portKey string) (netip.AddrPort, error) {
	ipStr, ok := r[ipKey].(string)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%s = %#v, want a string", ipKey, r[ipKey])
	}
	ip, err := netip.ParseAddr(ipStr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%s: %w", ipKey, err)
	}
	if ip.Is4In6() {
		return netip.AddrPort{}, fmt.Errorf("%s %s is printed v4-mapped", ipKey, ip)
	}
	n, ok := r[portKey].(json.Number)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%s = %#v, want a JSON integer", portKey, r[portKey])
	}
	port, err := n.Int64()
	if err != nil || port < 0 || port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("%s = %s", portKey, n)
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}
