// Package clickhouse starts throwaway Debian clickhouse-server instances on loopback for tests.
package clickhouse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// Users every server knows: "default" without a password and User with Password.
const (
	User     = "spip"
	Password = "s3cret 'with' \"quotes\""
)

// Server is one clickhouse-server with its own configuration, data and ports.
type Server struct {
	Dir       string
	HTTP, TCP int
	Host      netip.Addr // the address it listens on
	ns        string     // the network namespace it runs in, "" for the test's own
	client    *http.Client
	t         testing.TB
	cmd       *exec.Cmd
	exited    chan struct{}
}

// URL is the server's HTTP interface.
func (s *Server) URL() string { return "http://" + netip.AddrPortFrom(s.Host, uint16(s.HTTP)).String() }

// StartIn starts one server inside network namespace ns, listening on addr (fixed ports: the
// namespace is the test's own), and stops it when the test ends.
func StartIn(t testing.TB, ns string, addr netip.Addr) *Server {
	t.Helper()
	netns.RequireTools(t, "clickhouse-server")
	s := &Server{Dir: t.TempDir(), HTTP: 8123, TCP: 9000, Host: addr, ns: ns, t: t}
	s.client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			var c net.Conn
			err := netns.In(ns, func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, address)
				return err
			})
			return c, err
		},
	}}
	s.writeConfig(t, fmt.Sprintf("<shard><replica><host>%s</host><port>%d</port></replica></shard>", addr, s.TCP))
	t.Cleanup(s.Stop)
	s.Begin()
	s.WaitReady()
	return s
}

// Start starts one server and stops it when the test ends, pass or fail.
func Start(t testing.TB) *Server {
	return Cluster(t, 1)[0]
}

// Cluster starts n servers that all define the cluster "spip" with each server as one shard.
func Cluster(t testing.TB, n int) []*Server {
	t.Helper()
	netns.RequireTools(t, "clickhouse-server")
	servers := make([]*Server, n)
	for i := range servers {
		dir := t.TempDir()
		servers[i] = &Server{Dir: dir, HTTP: freePort(t), TCP: freePort(t), Host: netip.MustParseAddr("127.0.0.1"), client: http.DefaultClient, t: t}
	}
	var shards strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&shards, "<shard><replica><host>127.0.0.1</host><port>%d</port></replica></shard>", s.TCP)
	}
	for _, s := range servers {
		s.writeConfig(t, shards.String())
		t.Cleanup(s.Stop)
		s.Begin()
	}
	for _, s := range servers {
		s.WaitReady()
	}
	return servers
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) writeConfig(t testing.TB, shards string) {
	t.Helper()
	d := s.Dir
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>%[1]s/log/server.log</log><errorlog>%[1]s/log/err.log</errorlog></logger>
  <http_port>%[2]d</http_port>
  <tcp_port>%[3]d</tcp_port>
  <listen_host>%[5]s</listen_host>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <timezone>UTC</timezone>
  <remote_servers><spip>%[4]s</spip></remote_servers>
</yandex>
`, d, s.HTTP, s.TCP, shards, s.Host)
	users := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users>
    <default><password></password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default>
    <%[1]s><password>%[2]s</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></%[1]s>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`, User, xmlEscape(Password))
	if err := os.MkdirAll(filepath.Join(d, "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"config.xml": config, "users.xml": users} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xmlEscapeTo(&b, s)
	return b.String()
}

func xmlEscapeTo(w io.Writer, s string) error {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")
	_, err := r.WriteString(w, s)
	return err
}

// Begin starts the server process (again, after Stop) without waiting for it.
func (s *Server) Begin() {
	args := []string{"clickhouse-server", "--config-file=" + filepath.Join(s.Dir, "config.xml")}
	if s.ns != "" {
		args = append([]string{"ip", "netns", "exec", s.ns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	out, _ := os.Create(filepath.Join(s.Dir, "log", "stdout.log"))
	cmd.Stdout, cmd.Stderr = out, out
	// If the test binary dies, so does the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("clickhouse-server: %v", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); out.Close(); close(done) }(cmd, s.exited)
}

// WaitReady waits until the server answers /ping.
func (s *Server) WaitReady() {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := s.client.Get(s.URL() + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-s.exited:
			s.t.Fatalf("clickhouse-server exited at start: %s", s.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.t.Fatalf("clickhouse-server did not answer within 60s: %s", s.logTail())
}

func (s *Server) logTail() string {
	var out []string
	for _, f := range []string{"stdout.log", "err.log"} {
		b, _ := os.ReadFile(filepath.Join(s.Dir, "log", f))
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		out = append(out, f+": "+string(b))
	}
	return strings.Join(out, "\n")
}

// Stop stops the server (SIGTERM, then SIGKILL after 20 s) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.exited:
		s.cmd = nil
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// For returns the server with its failures reported to t (a server shared by several tests).
func (s *Server) For(t testing.TB) *Server {
	c := *s
	c.t = t
	return &c
}

// Restart starts a stopped server again on the same ports and data.
func (s *Server) Restart() {
	s.Begin()
	s.WaitReady()
}

// Query runs q as the default user and returns the answer with surrounding space trimmed.
func (s *Server) Query(q string) (string, error) {
	resp, err := s.client.Post(s.URL()+"/", "text/plain", strings.NewReader(q))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: HTTP %d: %s", q, resp.StatusCode, b)
	}
	return strings.TrimSpace(string(b)), nil
}

// MustQuery is Query that fails the test on an error.
func (s *Server) MustQuery(q string) string {
	s.t.Helper()
	out, err := s.Query(q)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// Exec runs each ;-separated statement of sql (a schema file).
func (s *Server) Exec(sql string) {
	s.t.Helper()
	for _, stmt := range Statements(sql) {
		s.MustQuery(stmt)
	}
}

// Statements splits a file of statements on ";" at line ends and drops "--" comment lines.
func Statements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		cur.WriteString(line + "\n")
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			if st := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"); st != "" {
				out = append(out, st)
			}
			cur.Reset()
		}
	}
	if st := strings.TrimSpace(cur.String()); st != "" {
		out = append(out, st)
	}
	return out
}
