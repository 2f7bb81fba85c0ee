// Package export decodes journald's export format (`journalctl -o export`) and native-protocol datagrams, binary-safe.
package export

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Field is one decoded field. Name and Value point into the decoder's buffer: they are valid
// until the next call to Next.
type Field struct {
	Name  []byte
	Value []byte
}

// Entry is one journal entry: its fields in the order they came.
type Entry []Field

// Get returns the value of the first field called name.
func (e Entry) Get(name string) ([]byte, bool) {
	for _, f := range e {
		if string(f.Name) == name {
			return f.Value, true
		}
	}
	return nil, false
}

// String returns the value of the field called name as text, or "".
func (e Entry) String(name string) string {
	v, _ := e.Get(name)
	return string(v)
}

// Uint returns the value of the field called name as a decimal number.
func (e Entry) Uint(name string) (uint64, bool) {
	v, ok := e.Get(name)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	return n, err == nil
}

// DefaultMaxField bounds one field's value; journald itself stores at most 768 MiB, spip's
// fields are far below 1 MiB.
const DefaultMaxField = 64 << 20

// ErrFormat is wrapped by every error about malformed input.
var ErrFormat = errors.New("export: malformed input")

// Reader decodes an export stream entry by entry. It never reads more than MaxField bytes into
// one value, so a corrupt length cannot make it allocate without bound.
type Reader struct {
	r        *bufio.Reader
	MaxField int

	arena []byte
	spans []span
	entry Entry
}

type span struct{ nameStart, nameEnd, valStart, valEnd int }

// NewReader returns a Reader on r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 256<<10), MaxField: DefaultMaxField}
}

// Next returns the next entry, or io.EOF after the last one. The entry and its fields are
// valid until the next call.
func (d *Reader) Next() (Entry, error) {
	d.arena, d.spans = d.arena[:0], d.spans[:0]
	for {
		line, err := d.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) == 0 {
				if len(d.spans) > 0 {
					return d.finish(), nil // the last entry without its blank line
				}
				return nil, io.EOF
			}
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: entry cut off", ErrFormat)
			}
			return nil, err
		}
		if len(line) == 0 { // the blank line that ends an entry
			if len(d.spans) == 0 {
				continue
			}
			return d.finish(), nil
		}
		start := len(d.arena)
		d.arena = append(d.arena, line...)
		if i := bytes.IndexByte(line, '='); i >= 0 {
			d.spans = append(d.spans, span{start, start + i, start + i + 1, start + len(line)})
			continue
		}
		// Binary field: the name, a newline, a 64-bit little-endian length, the bytes, a newline.
		var n [8]byte
		if _, err := io.ReadFull(d.r, n[:]); err != nil {
			return nil, fmt.Errorf("%w: field %q: short length", ErrFormat, line)
		}
		size := binary.LittleEndian.Uint64(n[:])
		if size > uint64(d.MaxField) {
			return nil, fmt.Errorf("%w: field %q: %d bytes, more than %d", ErrFormat, line, size, d.MaxField)
		}
		valStart := len(d.arena)
		d.arena = append(d.arena, make([]byte, size)...)
		if _, err := io.ReadFull(d.r, d.arena[valStart:]); err != nil {
			return nil, fmt.Errorf("%w: field %q: value cut off", ErrFormat, line)
		}
		if c, err := d.r.ReadByte(); err != nil || c != '\n' {
			return nil, fmt.Errorf("%w: field %q: no newline after the value", ErrFormat, line)
		}
		d.spans = append(d.spans, span{start, valStart, valStart, valStart + int(size)})
	}
}

// readLine returns one line without its newline. A line longer than MaxField is an error.
func (d *Reader) readLine() ([]byte, error) {
	line, err := d.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(long) > d.MaxField {
				return nil, fmt.Errorf("%w: line longer than %d bytes", ErrFormat, d.MaxField)
			}
			line, err = d.r.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	if err != nil {
		return line, err
	}
	return line[:len(line)-1], nil
}

func (d *Reader) finish() Entry {
	d.entry = d.entry[:0]
	for _, s := range d.spans {
		d.entry = append(d.entry, Field{Name: d.arena[s.nameStart:s.nameEnd], Value: d.arena[s.valStart:s.valEnd]})
	}
	return d.entry
}

// ParseDatagram decodes one native-protocol datagram, as journald does: the same framing as the
// export format, one entry, no blank line. The fields are copies.
func ParseDatagram(b []byte) (Entry, error) {
	var out Entry
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '=' && b[i] != '\n' {
			i++
		}
		if i == len(b) {
			return out, fmt.Errorf("%w: field without end", ErrFormat)
		}
		name := append([]byte(nil), b[:i]...)
		rest := b[i+1:]
		if b[i] == '=' {
			j := bytes.IndexByte(rest, '\n')
			if j < 0 {
				return out, fmt.Errorf("%w: field %q without newline", ErrFormat, name)
			}
			out = append(out, Field{name, append([]byte(nil), rest[:j]...)})
			b = rest[j+1:]
			continue
		}
		if len(rest) < 8 {
			return out, fmt.Errorf("%w: field %q: short length", ErrFormat, name)
		}
		n := binary.LittleEndian.Uint64(rest)
		rest = rest[8:]
		if n > uint64(len(rest)) || uint64(len(rest))-n < 1 || rest[n] != '\n' {
			return out, fmt.Errorf("%w: field %q: bad binary length %d", ErrFormat, name, n)
		}
		out = append(out, Field{name, append([]byte(nil), rest[:n]...)})
		b = rest[n+1:]
	}
	return out, nil
}

// ValidName reports whether journald accepts name from a client: 1-64 of [A-Z0-9_], not
// starting with a digit or an underscore.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 64 || name[0] == '_' || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
