package export

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// frame encodes fields in the binary form, which carries any value; a trailing blank line
// makes it an export-format entry too.
func frame(fields Entry) []byte {
	var b []byte
	for _, f := range fields {
		b = append(b, f.Name...)
		b = append(b, '\n')
		b = binary.LittleEndian.AppendUint64(b, uint64(len(f.Value)))
		b = append(b, f.Value...)
		b = append(b, '\n')
	}
	return b
}

func sameFields(t *testing.T, a, b Entry) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("round trip: %d fields, then %d", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i].Name, b[i].Name) || !bytes.Equal(a[i].Value, b[i].Value) {
			t.Fatalf("round trip: field %d %q=%q became %q=%q", i, a[i].Name, a[i].Value, b[i].Name, b[i].Value)
		}
	}
}

// FuzzParseDatagram feeds ParseDatagram arbitrary datagrams. It must never panic; a name it
// returns never holds '=' or a newline (it would be another field); and what it decodes, framed
// again, decodes to the same fields.
func FuzzParseDatagram(f *testing.F) {
	f.Add([]byte("MESSAGE=hello\nPRIORITY=6\n"))
	f.Add(frame(Entry{{[]byte("SPIP_PAYLOAD"), []byte("GET / HTTP/1.1\r\n\nMESSAGE_ID=x\n")}, {[]byte("SPIP_SOURCE_PORT"), []byte("1234")}}))
	f.Add([]byte("A\n\xff\xff\xff\xff\xff\xff\xff\xffx\n"))
	f.Add([]byte("NOEND"))
	f.Add([]byte("A=\n=\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fields, err := ParseDatagram(b)
		for _, fl := range fields {
			if bytes.ContainsAny(fl.Name, "=\n") {
				t.Fatalf("field name %q holds a separator", fl.Name)
			}
		}
		again, err2 := ParseDatagram(frame(fields))
		if err2 != nil {
			t.Fatalf("re-framed fields do not parse: %v", err2)
		}
		sameFields(t, fields, again)
		if err == nil && len(b) > 0 && len(fields) == 0 {
			t.Fatalf("%q parsed without error into no fields", b)
		}
	})
}

// FuzzReader feeds the export-stream decoder arbitrary bytes: it must never panic or allocate
// past MaxField for one value, names never hold a separator, and every entry it returns,
// framed again, decodes to the same fields.
func FuzzReader(f *testing.F) {
	f.Add([]byte("__CURSOR=s=1\nMESSAGE=hello\n\nMESSAGE=two\n\n"))
	f.Add(append(frame(Entry{{[]byte("SPIP_PAYLOAD"), []byte("a\nb\x00")}}), '\n'))
	f.Add([]byte("A\n\xff\xff\xff\xff\xff\xff\xff\x7fx\n\n"))
	f.Add([]byte("\n\n\nA=1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b))
		r.MaxField = 1 << 16
		for i := 0; i < 1000; i++ {
			e, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrFormat) {
					t.Fatalf("error %v wraps neither io.EOF nor ErrFormat", err)
				}
				return
			}
			for _, fl := range e {
				if bytes.ContainsAny(fl.Name, "=\n") {
					t.Fatalf("field name %q holds a separator", fl.Name)
				}
			}
			again, err := NewReader(bytes.NewReader(append(frame(e), '\n'))).Next()
			if err != nil {
				t.Fatalf("re-framed entry does not decode: %v", err)
			}
			sameFields(t, e, again)
		}
	})
}
