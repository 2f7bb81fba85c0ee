package tls

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: whatever the bytes, Parse never panics, keeps its bounds, and gives a JA4 only
// for a complete hello, in JA4's shape. Seeds: the captured hellos and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/clienthello/*.bin")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add(specExample(sigExt(0x0403)))
	f.Fuzz(func(t *testing.T, b []byte) {
		h := Parse(b)
		if h.JA4 != "" {
			if !h.Complete || len(h.JA4) != 36 || h.JA4[0] != 't' || strings.Count(h.JA4, "_") != 2 {
				t.Fatalf("JA4 %q (complete %v)", h.JA4, h.Complete)
			}
		}
		if len(h.SNI) > MaxSNI || len(h.ALPN) > MaxALPN {
			t.Fatalf("unbounded: %d SNI bytes, %d ALPN values", len(h.SNI), len(h.ALPN))
		}
		for _, v := range h.ALPN {
			if len(v) > MaxALPNValue {
				t.Fatalf("ALPN value of %d bytes", len(v))
			}
		}
	})
}
