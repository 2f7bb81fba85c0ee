package sink_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"spip/pkg/export"
	"spip/pkg/record"
	"spip/pkg/sink"
	"spip/pkg/sink/journald"
	"spip/pkg/test/netns"
)

func connection(i int) *record.Record {
	return &record.Record{
		Kind:          record.KindConnection,
		Time:          time.Now(),
		SessionID:     uuid.New(),
		Source:        netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(1024+i%60000)),
		Destination:   netip.MustParseAddrPort("198.51.100.2:23"),
		Payload:       []byte(fmt.Sprintf("probe %d\r\n\x00\xff", i)),
		BytesReceived: 16,
		Close:         record.CloseEOF,
	}
}

// fault is one OnFault call.
type fault struct {
	name      string
	err       error
	recovered bool
}

func faults(fan *sink.Fanout) <-chan fault {
	c := make(chan fault, 64)
	fan.OnFault(func(name string, err error, recovered bool) {
		select {
		case c <- fault{name, err, recovered}:
		default:
		}
	})
	return c
}

func waitFault(t *testing.T, c <-chan fault, recovered bool) fault {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case f := <-c:
			if f.recovered == recovered {
				return f
			}
		case <-deadline:
			t.Fatalf("no fault report with recovered=%v", recovered)
		}
	}
}

// waitFor polls cond; tests wait for the sink goroutine, never for a fixed time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func accounted(s *sink.Sink) uint64 {
	st := s.Stats()
	return st.Written + st.Dropped + st.Failed
}

// TestJournalStalledReader: a journald that stops reading never blocks Offer; the queue fills,
// the overflow is counted, the stall is reported while it lasts, and when journald reads again
// every record is either delivered or counted as dropped.
func TestJournalStalledReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadBuffer(4096)

	const queue, offered = 64, 2000
	js, err := sink.NewJournal(path, record.NewEncoder("t"), queue)
	if err != nil {
		t.Fatal(err)
	}
	fan := sink.NewFanout()
	fan.Add(js)
	fc := faults(fan)
	fan.Start()

	var taken int
	for i := 0; i < offered/2; i++ {
		if js.Offer(connection(i)) {
			taken++
		}
	}
	f := waitFault(t, fc, false)
	if f.name != "journald" || !errors.Is(f.err, journald.ErrTimeout) {
		t.Errorf("fault %+v, want journald stalled with ErrTimeout", f)
	}
	st := js.Stats()
	t.Logf("stalled: offered %d, queued %d, written %d, dropped %d", offered/2, st.Queued, st.Written, st.Dropped)
	if !st.Faulty || st.Dropped == 0 || st.Dropped != uint64(offered/2-taken) {
		t.Fatalf("while stalled: %+v (offers taken %d of %d)", st, taken, offered/2)
	}
	beats := st.Beats
	waitFor(t, "the stalled writer to keep beating", func() bool { return js.Stats().Beats > beats+2 })

	// journald reads again.
	var mu sync.Mutex
	var got [][]byte
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, _, err := c.ReadFromUnix(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, bytes.Clone(buf[:n]))
			mu.Unlock()
		}
	}()
	waitFault(t, fc, true)
	for i := offered / 2; i < offered; i++ {
		js.Offer(connection(i))
		if i%32 == 0 {
			waitFor(t, "the queue to drain", func() bool { return js.Stats().Queued == 0 })
		}
	}
	waitFor(t, "every offer accounted", func() bool { return accounted(js) == offered })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fan.Stop(ctx)

	st = js.Stats()
	t.Logf("after recovery: %+v", st)
	if st.Failed != 0 || st.Written+st.Dropped != offered {
		t.Errorf("written %d + dropped %d != offered %d (failed %d)", st.Written, st.Dropped, offered, st.Failed)
	}
	waitFor(t, "the reader to see every datagram", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return uint64(len(got)) == st.Written
	})
	mu.Lock()
	defer mu.Unlock()
	for i, d := range got {
		if _, err := export.ParseDatagram(d); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
}

// TestJournalStopWhileStalled: at shutdown a stalled journald costs a bounded drain and
// counted drops, never a hang.
func TestJournalStopWhileStalled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	js, err := sink.NewJournal(path, record.NewEncoder("t"), 256)
	if err != nil {
		t.Fatal(err)
	}
	fan := sink.NewFanout()
	fan.Add(js)
	fc := faults(fan)
	fan.Start()
	const offered = 1000
	for i := 0; i < offered; i++ {
		js.Offer(connection(i))
	}
	waitFault(t, fc, false)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	fan.Stop(ctx)
	st := js.Stats()
	t.Logf("stop took %v with a drain budget of 500ms: %+v", time.Since(start).Round(time.Millisecond), st)
	if st.Written+st.Dropped+st.Failed != offered || st.Queued != 0 {
		t.Errorf("after stop: %+v, want all %d offers accounted", st, offered)
	}
}

// mountTmpfs mounts a small tmpfs for a test and unmounts it afterwards.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	netns.Require(t, "mount", "umount")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "spiptest", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes to path until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 512)
	for i := 0; i < 1<<20; i++ {
		if _, err := f.Write(chunk); err != nil {
			return
		}
	}
	t.Fatal("the filesystem never filled")
}

// readLines returns the file's lines that parse as JSON and those that do not.
func readLines(t *testing.T, path string) (good []map[string]any, bad []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			bad = append(bad, sc.Text())
			continue
		}
		good = append(good, m)
	}
	return good, bad
}

// TestJSONFullFilesystem: a full filesystem costs counted failures and one fault report, never
// a stuck sink; when space returns, records flow again and a torn line never swallows the next.
func TestJSONFullFilesystem(t *testing.T) {
	dir := mountTmpfs(t, "64k")
	path := filepath.Join(dir, "spip.json")
	js, err := sink.NewJSON(path, record.NewEncoder("t"), 1024)
	if err != nil {
		t.Fatal(err)
	}
	fan := sink.NewFanout()
	fan.Add(js)
	fc := faults(fan)
	fan.Start()

	offered := uint64(0)
	offer := func(n int) {
		for i := 0; i < n; i++ {
			offered++
			js.Offer(connection(int(offered)))
			want := offered
			waitFor(t, "the record to be accounted", func() bool { return accounted(js) == want })
		}
	}
	offer(10)
	fill(t, filepath.Join(dir, "filler"))
	offer(50)
	f := waitFault(t, fc, false)
	st := js.Stats()
	t.Logf("disk full: %+v (fault: %v)", st, f.err)
	if st.Failed == 0 || !st.Faulty || f.name != "json" {
		t.Fatalf("a full filesystem was not reported: %+v", st)
	}
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	offer(10)
	waitFault(t, fc, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fan.Stop(ctx)

	st = js.Stats()
	if st.Written+st.Failed+st.Dropped != offered {
		t.Errorf("written %d + failed %d + dropped %d != offered %d", st.Written, st.Failed, st.Dropped, offered)
	}
	good, bad := readLines(t, path)
	t.Logf("file: %d whole records, %d torn lines; sink: %+v", len(good), len(bad), st)
	if uint64(len(good)) != st.Written {
		t.Errorf("the file holds %d whole records, the sink says %d written", len(good), st.Written)
	}
	if len(bad) > 1 {
		t.Errorf("%d unparseable lines, want at most the one torn line: %q", len(bad), bad)
	}
	if last := good[len(good)-1]; last["source_port"] != float64(1024+offered) {
		t.Errorf("last record %v is not the last one offered (%d)", last["source_port"], offered)
	}
}

// TestJSONDeletedFile: a file removed behind spip's back is recreated by the periodic check,
// and records land in the new file.
func TestJSONDeletedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spip.json")
	js, err := sink.NewJSON(path, record.NewEncoder("t"), 64)
	if err != nil {
		t.Fatal(err)
	}
	fan := sink.NewFanout()
	fan.Add(js)
	fan.Start()
	defer fan.Stop(context.Background())
	js.Offer(connection(1))
	waitFor(t, "the first record", func() bool { return js.Stats().Written == 1 })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the file to be recreated", func() bool { _, err := os.Stat(path); return err == nil })
	js.Offer(connection(2))
	waitFor(t, "the second record", func() bool { return js.Stats().Written == 2 })
	good, bad := readLines(t, path)
	if len(good) != 1 || len(bad) != 0 || good[0]["source_port"] != float64(1026) {
		t.Errorf("recreated file: %v %q, want the second record alone", good, bad)
	}
}

// TestJSONReopen: after logrotate renames the file, Reopen (SIGHUP) starts a new one.
func TestJSONReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spip.json")
	js, err := sink.NewJSON(path, record.NewEncoder("t"), 64)
	if err != nil {
		t.Fatal(err)
	}
	fan := sink.NewFanout()
	fan.Add(js)
	fan.Start()
	js.Offer(connection(1))
	waitFor(t, "the first record", func() bool { return js.Stats().Written == 1 })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	fan.Reopen()
	waitFor(t, "the reopen", func() bool { _, err := os.Stat(path); return err == nil })
	js.Offer(connection(2))
	fan.Stop(context.Background())
	old, _ := readLines(t, path+".1")
	cur, _ := readLines(t, path)
	if len(old) != 1 || len(cur) != 1 || cur[0]["source_port"] != float64(1026) {
		t.Errorf("rotated: %v, current: %v", old, cur)
	}
}

// TestJSONEndsTornLine: a file left ending inside a line (a crash, a full disk) gets that line
// ended before spip appends, so the first new record parses.
func TestJSONEndsTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spip.json")
	if err := os.WriteFile(path, []byte(`{"timestamp":1,"payl`), 0o640); err != nil {
		t.Fatal(err)
	}
	js, err := sink.NewJSON(path, record.NewEncoder("t"), 64)
	if err != nil {
		t.Fatal(err)
	}
	fan := sink.NewFanout()
	fan.Add(js)
	fan.Start()
	js.Offer(connection(1))
	fan.Stop(context.Background())
	good, bad := readLines(t, path)
	if len(good) != 1 || len(bad) != 1 {
		t.Errorf("good %v, bad %q: want the fragment alone on its line, then the record", good, bad)
	}
}

// TestJournalMissingSocket: a journald that is not there is one fault report, not a report per
// batch: the warnings spip logs about it go through the same sink and must not feed a loop.
func TestJournalMissingSocket(t *testing.T) {
	js, err := sink.NewJournal(filepath.Join(t.TempDir(), "none"), record.NewEncoder("t"), 64)
	if err != nil {
		t.Fatal(err)
	}
	fan := sink.NewFanout()
	fan.Add(js)
	var mu sync.Mutex
	var reports []fault
	fan.OnFault(func(name string, err error, recovered bool) {
		mu.Lock()
		reports = append(reports, fault{name, err, recovered})
		mu.Unlock()
		// As serve does: the report is itself a record for every sink.
		fan.Emit(&record.Record{Kind: record.KindWarning, Time: time.Now(), Message: "sink fault"})
	})
	fan.Start()
	const offered = 20
	for i := 0; i < offered; i++ {
		js.Offer(connection(i))
		want := uint64(i + 1)
		waitFor(t, "the record to fail", func() bool { return js.Stats().Failed >= want })
	}
	fan.Stop(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 1 || reports[0].recovered {
		t.Errorf("%d fault reports, want one failing report: %+v", len(reports), reports)
	}
	if st := js.Stats(); st.Written != 0 || !st.Faulty {
		t.Errorf("stats %+v, want nothing written and the sink faulty", st)
	}
}

// TestQueueBytesBound: with payloads of 64 KiB a queue of many records would hold gigabytes; the
// byte bound drops the excess and counts it, and lets spip's own records through.
func TestQueueBytesBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadBuffer(4096) // nobody reads: the writer stalls and the queue fills

	js, err := sink.NewJournal(path, record.NewEncoder("t"), 100000)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 4 << 20
	js.LimitBytes(limit)
	fan := sink.NewFanout()
	fan.Add(js)
	fan.Start()
	payload := bytes.Repeat([]byte("x"), 64<<10)
	const offered = 400 // 25 MiB of payload
	taken := 0
	for i := 0; i < offered; i++ {
		r := connection(i)
		r.Payload = payload
		if js.Offer(r) {
			taken++
		}
	}
	st := js.Stats()
	t.Logf("offered %d records of 64 KiB: taken %d, dropped %d, queued %d holding %d bytes", offered, taken, st.Dropped, st.Queued, st.QueuedBytes)
	if st.QueuedBytes > limit {
		t.Errorf("queue holds %d bytes, over the %d bound", st.QueuedBytes, limit)
	}
	// The writer may hold a batch it took before stalling: those are written or failed, not queued.
	if taken > limit/(64<<10)+64 || st.Dropped != uint64(offered-taken) || st.Dropped == 0 {
		t.Errorf("taken %d, dropped %d of %d: want the excess over %d bytes dropped and counted", taken, st.Dropped, offered, limit)
	}
	if !js.Offer(&record.Record{Kind: record.KindSummary, Message: "lost records"}) {
		t.Error("a summary was refused by the byte bound: it must get through to account for the losses")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	fan.Stop(ctx)
	st = js.Stats()
	if st.QueuedBytes != 0 {
		t.Errorf("after stop the queue is counted as holding %d bytes, want 0", st.QueuedBytes)
	}
	if got := st.Written + st.Failed + st.Dropped; got != offered+1 {
		t.Errorf("written %d + failed %d + dropped %d = %d, want every one of %d offers accounted", st.Written, st.Failed, st.Dropped, got, offered+1)
	}
}

// TestJSONStopWhileFIFOStalled: a JSON mirror on a FIFO nobody reads fills the pipe and its
// write blocks; Stop must still return once its drain deadline passes, with every offered
// record written, dropped or failed. Before, the blocked write held Stop (and the sensor's
// shutdown) for as long as nobody read.
func TestJSONStopWhileFIFOStalled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mirror.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	js, err := sink.NewJSON(path, record.NewEncoder("t"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	fan := sink.NewFanout()
	fan.Add(js)
	fan.Start()
	const offered = 2000 // about 1 MiB of JSON: far more than a pipe holds
	for i := 0; i < offered; i++ {
		r := connection(i)
		r.Payload = bytes.Repeat([]byte{'x'}, 400)
		js.Offer(r)
	}
	// Past one check (checkEvery), which must not have put the FIFO in blocking mode.
	for i := 0; i < 100 && js.Stats().Blocked < 2500*time.Millisecond; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if b := js.Stats().Blocked; b == 0 {
		t.Fatalf("the write to the unread FIFO is not blocked: %+v", js.Stats())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() {
		fan.Stop(ctx)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Stop did not return 30s after its 300ms drain deadline: the blocked write holds it")
	}
	st := js.Stats()
	t.Logf("after stop: %+v", st)
	if st.Written+st.Dropped+st.Failed != offered || st.Queued != 0 {
		t.Errorf("after stop: %+v, want all %d offers accounted", st, offered)
	}
	if st.Dropped+st.Failed == 0 {
		t.Errorf("nothing counted as lost, yet nobody read the FIFO: %+v", st)
	}
}
