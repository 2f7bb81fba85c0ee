// Package journalfile writes real journal files for tests: spip's records through systemd-journal-remote.
package journalfile

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"spip/pkg/record"
	"spip/pkg/test/netns"
)

// Tool is Debian's systemd-journal-remote (package systemd-journal-remote).
const Tool = "/lib/systemd/systemd-journal-remote"

// bootID is the _BOOT_ID of every entry written here, and bootTime when that boot began.
const bootID = "5be00000000000000000000000000001"

var bootTime = time.Now().Add(-time.Hour)

// Writer appends records to one journal file in a directory that journalctl -D reads. Entries
// go in as journalctl -o export would print them, through journal-remote, which writes the file
// as journald would (indexed, followed by journalctl --follow).
type Writer struct {
	Path string
	enc  *record.Encoder
	cmd  *exec.Cmd
	in   *bufio.Writer
	pipe interface{ Close() error }
	mu   sync.Mutex
	buf  []byte
	mono uint64
	done chan error
}

// Open starts journal-remote writing dir/name.journal; it stops when the test ends.
func Open(t testing.TB, dir, name, sensor string) *Writer {
	t.Helper()
	netns.RequireTools(t, Tool)
	w := &Writer{Path: filepath.Join(dir, name+".journal"), enc: record.NewEncoder(sensor), done: make(chan error, 1)}
	w.cmd = exec.Command(Tool, "-o", w.Path, "-")
	out, err := os.Create(filepath.Join(dir, "."+name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	w.cmd.Stdout, w.cmd.Stderr = out, out
	in, err := w.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.pipe, w.in = in, bufio.NewWriterSize(in, 1<<20)
	go func() { w.done <- w.cmd.Wait(); out.Close() }()
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// Write appends records, stamped with the journal's receive time now.
func (w *Writer) Write(rs ...*record.Record) error {
	return w.WriteAt(time.Time{}, rs...)
}

// WriteAt appends records stamped as received at t (zero: now), as journal-remote stores a
// sensor's backlog uploaded late: with the sensor's own, older, times.
func (w *Writer) WriteAt(t time.Time, rs ...*record.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range rs {
		w.mono = max(w.mono+1, uint64(time.Since(bootTime).Microseconds()))
		b := w.buf[:0]
		b = append(b, "__REALTIME_TIMESTAMP="...)
		at := t
		if at.IsZero() {
			at = time.Now()
		}
		b = strconv.AppendInt(b, at.UnixMicro(), 10)
		// One monotonic clock for every writer, as on one boot: journalctl orders entries of
		// one boot id by it when it merges files.
		b = append(b, "\n__MONOTONIC_TIMESTAMP="...)
		b = strconv.AppendUint(b, w.mono, 10)
		b = append(b, "\n_BOOT_ID="+bootID+"\n_HOSTNAME=sensor\n"...)
		b = w.enc.AppendJournal(b, r)
		b = append(b, '\n')
		w.buf = b
		if _, err := w.in.Write(b); err != nil {
			return fmt.Errorf("journal-remote: %w", err)
		}
	}
	return nil
}

// Flush hands what was written to journal-remote.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.in.Flush()
}

// Close ends the stream and waits until journal-remote has written and closed the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.in == nil {
		w.mu.Unlock()
		return nil
	}
	err := w.in.Flush()
	_ = w.pipe.Close()
	w.in = nil
	w.mu.Unlock()
	select {
	case werr := <-w.done:
		if err == nil && werr != nil {
			err = fmt.Errorf("journal-remote: %w", werr)
		}
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		err = fmt.Errorf("journal-remote did not finish")
	}
	return err
}
