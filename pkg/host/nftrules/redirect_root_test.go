package nftrules_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/host/nftrules"
	"spip/pkg/record"
	"spip/pkg/sensor"
	"spip/pkg/socket"
	"spip/pkg/test/netns"
)

// bannerEnv turns the test binary into a tiny server: it listens on the address in the
// variable and writes "<name>\n" to every connection. Copied to a file named sshd it is a
// process whose comm is "sshd", which is all sshd detection looks at.
const bannerEnv = "SPIP_TEST_BANNER_LISTEN"

func TestMain(m *testing.M) {
	if addr := os.Getenv(bannerEnv); addr != "" {
		if err := bannerServer(addr, os.Getenv("SPIP_TEST_BANNER")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func bannerServer(addr, banner string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		fmt.Fprintln(c, banner)
		c.Close()
	}
}

// serveBanner listens in namespace ns on addr and answers every connection with banner.
func serveBanner(t *testing.T, ns, addr, banner string) {
	t.Helper()
	var ln net.Listener
	if err := netns.In(ns, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, banner)
			c.Close()
		}
	}()
}

// startFakeSSHD runs a copy of this test binary named sshd in ns, listening on port.
func startFakeSSHD(t *testing.T, ns string, port int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "sshd")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := netns.Command(ns, bin)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=[::]:%d", bannerEnv, port), fmt.Sprintf("SPIP_TEST_BANNER=sshd-%d", port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("fake sshd: %q, %v", line, err)
	}
}

// dial connects from namespace ns.
func dial(t *testing.T, ns string, to netip.AddrPort) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	err := netns.In(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", to.String(), 5*time.Second)
		return err
	})
	return c, err
}

// banner connects and returns the first line the server sends ("" when it sends none).
func banner(t *testing.T, ns string, to netip.AddrPort) string {
	t.Helper()
	c, err := dial(t, ns, to)
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// records collects the in-process sensor's connection records by payload.
type records struct {
	mu sync.Mutex
	by map[string]record.Record
}

func (r *records) wait(t *testing.T, payload string) (record.Record, bool) {
	t.Helper()
	for i := 0; i < 100; i++ { // bounded: about 10 s
		r.mu.Lock()
		rec, ok := r.by[payload]
		r.mu.Unlock()
		if ok {
			return rec, true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return record.Record{}, false
}

// startSensor runs spip's event loop on a dual-stack socket on port in namespace ns. With
// tproxy the socket is made transparent, as spip.socket's Transparent=yes does.
func startSensor(t *testing.T, ns string, port uint16, tproxy bool) *records {
	t.Helper()
	return startSensorMark(t, ns, port, tproxy, tproxy)
}

// startSensorMark is startSensor with the listener's SO_MARK chosen: spip.socket sets it (Mark=),
// a spip.socket started by an older package does not.
func startSensorMark(t *testing.T, ns string, port uint16, tproxy, mark bool) *records {
	t.Helper()
	var fd int
	if err := netns.In(ns, func() (err error) {
		fd, err = socket.Listen(netip.AddrPortFrom(netip.IPv6Unspecified(), port))
		if err == nil && tproxy {
			err = setTransparent(fd)
		}
		if err == nil && mark {
			err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, nftrules.Mark)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	recs := &records{by: map[string]record.Record{}}
	s := sensor.New(sensor.Config{
		PayloadCap: 4096, FirstByteTimeout: 5 * time.Second, IdleTimeout: 2 * time.Second,
		MaxDuration: 10 * time.Second, MaxSessions: 64, ShutdownGrace: time.Second, CloseWithReset: true,
		RedirectMode: !tproxy,
	}, fd, func(r *record.Record) {
		if r.Kind == record.KindConnection {
			recs.mu.Lock()
			recs.by[string(r.Payload)] = *r
			recs.mu.Unlock()
		}
	}, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = closeFD(fd)
	})
	return recs
}

func closeFD(fd int) error { return os.NewFile(uintptr(fd), "listener").Close() }

// spip runs the spip binary inside namespace ns.
func spip(t *testing.T, ns string, args ...string) (string, error) {
	t.Helper()
	out, err := netns.Exec(ns, append([]string{netns.Binary(t)}, args...)...)
	return string(out), err
}

const testConfig = `[listen]
address = "[::]:12345"
[capture]
mode = "redirect"
exclude_ports = ["22", "5000-5010"]
exclude_sshd = true
`

// TestRedirectInNetns loads what `spip nft` renders in a sensor namespace and proves what the
// ruleset promises: captured ports reach spip with their original destination, excluded ports
// and sshd's (also on 2222) reach their real listeners, loopback is left alone, a Docker-style
// DNAT keeps working, and deleting the table restores everything.
func TestRedirectInNetns(t *testing.T) {
	netns.Require(t, "nft", "ip")
	p := netns.NewPair(t, "nft")
	ctr := fakeDockerContainer(t, p)

	cfgPath := filepath.Join(t.TempDir(), "spip.toml")
	if err := os.WriteFile(cfgPath, []byte(testConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	recs := startSensor(t, p.Sensor, 12345, false)
	for _, port := range []int{22, 5001, 8080} {
		serveBanner(t, p.Sensor, fmt.Sprintf("[::]:%d", port), fmt.Sprintf("real-%d", port))
	}
	startFakeSSHD(t, p.Sensor, 2222)
	serveBanner(t, ctr, "198.51.100.130:80", "container-80")

	rendered, err := spip(t, p.Sensor, "nft", "--config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rendered, "elements = { 22, 2222, 5000-5010 }") || !strings.Contains(rendered, "# sshd listens on: 2222") {
		t.Fatalf("spip nft in the sensor namespace did not find sshd on 2222:\n%s", rendered)
	}
	if out, err := spip(t, p.Sensor, "nft", "--config", cfgPath, "--load"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Loading twice replaces the table in one transaction.
	if out, err := spip(t, p.Sensor, "nft", "--config", cfgPath, "--load"); err != nil {
		t.Fatalf("second load: %v\n%s", err, out)
	}
	listed, err := netns.Exec(p.Sensor, "nft", "list", "table", nftrules.Family, nftrules.Table)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(listed), "chain prerouting"); n != 1 {
		t.Fatalf("%d prerouting chains after two loads:\n%s", n, listed)
	}

	for _, dst := range []netip.Addr{netns.SensorV4, netns.SensorV6} {
		at := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(dst, port) }
		// Excluded: the real listeners answer.
		for port, want := range map[uint16]string{22: "real-22", 2222: "sshd-2222", 5001: "real-5001"} {
			if got := banner(t, p.Client, at(port)); got != want {
				t.Errorf("%s: got %q, want the real listener's %q", at(port), got, want)
			}
		}
		// Captured: spip records the original destination, also where nothing listens.
		for _, port := range []uint16{8080, 31337, 1} {
			payload := fmt.Sprintf("probe %s", at(port))
			c, err := dial(t, p.Client, at(port))
			if err != nil {
				t.Errorf("%s: %v (not redirected?)", at(port), err)
				continue
			}
			_, _ = io.WriteString(c, payload)
			c.Close()
			rec, ok := recs.wait(t, payload)
			if !ok {
				t.Errorf("%s: no record from spip", at(port))
				continue
			}
			if got := netip.AddrPortFrom(rec.Destination.Addr().Unmap(), rec.Destination.Port()); got != at(port) {
				t.Errorf("%s: record destination %s (error %q)", at(port), rec.Destination, rec.DestError)
			}
			if got := rec.Source.Addr().Unmap(); got != map[bool]netip.Addr{true: netns.ClientV4, false: netns.ClientV6}[dst.Is4()] {
				t.Errorf("%s: record source %s", at(port), rec.Source)
			}
		}
	}
	// Loopback inside the sensor namespace is never redirected.
	for _, lo := range []string{"127.0.0.1", "::1"} {
		to := netip.AddrPortFrom(netip.MustParseAddr(lo), 8080)
		if got := banner(t, p.Sensor, to); got != "real-8080" {
			t.Errorf("%s from the sensor itself: got %q, want real-8080", to, got)
		}
	}
	// Docker's published port: its DNAT at dstnat wins, spip's chain never sees the connection.
	published := netip.AddrPortFrom(netns.SensorV4, 8081)
	if got := banner(t, p.Client, published); got != "container-80" {
		t.Errorf("docker-style published port %s: got %q, want container-80", published, got)
	}

	checkWarnings(t, p.Sensor, cfgPath)

	if out, err := spip(t, p.Sensor, "nft", "--unload"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := spip(t, p.Sensor, "nft", "--unload"); err != nil {
		t.Fatalf("unloading with no table: %v\n%s", err, out)
	}
	tables, err := netns.Exec(p.Sensor, "nft", "list", "tables")
	if err != nil || strings.Contains(string(tables), "inet spip") {
		t.Fatalf("tables after unload: %s %v", tables, err)
	}
	for _, dst := range []netip.Addr{netns.SensorV4, netns.SensorV6} {
		if got := banner(t, p.Client, netip.AddrPortFrom(dst, 8080)); got != "real-8080" {
			t.Errorf("%s:8080 after unload: got %q, want the real listener", dst, got)
		}
		if got := banner(t, p.Client, netip.AddrPortFrom(dst, 31337)); !strings.Contains(got, "refused") {
			t.Errorf("%s:31337 after unload: got %q, want connection refused", dst, got)
		}
	}
	if got := banner(t, p.Client, published); got != "container-80" {
		t.Errorf("published port after unload: got %q", got)
	}
}

// checkWarnings runs `spip check` in the sensor namespace with the redirect loaded: it warns
// about the real listener on 8080 that the redirect cuts off (exit status 1), not about excluded
// ports, and about an input chain that drops by policy until it accepts `ct status dnat`.
func checkWarnings(t *testing.T, ns, cfgPath string) {
	t.Helper()
	// A warning makes spip check exit 1, so `spip check && systemctl reload …` stops there.
	out, err := spip(t, ns, "check", "--config", cfgPath)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("spip check with a cut-off listener: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(out, "warning: port 8080 is not excluded") {
		t.Errorf("spip check did not warn about 8080:\n%s", out)
	}
	for _, port := range []string{" 22 ", " 2222 ", " 5001 ", " 12345 "} {
		if strings.Contains(out, "port"+port) {
			t.Errorf("spip check warned about excluded port%s:\n%s", port, out)
		}
	}
	if strings.Contains(out, "policy drop") {
		t.Errorf("spip check warned about a drop policy with none loaded:\n%s", out)
	}
	const fw = "table inet fw { chain input { type filter hook input priority 0; policy drop; }; }"
	if out, err := netns.Exec(ns, "nft", fw); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	defer func() { _, _ = netns.Exec(ns, "nft", "delete", "table", "inet", "fw") }()
	out, _ = spip(t, ns, "check", "--config", cfgPath)
	if !strings.Contains(out, `chain "inet fw input" has policy drop`) {
		t.Errorf("spip check did not warn about the drop policy:\n%s", out)
	}
	if out, err := netns.Exec(ns, "nft", "add", "rule", "inet", "fw", "input", "ct", "status", "dnat", "accept"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, _ = spip(t, ns, "check", "--config", cfgPath)
	if strings.Contains(out, "policy drop") {
		t.Errorf("spip check still warns with ct status dnat accept:\n%s", out)
	}
}

// fakeDockerContainer adds a third namespace behind the sensor, as a Docker bridge would, and
// a Docker-style DNAT publishing sensor port 8081 to the container's port 80: a nat chain at
// priority dstnat in its own table, matching only local destinations as Docker's does.
func fakeDockerContainer(t *testing.T, p *netns.Pair) string {
	t.Helper()
	// The pid in the name keeps a concurrent test process's netns.CleanStale off it.
	ctr := fmt.Sprintf("%sctr-%d", netns.Prefix, os.Getpid())
	dockerNft := filepath.Join(t.TempDir(), "fakedocker.nft")
	rules := "table ip fakedocker {\n\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n" +
		"\t\tfib daddr type local tcp dport 8081 dnat to 198.51.100.130:80\n\t}\n}\n"
	if err := os.WriteFile(dockerNft, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = exec.Command("ip", "netns", "del", ctr).Run()
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ctr).Run() })
	steps := [][]string{
		{"ip", "netns", "add", ctr},
		{"ip", "-n", p.Sensor, "link", "add", "d0", "type", "veth", "peer", "name", "d1", "netns", ctr},
		{"ip", "-n", p.Sensor, "addr", "add", "198.51.100.129/25", "dev", "d0"},
		{"ip", "-n", p.Sensor, "link", "set", "d0", "up"},
		{"ip", "-n", ctr, "addr", "add", "198.51.100.130/25", "dev", "d1"},
		{"ip", "-n", ctr, "link", "set", "d1", "up"},
		{"ip", "-n", ctr, "link", "set", "lo", "up"},
		{"ip", "-n", ctr, "route", "add", "default", "via", "198.51.100.129"},
		{"ip", "netns", "exec", p.Sensor, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"ip", "netns", "exec", p.Sensor, "nft", "-f", dockerNft},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	return ctr
}

// TestGoldenFilesLoad has nft itself accept every golden ruleset, twice in a row (the second
// load replaces the first), in a namespace of its own.
func TestGoldenFilesLoad(t *testing.T) {
	netns.Require(t, "nft", "ip")
	p := netns.NewPair(t, "nftgold")
	files, err := filepath.Glob(filepath.Join("testdata", "*.nft"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		abs, _ := filepath.Abs(f)
		for i := 0; i < 2; i++ {
			if out, err := netns.Exec(p.Sensor, "nft", "-f", abs); err != nil {
				t.Errorf("%s: %v\n%s", f, err, out)
			}
		}
	}
	if out, err := netns.Exec(p.Sensor, "nft", "delete", "table", "inet", "spip"); err != nil {
		t.Errorf("delete: %v\n%s", err, out)
	}
}
