package journald

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// frame encodes fields in the native protocol's binary form, which carries any value.
func frame(fields []Field) []byte {
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

// FuzzJournalParse feeds Parse arbitrary datagrams. It must never panic; a name it returns never
// holds '=' or a newline (it would be another field); and what it decodes, framed again, decodes
// to the same fields.
func FuzzJournalParse(f *testing.F) {
	f.Add([]byte("MESSAGE=hello\nPRIORITY=6\n"))
	f.Add(frame([]Field{{"SPIP_PAYLOAD", []byte("GET / HTTP/1.1\r\n\nMESSAGE_ID=x\n")}, {"SPIP_SOURCE_PORT", []byte("1234")}}))
	f.Add([]byte("A\n\xff\xff\xff\xff\xff\xff\xff\xffx\n"))
	f.Add([]byte("NOEND"))
	f.Add([]byte("A=\n=\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fields, err := Parse(b)
		for _, fl := range fields {
			if strings.ContainsAny(fl.Name, "=\n") {
				t.Fatalf("field name %q holds a separator", fl.Name)
			}
		}
		again, err2 := Parse(frame(fields))
		if err2 != nil {
			t.Fatalf("re-framed fields do not parse: %v", err2)
		}
		if len(again) != len(fields) {
			t.Fatalf("round trip: %d fields, then %d", len(fields), len(again))
		}
		for i := range fields {
			if again[i].Name != fields[i].Name || !bytes.Equal(again[i].Value, fields[i].Value) {
				t.Fatalf("round trip: field %d %q=%q became %q=%q", i, fields[i].Name, fields[i].Value, again[i].Name, again[i].Value)
			}
		}
		if err == nil && len(b) > 0 && len(fields) == 0 {
			t.Fatalf("%q parsed without error into no fields", b)
		}
	})
}
