package ship

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cursorSaver writes the newest acknowledged cursor in the background. Each save costs two
// fsyncs (0.5-0.7 s each were measured on a busy disk), which must not stall the INSERTs; any
// acknowledged cursor is a correct restart point, so saves coalesce: a crash only means
// sending a few acknowledged batches again, which the tables remove.
type cursorSaver struct {
	dir     string
	failed  func(error)
	mu      sync.Mutex
	pending string
	saved   string
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
}

func newCursorSaver(dir, saved string, failed func(error)) *cursorSaver {
	c := &cursorSaver{dir: dir, failed: failed, saved: saved, pending: saved,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// offer makes cursor the next one to save.
func (c *cursorSaver) offer(cursor string) {
	c.mu.Lock()
	c.pending = cursor
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *cursorSaver) run() {
	defer close(c.done)
	for {
		select {
		case <-c.wake:
		case <-c.quit:
			c.save()
			return
		}
		for !c.save() {
			// The records are in ClickHouse; only a restart would send them again. Keep
			// trying, visibly (STATUS= shows the error).
			select {
			case <-c.quit:
				return
			case <-time.After(maxBackoff):
			}
		}
	}
}

// save writes the pending cursor if it is new; it reports success.
func (c *cursorSaver) save() bool {
	c.mu.Lock()
	cur := c.pending
	c.mu.Unlock()
	if cur == c.saved || cur == "" {
		return true
	}
	if err := saveCursor(c.dir, cur); err != nil {
		c.failed(err)
		return false
	}
	c.saved = cur
	return true
}

// stop saves the last cursor offered and ends the saver.
func (c *cursorSaver) stop() {
	close(c.quit)
	<-c.done
}

// cursorFile is the file in the state directory that holds the cursor of the last entry
// ClickHouse acknowledged.
const cursorFile = "cursor"

// loadCursor returns the saved cursor, or "" when there is none yet.
func loadCursor(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, cursorFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cursor: %w", err)
	}
	c := strings.TrimSpace(string(b))
	if c != "" && !validCursor(c) {
		return "", fmt.Errorf("cursor: %s holds no journal cursor", filepath.Join(dir, cursorFile))
	}
	return c, nil
}

// saveCursor replaces the cursor file atomically and durably: a crash leaves the old cursor or
// the new one, never a torn file.
func saveCursor(dir, cursor string) error {
	tmp, err := os.CreateTemp(dir, cursorFile+".*")
	if err != nil {
		return fmt.Errorf("cursor: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(cursor + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("cursor: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("cursor: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cursor: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, cursorFile)); err != nil {
		return fmt.Errorf("cursor: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cursor: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cursor: %w", err)
	}
	return nil
}

// cursorInfo is what a journald cursor says about its entry: the sequence number id and
// number (every entry of a journal gets the next one) and the wall-clock time.
type cursorInfo struct {
	seqnumID string
	seqnum   uint64
	realtime time.Time
	ok       bool
}

func validCursor(c string) bool {
	return len(c) < 512 && parseCursor(c).ok && !strings.ContainsAny(c, "\n\x00")
}

// parseCursor reads "s=…;i=…;b=…;m=…;t=…;x=…" (sd_journal_get_cursor's format).
func parseCursor(c string) cursorInfo {
	var ci cursorInfo
	var haveSeq, haveTime bool
	for _, kv := range strings.Split(c, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "s":
			ci.seqnumID = v
		case "i":
			n, err := strconv.ParseUint(v, 16, 64)
			ci.seqnum, haveSeq = n, err == nil
		case "t":
			n, err := strconv.ParseUint(v, 16, 64)
			if err == nil {
				ci.realtime, haveTime = time.UnixMicro(int64(n)), true
			}
		}
	}
	ci.ok = ci.seqnumID != "" && haveSeq && haveTime
	return ci
}
