package ship

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

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
