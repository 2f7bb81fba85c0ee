package export

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// binField is NAME, a newline, the length, the value and a newline: how journalctl -o export
// writes a value that is not printable text.
func binField(name string, v []byte) string {
	var b []byte
	b = append(b, name...)
	b = append(b, '\n')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
	b = append(b, v...)
	return string(append(b, '\n'))
}

func TestReader(t *testing.T) {
	payload := []byte("GET / HTTP/1.1\r\n\r\nMESSAGE=forged\n\x00\xff")
	stream := "__CURSOR=s=abc;i=1\n__REALTIME_TIMESTAMP=1700000000000000\nMESSAGE=a=b\nSPIP_EVENT=connection\n" +
		binField("SPIP_PAYLOAD", payload) + "SPIP_SOURCE_PORT=40000\n\n" +
		"\n" + // stray blank lines between entries are skipped
		"__CURSOR=s=abc;i=2\nSPIP_EVENT=summary\n" // the last entry may lack its blank line
	r := NewReader(strings.NewReader(stream))
	e, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, want string }{
		{"__CURSOR", "s=abc;i=1"},
		{"MESSAGE", "a=b"},
		{"SPIP_PAYLOAD", string(payload)},
		{"SPIP_SOURCE_PORT", "40000"},
	}
	for _, tt := range tests {
		if got := e.String(tt.name); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, got, tt.want)
		}
	}
	if n, ok := e.Uint("__REALTIME_TIMESTAMP"); !ok || n != 1700000000000000 {
		t.Errorf("Uint(__REALTIME_TIMESTAMP) = %d, %v", n, ok)
	}
	if len(e) != 6 {
		t.Errorf("%d fields, want 6: %q", len(e), e)
	}
	if e, err = r.Next(); err != nil || e.String("SPIP_EVENT") != "summary" {
		t.Fatalf("second entry: %q, %v", e, err)
	}
	if _, err = r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last entry: %v, want io.EOF", err)
	}
}

func TestReaderMalformed(t *testing.T) {
	tests := []struct{ name, in string }{
		{"cut in a text field", "MESSAGE=x\nSPIP_A"},
		{"short length", "SPIP_PAYLOAD\n\x01\x00"},
		{"value cut off", "SPIP_PAYLOAD\n\x10\x00\x00\x00\x00\x00\x00\x00abc"},
		{"no newline after value", "SPIP_PAYLOAD\n\x01\x00\x00\x00\x00\x00\x00\x00ab\n"},
		{"length past the bound", "SPIP_PAYLOAD\n\xff\xff\xff\xff\xff\xff\xff\x7f"},
	}
	for _, tt := range tests {
		r := NewReader(strings.NewReader(tt.in))
		r.MaxField = 1 << 20
		_, err := r.Next()
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", tt.name, err)
		}
	}
}

// TestReaderLongLine: a text line longer than the read buffer is still one field.
func TestReaderLongLine(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 1<<20)
	e, err := NewReader(strings.NewReader("SPIP_PAYLOAD_HEX=" + string(long) + "\n\n")).Next()
	if err != nil || !bytes.Equal(e[0].Value, long) {
		t.Fatalf("long line: %d bytes, %v", len(e[0].Value), err)
	}
}
