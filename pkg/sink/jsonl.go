package sink

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"spip/pkg/record"
)

// jsonBatchMax is the buffered size at which a batch is written even if more records are queued.
const jsonBatchMax = 256 << 10

// jsonl writes JSON lines to a file (appending) or to standard output.
type jsonl struct {
	path    string
	mu      sync.Mutex // guards f against interrupt, which runs on another goroutine
	f       *os.File
	inWrite *atomic.Int64 // the sink's: set while a write to the file is in progress
	enc     *record.Encoder
	buf     []byte
	pending int // records in buf
	lost    int // lost by writes since the last flush
	err     error
	torn    bool // the file ends inside a line a failed write left behind
}

// NewJSON returns a sink writing JSON lines to path ("-" is standard output). The file is
// opened now, so a bad path fails at start-up, not with the first record.
func NewJSON(path string, enc *record.Encoder, queueSize int) (*Sink, error) {
	j := &jsonl{path: path, enc: enc, buf: make([]byte, 0, jsonBatchMax+8192)}
	if err := j.open(); err != nil {
		return nil, err
	}
	s := newSink("json", j, queueSize)
	j.inWrite = &s.inWrite
	return s, nil
}

func (j *jsonl) open() error {
	if j.path == "-" {
		j.f = os.Stdout
		return nil
	}
	// Read-write only to look at the last byte; a file spip may only write is fine too.
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if errors.Is(err, os.ErrPermission) {
		f, err = os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	}
	if err != nil {
		return fmt.Errorf("json sink: %w", err)
	}
	j.mu.Lock()
	j.f = f
	j.mu.Unlock()
	// A file that ends inside a line (a full disk, a crash mid-write) gets that line ended
	// before the first record.
	j.torn = false
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], fi.Size()-1); err == nil && last[0] != '\n' {
			j.torn = true
		}
	}
	return nil
}

func (j *jsonl) put(r *record.Record) (bool, error) {
	j.buf = j.enc.AppendJSON(j.buf, r)
	j.pending++
	if len(j.buf) >= jsonBatchMax {
		// Keep the batch bounded in bytes; flush reports what this write lost.
		j.write()
	}
	return true, nil
}

func (j *jsonl) write() {
	if j.pending == 0 {
		return
	}
	if j.torn {
		// End the torn line first, so the next record starts a line of its own instead of
		// being glued to a fragment that no reader could parse.
		if _, err := j.f.Write([]byte{'\n'}); err != nil {
			j.lost += j.pending
			j.err = fmt.Errorf("json sink: %w", err)
			j.buf = j.buf[:0]
			j.pending = 0
			return
		}
		j.torn = false
	}
	j.inWrite.Store(time.Now().UnixNano())
	n, err := j.f.Write(j.buf)
	j.inWrite.Store(0)
	if err != nil {
		// Count the records whose line did not reach the file whole; a torn last line is lost too.
		j.lost += j.pending - countLines(j.buf[:n])
		j.err = fmt.Errorf("json sink: %w", err)
		if n > 0 && j.buf[n-1] != '\n' && !j.cutTorn(n-(bytes.LastIndexByte(j.buf[:n], '\n')+1)) {
			j.torn = true
		}
	}
	j.buf = j.buf[:0]
	j.pending = 0
}

// cutTorn removes the last tail bytes, the fragment of a line a failed write left, so the file
// holds only whole records. It reports whether it could.
func (j *jsonl) cutTorn(tail int) bool {
	fi, err := j.f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < int64(tail) {
		return false
	}
	return j.f.Truncate(fi.Size()-int64(tail)) == nil
}

func (j *jsonl) flush() (int, error) {
	j.write()
	lost, err := j.lost, j.err
	j.lost, j.err = 0, nil
	if cap(j.buf) > 4*jsonBatchMax {
		j.buf = make([]byte, 0, jsonBatchMax+8192) // one huge record must not pin its buffer forever
	}
	return lost, err
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

// check notices a file that was deleted or renamed away (rotation without SIGHUP) and reopens it,
// so records do not go on vanishing into an unlinked inode.
func (j *jsonl) check() error {
	if j.path == "-" {
		return nil
	}
	// Stat, not Fstat of Fd(): Fd puts the file in blocking mode, and a write to a FIFO could
	// then no longer be cut by interrupt.
	fi, err := j.f.Stat()
	if err != nil {
		return fmt.Errorf("json sink: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	var cur syscall.Stat_t
	err = syscall.Stat(j.path, &cur)
	if err == nil && cur.Ino == st.Ino && cur.Dev == st.Dev {
		return nil
	}
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("json sink: %w", err)
	}
	return j.reopen()
}

func (j *jsonl) reopen() error {
	if j.path == "-" {
		return nil
	}
	old := j.f
	if err := j.open(); err != nil {
		return err
	}
	return old.Close()
}

// interrupt cuts a write blocked in a pipe or FIFO (files the runtime polls: a deadline reaches
// them); a regular file's write does not block, and standard output inherited in blocking mode
// cannot be cut.
func (j *jsonl) interrupt() {
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.f.SetWriteDeadline(time.Unix(1, 0))
}

func (j *jsonl) close() error {
	if j.path == "-" {
		return nil
	}
	return j.f.Close()
}
