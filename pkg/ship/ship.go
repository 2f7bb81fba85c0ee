// Package ship reads spip's records from the journal and inserts them into ClickHouse, at least once.
package ship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"spip/pkg/export"
	"spip/pkg/record"
)

// Config is what a Shipper needs. Zero durations and sizes take the defaults below.
type Config struct {
	Client *Client
	Names  Names
	// StateDir holds the cursor file (systemd's StateDirectory=).
	StateDir string
	// Journalctl is the journalctl binary; Directory, when set, is passed as -D (a directory of
	// journal files instead of the system journal); Files, when set, as --file (globs: one
	// sensor's files on a journal-remote collector).
	Journalctl string
	Directory  string
	Files      []string
	// BatchSize is the most records in one INSERT; a batch is also sent FlushInterval after its
	// first record.
	BatchSize     int
	FlushInterval time.Duration
	// StatusInterval is how often the lag is measured and STATUS= sent.
	StatusInterval time.Duration
	// Notify sends sd_notify state; nil sends nothing. WatchdogInterval > 0 pings WATCHDOG=1.
	Notify           func(state ...string) error
	WatchdogInterval time.Duration
	// Warn writes a warning record (a journal gap, missing columns); nil writes none.
	Warn func(msg string, fields ...record.Field)
	// Log receives the same messages for a person; nil discards them.
	Log io.Writer
}

// Defaults.
const (
	DefaultBatchSize      = 10000
	DefaultFlushInterval  = time.Second
	DefaultStatusInterval = 5 * time.Second
	maxBatchBytes         = 16 << 20
	queuedBatches         = 2
	drainTimeout          = 10 * time.Second
	minBackoff            = 500 * time.Millisecond
	maxBackoff            = 10 * time.Second
)

// Stats are the shipper's counters; read them with the atomic loads.
type Stats struct {
	Connections atomic.Uint64 // connection rows ClickHouse acknowledged
	Events      atomic.Uint64 // event rows ClickHouse acknowledged
	Batches     atomic.Uint64
	Retries     atomic.Uint64 // failed INSERTs or checks that were tried again
	Malformed   atomic.Uint64 // values that did not fit their column (left out of the row)
	Skipped     atomic.Uint64 // entries without SPIP_EVENT: not spip records
	Gaps        atomic.Uint64 // times the journal no longer held the saved cursor's entry
}

// Shipper moves records from the journal to ClickHouse.
type Shipper struct {
	cfg   Config
	conn  *table
	ev    *table
	Stats Stats

	mu        sync.Mutex
	lastErr   string
	lastErrAt time.Time
	failing   time.Time // when the current run of failures began; zero when healthy
	gap       string    // the last gap, for STATUS=
	jctlNote  string    // what journalctl last said on standard error
	saver     *cursorSaver
	acked     cursorInfo
	ackedCur  string
	behind    int64 // journal entries after the acknowledged one (-1: unknown)
	lagSec    float64
	heartbeat atomic.Int64
}

// New returns a Shipper; Run starts it.
func New(cfg Config) *Shipper {
	if cfg.Journalctl == "" {
		cfg.Journalctl = "journalctl"
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	return &Shipper{cfg: cfg, conn: newTable(record.ScopeConnection), ev: newTable(record.ScopeEvent), behind: -1}
}

func (s *Shipper) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.Log, "spip ship: "+format+"\n", args...)
}

func (s *Shipper) warn(msg string, fields ...record.Field) {
	s.logf("warning: %s", msg)
	if s.cfg.Warn != nil {
		s.cfg.Warn(msg, fields...)
	}
}

func (s *Shipper) notify(state ...string) {
	if s.cfg.Notify != nil {
		_ = s.cfg.Notify(state...)
	}
}

// failed records an error that will be retried.
func (s *Shipper) failed(err error) {
	s.Stats.Retries.Add(1)
	s.mu.Lock()
	s.lastErr, s.lastErrAt = err.Error(), time.Now()
	if s.failing.IsZero() {
		s.failing = s.lastErrAt
		s.mu.Unlock()
		s.logf("%v (retrying)", err)
		return
	}
	s.mu.Unlock()
}

func (s *Shipper) recovered() {
	s.mu.Lock()
	was := s.failing
	s.failing = time.Time{}
	s.mu.Unlock()
	if !was.IsZero() {
		s.logf("ClickHouse accepts records again after %s", time.Since(was).Round(time.Second))
	}
}

func (s *Shipper) beat() { s.heartbeat.Store(time.Now().UnixNano()) }

// Run ships until ctx ends (nil) or ClickHouse rejects the shipper (an error wrapping ErrRejected).
func (s *Shipper) Run(ctx context.Context) error {
	cursor, err := loadCursor(s.cfg.StateDir)
	if err != nil {
		return err
	}
	if cursor != "" {
		s.acked, s.ackedCur = parseCursor(cursor), cursor
	}
	s.saver = newCursorSaver(s.cfg.StateDir, cursor, s.failed)
	defer s.saver.stop()
	s.beat()
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	go s.monitor(bg)
	s.notify("READY=1", s.statusLine())

	if err := s.checkTables(ctx); err != nil {
		return err
	}
	start := startPoint{cursor: cursor}
	backoff := minBackoff
	for ctx.Err() == nil {
		next, err := s.session(ctx, start)
		var gap *gapError
		switch {
		case errors.Is(err, ErrRejected):
			return err
		case errors.As(err, &gap):
			s.reportGap(gap)
			start, backoff = next, minBackoff
			continue
		case err != nil && ctx.Err() == nil:
			s.failed(err)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, maxBackoff)
		default:
			backoff = minBackoff
		}
		start = next
	}
	return nil
}

// checkTables waits until ClickHouse answers, fails on a missing table or bad credentials, and
// warns about columns this spip writes that the tables lack.
func (s *Shipper) checkTables(ctx context.Context) error {
	n := s.cfg.Names
	backoff := minBackoff
	for _, x := range []struct {
		name string
		t    *table
	}{{n.Table, s.conn}, {n.EventsTable, s.ev}} {
		for {
			s.beat()
			have, err := s.cfg.Client.Columns(ctx, n.Database, x.name)
			if err == nil {
				if alter := missingColumns(n.Database, x.name, x.t, have); len(alter) > 0 {
					s.warn(fmt.Sprintf("%s.%s lacks %d of spip's columns: those fields are not stored until you add them (spip ship --migrate prints the ALTER TABLE statements)",
						n.Database, x.name, len(alter)), record.Str(record.KeyReason, "missing columns"))
				}
				break
			}
			if errors.Is(err, ErrRejected) || ctx.Err() != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			s.failed(err)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, maxBackoff)
		}
	}
	s.recovered()
	return nil
}

// Migration returns the ALTER TABLE statements that add the columns this spip writes and the
// server's tables lack (for a cluster, run them for the _local tables on every shard too).
func Migration(ctx context.Context, c *Client, n Names) ([]string, error) {
	var out []string
	for _, x := range []struct {
		name  string
		scope record.Scope
	}{{n.Table, record.ScopeConnection}, {n.EventsTable, record.ScopeEvent}} {
		have, err := c.Columns(ctx, n.Database, x.name)
		if err != nil {
			return nil, err
		}
		out = append(out, missingColumns(n.Database, x.name, newTable(x.scope), have)...)
	}
	return out, nil
}

// startPoint is where a journalctl run begins: at a cursor (its entry is checked and skipped),
// at a time (after a gap), or at the journal's start.
type startPoint struct {
	cursor string
	since  time.Time
}

// gapError says the saved cursor's entry is gone from the journal.
type gapError struct {
	from   cursorInfo
	to     time.Time // the first entry journalctl found instead (zero: none yet)
	toInfo cursorInfo
}

func (g *gapError) Error() string { return "journal gap" }

func (s *Shipper) reportGap(g *gapError) {
	s.Stats.Gaps.Add(1)
	msg := fmt.Sprintf("journal gap: the journal no longer holds the last shipped record (%s); records written after it and before %s were removed from the journal before they were shipped",
		g.from.realtime.UTC().Format(time.RFC3339), g.to.UTC().Format(time.RFC3339))
	if g.toInfo.ok && g.toInfo.seqnumID == g.from.seqnumID && g.toInfo.seqnum > g.from.seqnum {
		msg += fmt.Sprintf(" (at most %d journal entries)", g.toInfo.seqnum-g.from.seqnum-1)
	}
	msg += "; shipping again from " + g.from.realtime.UTC().Format(time.RFC3339)
	s.mu.Lock()
	s.gap = fmt.Sprintf("gap %s to %s", g.from.realtime.UTC().Format(time.RFC3339), g.to.UTC().Format(time.RFC3339))
	s.mu.Unlock()
	s.warn(msg, record.Str(record.KeyReason, "journal gap"))
	s.notify(s.statusLine())
}

// journalArgs asks for whole entries: with --output-fields naming the tables' 54 fields,
// journalctl spent 1.7 times as long per spip record as it does printing every field of it,
// journald's own included (it tests each field of an entry against the list); read skips the
// fields no column stores.
func (s *Shipper) journalArgs() []string {
	args := []string{"--no-pager", "-o", "export"}
	if s.cfg.Directory != "" {
		args = append(args, "-D", s.cfg.Directory)
	}
	for _, f := range s.cfg.Files {
		args = append(args, "--file="+f)
	}
	return args
}

// session reads the journal from start and ships what it finds until ctx ends, ClickHouse
// rejects the shipper, or the journal no longer holds the entry it last read (a gap). It
// returns where the next session starts.
func (s *Shipper) session(ctx context.Context, start startPoint) (startPoint, error) {
	p := newPipeline(s.cfg.BatchSize)
	rctx, stopRead := context.WithCancel(ctx)
	defer stopRead()
	readErr := make(chan error, 1)
	go func() { readErr <- s.poll(rctx, start, p) }()

	// Sends continue for drainTimeout after ctx ends, so what was read is not read twice.
	sendCtx, cancelSend := context.WithCancel(context.Background())
	defer cancelSend()
	stopDrain := context.AfterFunc(ctx, func() { time.AfterFunc(drainTimeout, cancelSend) })
	defer stopDrain()

	var sendErr error
	for {
		b := p.take(s.cfg.FlushInterval, s.beat)
		if b == nil {
			break
		}
		if err := s.send(sendCtx, b); err != nil {
			sendErr = err
			stopRead()
			p.abort()
			break
		}
		p.release(b)
	}
	stopRead()
	rerr := <-readErr
	next := startPoint{cursor: s.ackedCursor()}
	if next.cursor == "" {
		next = start
	}
	var gap *gapError
	switch {
	case sendErr != nil:
		return next, sendErr
	case errors.As(rerr, &gap):
		return startPoint{since: gap.from.realtime}, rerr
	case ctx.Err() != nil:
		return next, nil
	}
	return next, rerr
}

// pollInterval is the least time from the start of one journalctl run to the start of the next.
func (s *Shipper) pollInterval() time.Duration {
	return min(max(s.cfg.FlushInterval/2, 100*time.Millisecond), time.Second)
}

// poll runs journalctl again and again, each time from the last entry read, and feeds what it
// prints into the pipeline. journalctl --follow is not used: in spip-ship.service's sandbox
// (systemd 252) it printed nothing at all, while single runs read the same journal.
//
// A run starts at most once per poll interval, also while records keep arriving: each run
// costs about 20 ms of CPU before its first entry (journalctl's start and the seek to the
// cursor), and started back to back under steady writes, many a second, those runs had taken
// 0.7 of a core at 5,000 records/s. A run that took longer than the interval (a backlog) is
// followed at once. Batches still go out every flush interval.
func (s *Shipper) poll(ctx context.Context, start startPoint, p *pipeline) error {
	defer p.close()
	for ctx.Err() == nil {
		began := time.Now()
		_, last, err := s.readOnce(ctx, start, p)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if last != "" {
			start = startPoint{cursor: last}
		}
		if !sleep(ctx, s.pollInterval()-time.Since(began)) {
			return nil
		}
	}
	return nil
}

// readOnce runs journalctl once from start to the journal's end. It returns the entries it
// added and the cursor of the last one.
func (s *Shipper) readOnce(ctx context.Context, start startPoint, p *pipeline) (int, string, error) {
	args := s.journalArgs()
	switch {
	case start.cursor != "":
		// --cursor, not --after-cursor: the first entry must be the cursor's own, or the
		// journal lost it (journalctl then starts anywhere, even past entries it still holds).
		args = append(args, "--cursor="+start.cursor)
	case !start.since.IsZero():
		args = append(args, "--since=@"+strconv.FormatInt(start.since.Unix(), 10))
	}
	args = append(args, "SYSLOG_IDENTIFIER=spip")
	jctx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := exec.CommandContext(jctx, s.cfg.Journalctl, args...)
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, "", fmt.Errorf("journalctl: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, "", fmt.Errorf("journalctl: %w", err)
	}
	n, last, rerr := s.read(out, start, p)
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		stop() // a gap or bad output: journalctl may still be writing
	}
	werr := cmd.Wait()
	var gap *gapError
	switch {
	case errors.As(rerr, &gap):
		return n, last, rerr
	case rerr != nil && !errors.Is(rerr, io.EOF):
		return n, last, fmt.Errorf("reading journalctl: %w: %s", rerr, stderr.String())
	case werr != nil:
		return n, last, fmt.Errorf("journalctl: %w: %s", werr, stderr.String())
	}
	s.noteJournalctl(stderr.String())
	return n, last, nil
}

// read decodes journalctl's output into batches.
func (s *Shipper) read(r io.Reader, start startPoint, p *pipeline) (int, string, error) {
	dec := export.NewReader(r)
	first := start.cursor != ""
	seenConn := make([]bool, len(s.conn.columns))
	seenEv := make([]bool, len(s.ev.columns))
	var st rowStats
	n, last := 0, ""
	for {
		e, err := dec.Next()
		if err != nil {
			return n, last, err
		}
		cur, _ := e.Get("__CURSOR")
		if first {
			first = false
			if string(cur) == start.cursor {
				continue // read already
			}
			g := &gapError{from: parseCursor(start.cursor), toInfo: parseCursor(string(cur))}
			if us, ok := e.Uint("__REALTIME_TIMESTAMP"); ok {
				g.to = time.UnixMicro(int64(us))
			}
			return n, last, g
		}
		last = string(cur)
		ev, _ := e.Get("SPIP_EVENT")
		if len(ev) == 0 {
			s.Stats.Skipped.Add(1)
			continue
		}
		n++
		st.malformed = 0
		p.add(func(b *batch) {
			if string(ev) == "connection" {
				b.conn = s.conn.appendRow(b.conn, e, seenConn, &st)
				b.nConn++
			} else {
				b.ev = s.ev.appendRow(b.ev, e, seenEv, &st)
				b.nEv++
			}
			b.cursor = append(b.cursor[:0], cur...)
		})
		if st.malformed > 0 {
			s.Stats.Malformed.Add(uint64(st.malformed))
		}
	}
}

// send inserts a batch, retrying until ClickHouse acknowledges it, then saves its cursor.
func (s *Shipper) send(ctx context.Context, b *batch) error {
	n := s.cfg.Names
	backoff := minBackoff
	for {
		s.beat()
		err := s.insert(ctx, n, b)
		if err == nil {
			break
		}
		if errors.Is(err, ErrRejected) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.failed(err)
		s.notify(s.statusLine())
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(backoff*2, maxBackoff)
	}
	s.recovered()
	cur := string(b.cursor)
	s.saver.offer(cur)
	s.Stats.Connections.Add(uint64(b.nConn))
	s.Stats.Events.Add(uint64(b.nEv))
	s.Stats.Batches.Add(1)
	s.mu.Lock()
	s.acked, s.ackedCur = parseCursor(cur), cur
	s.mu.Unlock()
	return nil
}

// insert sends the events first: a retry after a half-done batch only repeats rows, which the
// tables remove.
func (s *Shipper) insert(ctx context.Context, n Names, b *batch) error {
	if b.nEv > 0 && !b.evDone {
		if err := s.cfg.Client.Insert(ctx, n.Database, n.EventsTable, b.ev); err != nil {
			return err
		}
		b.evDone = true
	}
	if b.nConn > 0 {
		return s.cfg.Client.Insert(ctx, n.Database, n.Table, b.conn)
	}
	return nil
}

// noteJournalctl logs what journalctl said on a successful run ("No journal files were found",
// a hint about permissions) once each time it changes: it explains a shipper that ships nothing.
func (s *Shipper) noteJournalctl(msg string) {
	s.mu.Lock()
	changed := msg != s.jctlNote
	s.jctlNote = msg
	s.mu.Unlock()
	if changed && msg != "" {
		s.logf("journalctl: %s", msg)
	}
}

func (s *Shipper) ackedCursor() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ackedCur
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// limitedBuffer keeps the first 4 KiB written to it (journalctl's error messages).
type limitedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := 4096 - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(string(bytes.ToValidUTF8(l.b.Bytes(), []byte("?"))))
}
