package cli

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"spip/pkg/record"
	"spip/pkg/ship"
	"spip/pkg/test/clickhouse"
	"spip/pkg/test/netns"
)

func TestParseWhen(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	now := time.Date(2026, 11, 26, 10, 30, 0, 0, loc)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"now", now, true},
		{"today", time.Date(2026, 11, 26, 0, 0, 0, 0, loc), true},
		{"yesterday", time.Date(2026, 11, 25, 0, 0, 0, 0, loc), true},
		{"-2h", now.Add(-2 * time.Hour), true},
		{"2h", now.Add(-2 * time.Hour), true},
		{"30m ago", now.Add(-30 * time.Minute), true},
		{"7d", now.Add(-7 * 24 * time.Hour), true},
		{"@1795652529", time.Unix(1795652529, 0), true},
		{"2026-11-25 08:00", time.Date(2026, 11, 25, 8, 0, 0, 0, loc), true},
		{"2026-11-25", time.Date(2026, 11, 25, 0, 0, 0, 0, loc), true},
		{"2026-11-25T08:00:00Z", time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC), true},
		{"08:15", time.Date(2026, 11, 26, 8, 15, 0, 0, loc), true},
		{"soon", time.Time{}, false},
		{"-x", time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := ParseWhen(tt.in, now, loc)
		if (err == nil) != tt.ok || !got.Equal(tt.want) {
			t.Errorf("ParseWhen(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestStatsFile runs `spip stats --file` on a gzip-compressed mirror, as printed to a pipe
// (plain, no colour) and as JSON, and its usage errors.
func TestStatsFile(t *testing.T) {
	dir := t.TempDir()
	enc := record.NewEncoder("edge-1")
	var b []byte
	start := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	for i := range 50 {
		r := &record.Record{Kind: record.KindConnection, Time: start.Add(time.Duration(i) * time.Minute),
			Source:      netip.MustParseAddrPort("203.0.113.9:40000"),
			Destination: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.2"), uint16(23+i%2*57)),
			Payload:     []byte("\x1b]0;owned\x07GET / HTTP/1.0\r\n\r\n")}
		b = enc.AppendJSON(b, r)
	}
	b = enc.AppendJSON(b, &record.Record{Kind: record.KindSummary, Time: start, Message: "lost",
		Fields: []record.Field{record.Str(record.KeySink, "journald"), record.Int(record.KeyDropped, 7)}})
	path := filepath.Join(dir, "records.json.1.gz")
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(b)
	w.Close()
	if err := os.WriteFile(path, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		env := &Env{Stdout: &out, Stderr: &errb, Environ: []string{"LANG=C.UTF-8"}}
		return Run(context.Background(), env, append([]string{"stats"}, args...)), out.String(), errb.String()
	}
	code, out, errs := run("--file", path, "--port", "23")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"! the journald output dropped 7 records", "connections 25 ", "23/tcp", "203.0.113.9", `\x1b]0;owned\x07GET`} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("an escape byte reached the report:\n%q", out)
	}
	code, out, errs = run("--file", path, "--json", "--since", "2026-11-26T08:10:00Z", "--until", "2026-11-26T08:20:00Z")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep struct {
		Totals struct{ Connections int }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Totals.Connections != 10 {
		t.Errorf("--json: %v, %d connections, want 10:\n%s", err, rep.Totals.Connections, out)
	}
	for _, bad := range [][]string{{"--port", "70000"}, {"--top", "0"}, {"--since", "soon"}, {"--file", path, "--directory", dir},
		{"--since", "2026-11-26", "--until", "2026-11-25"}} {
		if code, _, _ := run(bad...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, ExitUsage)
		}
	}
	if code, _, errs := run("--file", filepath.Join(dir, "missing.json")); code != ExitFail || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: exit %d, %s", code, errs)
	}
}

// TestStatsClickHouse: `spip stats --clickhouse` reads [ship] from the configuration and the
// password from --password-file, and reports what the server's tables hold.
func TestStatsClickHouse(t *testing.T) {
	netns.RequireTools(t, "clickhouse-server")
	srv := clickhouse.Start(t)
	srv.Exec(ship.Schema(ship.DefaultNames))
	enc := record.NewEncoder("edge-9")
	var rows []byte
	start := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	for i := range 30 {
		rows = enc.AppendJSON(rows, &record.Record{Kind: record.KindConnection, Time: start.Add(time.Duration(i) * time.Second),
			SessionID:   uuid.New(),
			Source:      netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 3)}), 40000),
			Destination: netip.MustParseAddrPort("198.51.100.2:23"), Payload: []byte("root\r\n")})
	}
	client := ship.NewClient(srv.URL(), clickhouse.User, clickhouse.Password)
	if err := client.Insert(context.Background(), "spip", "connections", rows); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "spip.toml")
	pw := filepath.Join(dir, "pw")
	os.WriteFile(conf, []byte("[ship]\nurl = \""+srv.URL()+"\"\nuser = \""+clickhouse.User+"\"\n"), 0o644)
	os.WriteFile(pw, []byte(clickhouse.Password+"\n"), 0o600)
	var out, errb bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &errb, Environ: []string{"LANG=C.UTF-8"}}
	if code := Run(context.Background(), env, []string{"stats", "--clickhouse", "--config", conf, "--password-file", pw}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"spip stats · clickhouse " + srv.URL(), "connections 30 ", "sources 3 ", "23/tcp", `root\r\n`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	os.WriteFile(pw, []byte("wrong\n"), 0o600)
	errb.Reset()
	if code := Run(context.Background(), env, []string{"stats", "--clickhouse", "--config", conf, "--password-file", pw}); code != ExitConfig || !strings.Contains(errb.String(), "wrong password") {
		t.Errorf("a wrong password: exit %d, %s", code, errb.String())
	}
}

// TestStatsProgress: with standard error on a terminal, a reading that takes longer than the
// delay shows a progress line there, and clears it before the report; the report itself, piped,
// has no escape sequence.
func TestStatsProgress(t *testing.T) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer m.Close()
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var seen bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&seen, m); close(copied) }()

	old := progressDelay
	progressDelay = 50 * time.Millisecond
	defer func() { progressDelay = old }()
	enc := record.NewEncoder("edge-1")
	line := enc.AppendJSON(nil, &record.Record{Kind: record.KindConnection, Time: time.Unix(1795652529, 0),
		Source: netip.MustParseAddrPort("203.0.113.9:40000"), Destination: netip.MustParseAddrPort("198.51.100.2:23")})
	pr, pw := io.Pipe()
	go func() {
		pw.Write(line)
		time.Sleep(700 * time.Millisecond) // a slow source: the line must show meanwhile
		pw.Write(line)
		pw.Close()
	}()
	var out bytes.Buffer
	env := &Env{Stdin: pr, Stdout: &out, Stderr: tty, Environ: []string{"LANG=C.UTF-8"}}
	if code := Run(context.Background(), env, []string{"stats", "--file", "-"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	tty.Close()
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	if !strings.Contains(seen.String(), "reading: ") || !strings.HasSuffix(seen.String(), "\r\x1b[K") {
		t.Errorf("the terminal saw %q, want a progress line, cleared at the end", seen.String())
	}
	if strings.Contains(out.String(), "\x1b") || !strings.Contains(out.String(), "connections 2 ") {
		t.Errorf("the piped report:\n%q", out.String())
	}
}
