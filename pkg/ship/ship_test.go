package ship_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"spip/pkg/export"
	"spip/pkg/protocol"
	"spip/pkg/record"
	"spip/pkg/ship"
	"spip/pkg/test/clickhouse"
	"spip/pkg/test/journalfile"
	"spip/pkg/test/netns"
)

// conn returns connection record i with a fresh session id.
func conn(i int, payload []byte) *record.Record {
	return &record.Record{
		Kind:          record.KindConnection,
		Time:          time.Now(),
		SessionID:     uuid.Must(uuid.NewV7()),
		Source:        netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 250)}), uint16(1024+i%60000)),
		Destination:   netip.AddrPortFrom(netip.MustParseAddr("203.0.113.5"), uint16(1+i%1000)),
		Payload:       payload,
		BytesReceived: uint64(len(payload)),
		Duration:      time.Duration(i%5000) * time.Millisecond,
		Close:         record.CloseEOF,
	}
}

func event(msg string) *record.Record {
	return &record.Record{Kind: record.KindSummary, Time: time.Now(), Message: msg,
		Fields: []record.Field{record.Int(record.KeyDropped, 3), record.Str(record.KeyReason, "queue full")}}
}

// names gives each test its own database on a shared server.
func names(db string) ship.Names {
	return ship.Names{Database: db, Table: "connections", EventsTable: "events"}
}

type running struct {
	s      *ship.Shipper
	cancel context.CancelFunc
	done   chan error
	log    *syncBuffer
	notes  *syncBuffer
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

// start runs a shipper in this process until the test ends.
func start(t *testing.T, c *ship.Client, n ship.Names, journalDir, stateDir string) *running {
	t.Helper()
	r := &running{done: make(chan error, 1), log: &syncBuffer{}, notes: &syncBuffer{}}
	r.s = ship.New(ship.Config{
		Client: c, Names: n, StateDir: stateDir, Directory: journalDir,
		BatchSize: 2000, FlushInterval: 200 * time.Millisecond, StatusInterval: time.Second,
		Log: r.log,
		Notify: func(state ...string) error {
			fmt.Fprintln(r.notes, strings.Join(state, " "))
			return nil
		},
		Warn: func(msg string, _ ...record.Field) { fmt.Fprintln(r.notes, "WARNING "+msg) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.s.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("shipper: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("shipper did not stop")
	}
}

// waitCount waits until q returns want, failing after timeout.
func waitCount(t *testing.T, s *clickhouse.Server, q string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got string
	for time.Now().Before(deadline) {
		out, err := s.Query(q)
		if err == nil {
			got = out
			if got == strconv.Itoa(want) {
				return
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: got %s, want %d", q, got, want)
}

func schema(t *testing.T, s *clickhouse.Server, n ship.Names) {
	t.Helper()
	s.Exec(ship.Schema(n))
}

// The records of one journal reach a two-shard cluster through its Distributed table exactly
// once: uniqExact(session_id) and count() after OPTIMIZE … FINAL on each shard both equal the
// number written, and every copy of a session is on one shard.
func TestClusterExactlyOnce(t *testing.T) {
	t.Parallel()
	shards := clickhouse.Cluster(t, 2)
	n := ship.DefaultNames
	for _, s := range shards {
		s.Exec(ship.ClusterSchema(n))
	}
	jdir := t.TempDir()
	w := journalfile.Open(t, jdir, "sensor", "sensor-a")
	const records, events = 20000, 20
	for i := 0; i < records; i++ {
		if err := w.Write(conn(i, []byte(fmt.Sprintf("GET /%d HTTP/1.0\r\n\r\n", i)))); err != nil {
			t.Fatal(err)
		}
		if i%(records/events) == 0 {
			if err := w.Write(event(fmt.Sprintf("summary %d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := start(t, ship.NewClient(shards[0].URL(), "", ""), n, jdir, t.TempDir())
	waitCount(t, shards[0], "SELECT uniqExact(session_id) FROM spip.connections", records, 2*time.Minute)
	waitCount(t, shards[0], "SELECT count() FROM spip.events", events, time.Minute)
	r.stop(t)
	total := 0
	for i, s := range shards {
		s.MustQuery("OPTIMIZE TABLE spip.connections_local FINAL")
		c, _ := strconv.Atoi(s.MustQuery("SELECT count() FROM spip.connections_local"))
		if c == 0 || c == records {
			t.Errorf("shard %d holds %d of %d records: not sharded", i, c, records)
		}
		total += c
	}
	if total != records {
		t.Errorf("count() after OPTIMIZE FINAL on each shard: %d, want %d", total, records)
	}
	if got := shards[0].MustQuery("SELECT uniqExact(session_id) FROM spip.connections"); got != strconv.Itoa(records) {
		t.Errorf("uniqExact(session_id) = %s, want %d", got, records)
	}
	if got := r.s.Stats.Connections.Load(); got != records {
		t.Errorf("shipper counted %d connections, want %d", got, records)
	}
}

// Values a stranger controls arrive byte-exact: quotes, backslashes, NUL, newlines, invalid
// UTF-8, U+2028, and 64 KiB payloads.
func TestHostileValues(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	n := names("hostile")
	schema(t, srv, n)
	payloads := [][]byte{
		[]byte(`"quoted" 'single' \back\slash\ {"json":1}`),
		[]byte("nul\x00inside\x00"),
		[]byte("line\nbreak\r\nMESSAGE_ID=forged\nSPIP_SESSION_ID=forged"),
		{0xff, 0xfe, 0x80, 0xc3, 0x28, 0xed, 0xa0, 0x80},
		[]byte("\u2028\u2029 and \x1b[31m escape \x7f"),
		{},
		bytes.Repeat([]byte{0, 1, 2, 0xff, '"', '\\', '\n'}, (64<<10)/7),
		func() []byte {
			b := make([]byte, 64<<10)
			for i := range b {
				b[i] = byte(i * 7)
			}
			return b
		}(),
	}
	jdir := t.TempDir()
	w := journalfile.Open(t, jdir, "sensor", hostileSensor)
	want := map[string]string{}
	for i, p := range payloads {
		r := conn(i, p)
		want[r.SessionID.String()] = strings.ToUpper(hex.EncodeToString(p))
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	// Protocol facts a peer chose: a list (journald joins it with commas, escaping them) into
	// Array(String), and text with quotes into String columns.
	tlsRec := conn(99, []byte("\x16\x03\x01"))
	tlsRec.Facts = protocol.Facts{Protocol: "tls", TLSSNI: `evil"sni\x00`, TLSALPN: []string{"h2", "a,b", "100%", `q"uote`}, JA4: "t13d1516h2_8daaf6152771_e5627efa2ab1"}
	want[tlsRec.SessionID.String()] = strings.ToUpper(hex.EncodeToString(tlsRec.Payload))
	if err := w.Write(tlsRec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	start(t, ship.NewClient(srv.URL(), clickhouse.User, clickhouse.Password), n, jdir, t.TempDir())
	waitCount(t, srv, "SELECT count() FROM hostile.connections", len(payloads)+1, time.Minute)
	got := srv.MustQuery(fmt.Sprintf("SELECT length(tls_alpn), hex(arrayStringConcat(tls_alpn, '|')), hex(tls_sni), ja4 FROM hostile.connections WHERE session_id = '%s' FORMAT TabSeparated", tlsRec.SessionID))
	// The journal holds the SNI as the encoder wrote it (non-printable bytes escaped): ClickHouse
	// must hold the same bytes.
	sni := journalValue(t, jdir, tlsRec.SessionID.String(), "SPIP_TLS_SNI")
	wantTLS := fmt.Sprintf("4\t%X\t%X\t%s", `h2|a,b|100%|q"uote`, sni, tlsRec.Facts.JA4)
	if got != wantTLS {
		t.Errorf("protocol facts: got %q, want %q", got, wantTLS)
	}
	if got := srv.MustQuery("SELECT countIf(hex(payload) != upper(payload_hex)) FROM hostile.connections"); got != "0" {
		t.Errorf("%s rows where hex(payload) != upper(payload_hex)", got)
	}
	out := srv.MustQuery("SELECT session_id, hex(payload), length(payload), hex(sensor) FROM hostile.connections FORMAT TabSeparated")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("bad row %q", line)
		}
		if want[f[0]] != f[1] {
			t.Errorf("session %s: payload %.40s…, want %.40s…", f[0], f[1], want[f[0]])
		}
		if f[3] != strings.ToUpper(hex.EncodeToString([]byte(hostileSensor))) {
			t.Errorf("sensor = %q", f[3])
		}
	}
}

const hostileSensor = "hostile \"sensor\" \\ name \xff"

// journalValue reads one field of the entry with session id from the journal files in dir.
func journalValue(t *testing.T, dir, session, field string) []byte {
	t.Helper()
	out, err := exec.Command("journalctl", "-D", dir, "-o", "export", "--output-fields="+field, "SPIP_SESSION_ID="+session).Output()
	if err != nil {
		t.Fatal(err)
	}
	e, err := export.NewReader(bytes.NewReader(out)).Next()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := e.Get(field)
	if !ok {
		t.Fatalf("%s not in the journal entry of %s", field, session)
	}
	return append([]byte(nil), v...)
}

var (
	sharedOnce sync.Once
	sharedSrv  *clickhouse.Server
)

// shared is one server for the tests that do not stop it; each uses its own database.
func shared(t *testing.T) *clickhouse.Server {
	netns.RequireTools(t, "clickhouse-server", journalfile.Tool)
	sharedOnce.Do(func() { sharedSrv = clickhouse.Start(&sharedT{t}) })
	if sharedSrv == nil {
		t.Fatal("shared clickhouse-server did not start")
	}
	return sharedSrv.For(t)
}

// sharedT lets the shared server outlive the test that started it: TestMain stops it.
type sharedT struct{ *testing.T }

func (s *sharedT) Cleanup(f func()) { sharedCleanup = append(sharedCleanup, f) }
func (s *sharedT) TempDir() string {
	d, err := os.MkdirTemp("", "spip-clickhouse-")
	if err != nil {
		s.T.Fatal(err)
	}
	sharedCleanup = append(sharedCleanup, func() { os.RemoveAll(d) })
	return d
}

var sharedCleanup []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(sharedCleanup) - 1; i >= 0; i-- {
		sharedCleanup[i]()
	}
	os.Exit(code)
}

var _ = filepath.Join

// ClickHouse stopped for 60 s under steady traffic and started again: nothing is lost, the
// shipper reports the failure while it lasts and recovers by itself.
func TestOutage(t *testing.T) {
	t.Parallel()
	srv := clickhouse.Start(t)
	n := names("outage")
	schema(t, srv, n)
	jdir := t.TempDir()
	w := journalfile.Open(t, jdir, "sensor", "sensor-outage")
	r := start(t, ship.NewClient(srv.URL(), "", ""), n, jdir, t.TempDir())

	// 500 records/s for 75 s; ClickHouse is down from 5 s to 65 s.
	const rate, seconds = 500, 75
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < rate*seconds; i += rate / 10 {
			<-tick.C
			for j := i; j < i+rate/10; j++ {
				if err := w.Write(conn(j, []byte("steady"))); err != nil {
					done <- err
					return
				}
			}
			if err := w.Flush(); err != nil {
				done <- err
				return
			}
		}
		done <- w.Close()
	}()
	time.Sleep(5 * time.Second)
	srv.Stop()
	stoppedAt := time.Now()
	time.Sleep(60 * time.Second)
	during := r.s.Stats.Retries.Load()
	srv.Restart()
	t.Logf("ClickHouse down %s; shipper retried %d times meanwhile", time.Since(stoppedAt).Round(time.Second), during)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM outage.connections", rate*seconds, 2*time.Minute)
	srv.MustQuery("OPTIMIZE TABLE outage.connections FINAL")
	if got := srv.MustQuery("SELECT count() FROM outage.connections"); got != strconv.Itoa(rate*seconds) {
		t.Errorf("count() after OPTIMIZE FINAL = %s, want %d", got, rate*seconds)
	}
	if during == 0 {
		t.Error("no retries while ClickHouse was down")
	}
	if notes := r.notes.String(); !strings.Contains(notes, "failing since") || !strings.Contains(notes, "last error") {
		t.Errorf("STATUS= never reported the outage:\n%s", tail(notes, 2000))
	}
	if log := r.log.String(); !strings.Contains(log, "accepts records again") {
		t.Errorf("no recovery message:\n%s", tail(log, 2000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// A journal gap: the saved cursor's entry was removed (vacuumed) before the shipper ran again.
// The shipper says so, from when to when, in STATUS= and a warning record, and ships what the
// journal still holds.
func TestJournalGap(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	n := names("gap")
	schema(t, srv, n)
	jdir, state := t.TempDir(), t.TempDir()
	a := journalfile.Open(t, jdir, "a", "sensor-gap")
	for i := 0; i < 100; i++ {
		_ = a.Write(conn(i, nil))
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	r := start(t, ship.NewClient(srv.URL(), "", ""), n, jdir, state)
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM gap.connections", 100, time.Minute)
	r.stop(t)

	// Records written while the shipper was stopped, then the older file removed, as
	// journald's vacuuming does.
	lostFrom := time.Now()
	b := journalfile.Open(t, jdir, "b", "sensor-gap")
	for i := 0; i < 30; i++ {
		_ = b.Write(conn(i, nil))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(a.Path); err != nil {
		t.Fatal(err)
	}
	r = start(t, ship.NewClient(srv.URL(), "", ""), n, jdir, state)
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM gap.connections", 130, time.Minute)
	if got := r.s.Stats.Gaps.Load(); got != 1 {
		t.Errorf("gaps = %d, want 1", got)
	}
	notes := r.notes.String()
	for _, line := range strings.Split(notes, "\n") {
		if strings.HasPrefix(line, "WARNING journal gap") {
			t.Log(line)
		}
	}
	if !strings.Contains(notes, "WARNING journal gap") || !strings.Contains(notes, "journal gap "+lostFrom.UTC().Format("2006-01-02T15")) {
		t.Errorf("the gap was not reported with its times:\n%s", tail(notes, 3000))
	}
}

// A table made by an older spip lacks columns: the shipper still inserts (the unknown fields are
// skipped), warns, and --migrate's statements add them.
func TestMissingColumns(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	n := names("migrate")
	schema(t, srv, n)
	srv.MustQuery("ALTER TABLE migrate.connections DROP COLUMN close_reason")
	srv.MustQuery("ALTER TABLE migrate.connections DROP COLUMN duration_ms")
	jdir := t.TempDir()
	w := journalfile.Open(t, jdir, "sensor", "sensor-migrate")
	for i := 0; i < 10; i++ {
		_ = w.Write(conn(i, nil))
	}
	_ = w.Flush()
	c := ship.NewClient(srv.URL(), "", "")
	r := start(t, c, n, jdir, t.TempDir())
	waitCount(t, srv, "SELECT count() FROM migrate.connections", 10, time.Minute)
	if notes := r.notes.String(); !strings.Contains(notes, "WARNING migrate.connections lacks 2 of spip's columns") {
		t.Errorf("no warning about the missing columns:\n%s", notes)
	}
	stmts, err := ship.Migration(context.Background(), c, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(stmts) != 2 {
		t.Fatalf("migration: %q", stmts)
	}
	for _, s := range stmts {
		srv.MustQuery(strings.TrimSuffix(s, ";"))
	}
	for i := 0; i < 10; i++ {
		_ = w.Write(conn(i, nil))
	}
	_ = w.Flush()
	waitCount(t, srv, "SELECT countIf(close_reason = 'eof') FROM migrate.connections", 10, time.Minute)
	if stmts, _ := ship.Migration(context.Background(), c, n); len(stmts) != 0 {
		t.Errorf("after the migration: %q", stmts)
	}
}

// A journal-remote collector holds one file per sensor in one directory. After an outage of
// sensor b's upload, its backlog arrives late with its own, older, times, behind records of
// sensor a that were shipped already. One shipper per sensor (--file with the sensor's files,
// its own cursor) ships everything, whatever order journalctl merges the files in.
func TestCollectorOutage(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	n := names("collector")
	schema(t, srv, n)
	dir := t.TempDir()
	a := journalfile.Open(t, dir, "remote-a", "sensor-a")
	b := journalfile.Open(t, dir, "remote-b", "sensor-b")
	c := ship.NewClient(srv.URL(), "", "")
	for _, name := range []string{"remote-a", "remote-b"} {
		r := &running{done: make(chan error, 1), log: &syncBuffer{}, notes: &syncBuffer{}}
		r.s = ship.New(ship.Config{Client: c, Names: n, StateDir: t.TempDir(), Files: []string{filepath.Join(dir, name+"*.journal")},
			BatchSize: 500, FlushInterval: 200 * time.Millisecond, StatusInterval: time.Second, Log: r.log})
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		go func() { r.done <- r.s.Run(ctx) }()
		t.Cleanup(func() { r.stop(t) })
	}
	write := func(w *journalfile.Writer, at time.Time, k int) {
		for i := 0; i < k; i++ {
			if err := w.WriteAt(at.Add(time.Duration(i)*time.Millisecond), conn(i, []byte("collector"))); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	write(a, time.Now(), 100)
	write(b, time.Now(), 100)
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM collector.connections", 200, time.Minute)
	// b's upload is down; a goes on and is shipped.
	outage := time.Now()
	write(a, outage.Add(time.Second), 100)
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM collector.connections WHERE sensor = 'sensor-a'", 200, time.Minute)
	// b comes back: its backlog (times from the outage, older than a's shipped records), then new records.
	write(b, outage, 300)
	write(b, time.Now(), 50)
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM collector.connections WHERE sensor = 'sensor-b'", 450, time.Minute)
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM collector.connections", 650, time.Minute)
}
