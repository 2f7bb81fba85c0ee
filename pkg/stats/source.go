package stats

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"spip/pkg/export"
	"spip/pkg/record"
)

// Input says where records come from: the local journal (the default), a journal directory
// (a journal-remote collector's), or JSON-lines files.
type Input struct {
	Directory  string   // journalctl --directory
	Files      []string // JSON mirror files, plain or compressed; "-" is standard input
	Journalctl string   // the journalctl binary ("journalctl")
	Stdin      io.Reader
}

// Name is how the report names its source.
func (in Input) Name() string {
	switch {
	case len(in.Files) > 0:
		return "file " + strings.Join(in.Files, ", ")
	case in.Directory != "":
		return "journal directory " + in.Directory
	default:
		return "local journal"
	}
}

// Collect reads every record of in into a new aggregator and returns its report. read counts
// the records read so far, for a progress line.
func Collect(ctx context.Context, in Input, opt Options, read *atomic.Uint64) (*Report, error) {
	a := NewAggregator(opt)
	var err error
	if len(in.Files) > 0 {
		for _, f := range in.Files {
			if err = a.readFile(ctx, in, f, read); err != nil {
				break
			}
		}
	} else {
		err = a.readJournal(ctx, in, read)
	}
	if err != nil {
		return nil, err
	}
	return a.Report(in.Name()), nil
}

func (a *Aggregator) readFile(ctx context.Context, in Input, path string, read *atomic.Uint64) error {
	var f io.Reader
	if path == "-" {
		f = in.Stdin
	} else {
		file, err := os.Open(path)
		if err != nil {
			return err
		}
		defer file.Close()
		f = file
	}
	r, closeFn, err := decompress(ctx, f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	err = a.ReadJSON(ctx, r, read)
	if cerr := closeFn(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// decompress recognises gzip, bzip2, xz and zstd by their magic bytes (logrotate's compress
// uses gzip unless told otherwise) and returns a reader of the plain text.
func decompress(ctx context.Context, f io.Reader) (io.Reader, func() error, error) {
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(6)
	none := func() error { return nil }
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return z, z.Close, nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), none, nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return filter(ctx, br, "xz", "-dc")
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return filter(ctx, br, "zstd", "-dc")
	}
	return br, none, nil
}

// filter decompresses through an external program: Go's standard library reads neither xz nor
// zstd, and logrotate only makes them when told to.
func filter(ctx context.Context, r io.Reader, prog string, args ...string) (io.Reader, func() error, error) {
	if _, err := exec.LookPath(prog); err != nil {
		return nil, nil, fmt.Errorf("compressed with %s, which is not installed: %w", prog, err)
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdin = r
	var stderr bytes.Buffer
	cmd.Stderr = &limited{w: &stderr, n: 4096}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return out, func() error {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("%s: %w: %s", prog, err, strings.TrimSpace(stderr.String()))
		}
		return nil
	}, nil
}

// maxLine bounds one JSON line: spip's longest (64 KiB of payload, escaped and in hex) is far
// below it. A longer line is counted unreadable and skipped.
const maxLine = 1 << 20

// ReadJSON folds in the JSON-lines records of r.
func (a *Aggregator) ReadJSON(ctx context.Context, r io.Reader, read *atomic.Uint64) error {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < 256<<10 {
		br = bufio.NewReaderSize(r, 1<<20)
	}
	var arena, long []byte
	var rec raw
	n := uint64(0)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				if len(long) <= maxLine {
					long = append(long, line...)
				}
			}
			line = long
			if len(long) > maxLine {
				line = nil
				a.unreadable++
			}
		}
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			if len(line) > 0 {
				if cap(arena) < len(line) {
					arena = make([]byte, 0, len(line)*2)
				}
				arena = arena[:0]
				rec = raw{}
				if perr := parseJSONLine(line, &rec, &arena); perr != nil {
					a.unreadable++
				} else {
					a.Add(&rec)
				}
				if n++; n&1023 == 0 {
					if read != nil {
						read.Add(1024)
					}
					if ctx.Err() != nil {
						return ctx.Err()
					}
				}
			}
		}
		if err != nil {
			if read != nil {
				read.Add(n & 1023)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// untilSlack is how much longer than --until the journal is read: longer than any session
// (session.max_duration) lasts.
const untilSlack = time.Hour

// ErrJournalPermission says the journal holds entries this user may not read.
var ErrJournalPermission = errors.New("no permission to read the system journal: run as root or as a member of the systemd-journal (or adm) group")

// journalArgs are journalctl's arguments: export format, spip's fields only, and matches that
// select spip's records (and the sensor's, and for --port the connections to that port while
// keeping every summary and warning).
func journalArgs(in Input, opt Options) []string {
	args := []string{"-o", "export", "--no-pager"} // no -q: it silences the note about journals this user may not read
	if in.Directory != "" {
		args = append(args, "--directory", in.Directory)
	}
	if !opt.Since.IsZero() {
		args = append(args, "--since", "@"+strconv.FormatInt(opt.Since.Unix(), 10))
	}
	if !opt.Until.IsZero() {
		// journald stamps an entry when it is written, at the end of its session: a connection
		// accepted before --until may be written after it. Read on, and filter by accept time.
		args = append(args, "--until", "@"+strconv.FormatInt(opt.Until.Add(untilSlack).Unix(), 10))
	}
	var fields []string
	for s, k := range slotKeys {
		if k != "" && slot(s) != sPayloadHex && slot(s) != sMessage {
			fields = append(fields, k.JournalName())
		}
	}
	args = append(args, "--output-fields="+strings.Join(append(fields, "MESSAGE"), ","))
	base := []string{"SYSLOG_IDENTIFIER=spip"}
	if opt.Sensor != "" {
		base = append(base, record.KeySensor.JournalName()+"="+opt.Sensor)
	}
	if opt.Port == 0 {
		return append(args, base...)
	}
	args = append(args, base...)
	args = append(args, record.KeyDestinationPort.JournalName()+"="+strconv.Itoa(opt.Port), "+")
	args = append(args, base...)
	ev := record.KeyEvent.JournalName() + "="
	return append(args, ev+record.KindSummary.String(), ev+record.KindWarning.String(), ev+record.KindStarted.String())
}

func (a *Aggregator) readJournal(ctx context.Context, in Input, read *atomic.Uint64) error {
	bin := in.Journalctl
	if bin == "" {
		bin = "journalctl"
	}
	if in.Directory != "" {
		if _, err := os.ReadDir(in.Directory); err != nil {
			return fmt.Errorf("journal directory: %w", err)
		}
	} else if !systemJournalReadable() {
		return ErrJournalPermission
	}
	cmd := exec.CommandContext(ctx, bin, journalArgs(in, a.opt)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &limited{w: &stderr, n: 16 << 10}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("journalctl: %w", err)
	}
	rerr := a.readExport(ctx, out, read)
	if rerr != nil {
		_ = cmd.Process.Kill()
		_, _ = io.Copy(io.Discard, out)
	}
	werr := cmd.Wait()
	msg := strings.TrimSpace(stderr.String())
	if in.Directory == "" && permissionHint(msg) {
		return ErrJournalPermission
	}
	if permissionHint(msg) || strings.Contains(msg, "ermission denied") {
		return fmt.Errorf("%w (journalctl: %s)", ErrJournalPermission, firstLine(msg))
	}
	if rerr != nil {
		return rerr
	}
	if werr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("journalctl: %w: %s", werr, firstLine(msg))
	}
	return nil
}

// systemJournalReadable reports whether this user can read the local system journal, where
// spip's entries are: true when one of its files opens, or when there is none at all (then
// journalctl says what there is).
func systemJournalReadable() bool {
	files, _ := filepath.Glob("/var/log/journal/*/system*.journal")
	run, _ := filepath.Glob("/run/log/journal/*/system*.journal")
	files = append(files, run...)
	for _, f := range files {
		if fh, err := os.Open(f); err == nil {
			fh.Close()
			return true
		}
	}
	return len(files) == 0
}

// permissionHint recognises journalctl's notes that it could not open the journal files a user
// needs to see spip's entries (it still exits 0 and prints what it could open).
func permissionHint(msg string) bool {
	return strings.Contains(msg, "insufficient permissions") || strings.Contains(msg, "not seeing messages from other users")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// readExport folds in the entries of a journal export stream.
func (a *Aggregator) readExport(ctx context.Context, r io.Reader, read *atomic.Uint64) error {
	d := export.NewReader(r)
	d.MaxField = maxLine
	var rec raw
	n := uint64(0)
	for {
		e, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the journal export: %w", err)
		}
		rec = raw{}
		for _, f := range e {
			if s, ok := journalIndex.lookup(f.Name); ok {
				rec[s] = f.Value
			}
		}
		a.Add(&rec)
		if n++; n&1023 == 0 {
			if read != nil {
				read.Add(1024)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	if read != nil {
		read.Add(n & 1023)
	}
	return nil
}

// limited keeps the first n bytes written to it and discards the rest.
type limited struct {
	w *bytes.Buffer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.n - l.w.Len(); room > 0 {
		l.w.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
