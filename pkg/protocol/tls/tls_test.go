package tls

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ext is one extension for a built ClientHello.
type ext struct {
	typ  uint16
	data []byte
}

func u16(v int) []byte { return []byte{byte(v >> 8), byte(v)} }

func vec16(b []byte) []byte { return append(u16(len(b)), b...) }

func vec8(b []byte) []byte { return append([]byte{byte(len(b))}, b...) }

func list16(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = append(b, u16(int(v))...)
	}
	return b
}

func sniExt(name string) ext {
	return ext{0x0000, vec16(append([]byte{0}, vec16([]byte(name))...))}
}

func alpnExt(vals ...string) ext {
	var l []byte
	for _, v := range vals {
		l = append(l, vec8([]byte(v))...)
	}
	return ext{0x0010, vec16(l)}
}

func versionsExt(vs ...uint16) ext { return ext{0x002b, vec8(list16(vs...))} }

func sigExt(vs ...uint16) ext { return ext{0x000d, vec16(list16(vs...))} }

// hello builds a ClientHello handshake message (not yet in a record).
func hello(ciphers []uint16, exts []ext) []byte {
	body := append(u16(0x0303), make([]byte, 32)...)
	body = append(body, vec8(nil)...)
	body = append(body, vec16(list16(ciphers...))...)
	body = append(body, 1, 0)
	if exts != nil {
		var e []byte
		for _, x := range exts {
			e = append(e, u16(int(x.typ))...)
			e = append(e, vec16(x.data)...)
		}
		body = append(body, vec16(e)...)
	}
	n := len(body)
	return append([]byte{1, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

// records wraps msg in TLS records of at most size bytes each.
func records(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 0x16, 3, 1)
		out = append(out, u16(n)...)
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// specExample is the ClientHello of JA4.md's example: its ciphers and extensions in the order
// the document lists them, its signature algorithms, SNI, ALPN h2 and TLS 1.3.
func specExample(sig ext) []byte {
	ciphers := []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035}
	var exts []ext
	for _, t := range []uint16{0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015} {
		switch t {
		case 0x0000:
			exts = append(exts, sniExt("example.com"))
		case 0x0010:
			exts = append(exts, alpnExt("h2", "http/1.1"))
		case 0x000d:
			exts = append(exts, sig)
		case 0x002b:
			exts = append(exts, versionsExt(0x0a0a, 0x0304, 0x0303))
		default:
			exts = append(exts, ext{t, nil})
		}
	}
	return records(hello(append([]uint16{0x2a2a}, ciphers...), append([]ext{{0x3a3a, nil}}, exts...)), 1<<14)
}

func TestSpecExample(t *testing.T) {
	sig := sigExt(0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)
	h := Parse(specExample(sig))
	if want := "t13d1516h2_8daaf6152771_e5627efa2ab1"; h.JA4 != want {
		t.Errorf("JA4 = %q, want %q (JA4.md's example)", h.JA4, want)
	}
	// JA4.md: with no signature algorithms the extension list is hashed alone.
	h = Parse(specExample(sigExt()))
	if want := "t13d1516h2_8daaf6152771_6d807ffa2a79"; h.JA4 != want {
		t.Errorf("JA4 without signature algorithms = %q, want %q", h.JA4, want)
	}
	if h.SNI != "example.com" || strings.Join(h.ALPN, ",") != "h2,http/1.1" || VersionName(h.Version) != "1.3" {
		t.Errorf("facts = %+v", h)
	}
}

// TestCaptured checks the ClientHellos real clients on Debian 12 sent, captured once into
// testdata/clienthello, against the JA4 worked out by hand from the specification next to each.
func TestCaptured(t *testing.T) {
	files, _ := filepath.Glob("testdata/clienthello/*.bin")
	if len(files) < 5 {
		t.Fatalf("%d captures, want at least 5", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want := expected(t, strings.TrimSuffix(f, ".bin")+".ja4.txt")
			h := Parse(raw)
			got := map[string]string{"ja4": h.JA4, "sni": h.SNI, "alpn": strings.Join(h.ALPN, ","), "version": VersionName(h.Version)}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("%s = %q, want %q", k, got[k], w)
				}
			}
			// The same bytes split into many small records, as a client may send them.
			msg, ok := handshake(raw)
			if !ok {
				t.Fatal("no handshake")
			}
			n := len(msg) + 4
			split := records(append([]byte{1, byte(len(msg) >> 16), byte(len(msg) >> 8), byte(len(msg))}, msg...), 100)
			if n <= 100 {
				t.Fatal("capture too small to split")
			}
			if h2 := Parse(split); h2.JA4 != h.JA4 || h2.SNI != h.SNI {
				t.Errorf("split over records: %+v, want %+v", h2, h)
			}
		})
	}
}

func expected(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			m[k] = v
		}
	}
	if m["ja4"] == "" {
		t.Fatalf("%s: no ja4= line", path)
	}
	return m
}

func TestALPNChars(t *testing.T) {
	// The examples are JA4.md's own, byte for byte.
	for _, c := range []struct {
		in   []byte
		want string
	}{
		{nil, "00"},
		{[]byte{}, "00"},
		{[]byte("h2"), "h2"},
		{[]byte("http/1.1"), "h1"},
		{[]byte("a"), "aa"},
		{[]byte{0xab}, "ab"},
		{[]byte{0x20}, "20"},
		{[]byte{0xab, 0xcd}, "ad"},
		{[]byte{0x20, 0x61}, "21"},
		{[]byte{0x30, 0xab}, "3b"},
		{[]byte{0x61, 0x20}, "60"},
		{[]byte{0x30, 0x31, 0xab, 0xcd}, "3d"},
		{[]byte{0x30, 0xab, 0xcd, 0x31}, "01"},
	} {
		if got := ALPNChars(c.in); got != c.want {
			t.Errorf("ALPNChars(% x) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestHostile(t *testing.T) {
	base := []ext{sniExt("h.example"), alpnExt("h2"), versionsExt(0x0304), sigExt(0x0403)}
	many := make([]uint16, 120)
	for i := range many {
		many[i] = uint16(0x0100 + i)
	}
	manyExts := append([]ext{}, base...)
	for i := 0; i < 110; i++ {
		manyExts = append(manyExts, ext{uint16(0x1000 + i), nil})
	}
	long := strings.Repeat("a", 300)
	cases := []struct {
		name    string
		in      []byte
		prefix  string // JA4's a part
		sni     string
		sniCut  bool
		noJA4   bool
		cipherH string
	}{
		{name: "grease-only ciphers", in: records(hello([]uint16{0x0a0a, 0xfafa}, base), 1<<14), prefix: "t13d0004h2", cipherH: "000000000000", sni: "h.example"},
		{name: "99+ ciphers and extensions", in: records(hello(many, manyExts), 1<<14), prefix: "t13d9999h2", sni: "h.example"},
		{name: "duplicate extensions counted, first SNI kept", in: records(hello([]uint16{0x1301}, append([]ext{sniExt("first.example"), sniExt("second.example")}, base[1:]...)), 1<<14), prefix: "t13d0105h2", sni: "first.example"},
		{name: "zero-length SNI", in: records(hello([]uint16{0x1301}, append([]ext{sniExt("")}, base[1:]...)), 1<<14), prefix: "t13d0104h2"},
		{name: "empty SNI extension", in: records(hello([]uint16{0x1301}, append([]ext{{0, nil}}, base[1:]...)), 1<<14), prefix: "t13d0104h2"},
		{name: "SNI over 255 bytes", in: records(hello([]uint16{0x1301}, append([]ext{sniExt(long)}, base[1:]...)), 1<<14), prefix: "t13d0104h2", sni: long[:255], sniCut: true},
		{name: "no extensions", in: records(hello([]uint16{0x002f}, nil), 1<<14), prefix: "t12i010000", cipherH: "", sni: ""},
		{name: "non-alnum ALPN", in: records(hello([]uint16{0x1301}, []ext{alpnExt("\xab\xcd")}), 1<<14), prefix: "t12i0101ad"},
		{name: "empty ALPN value", in: records(hello([]uint16{0x1301}, []ext{alpnExt("")}), 1<<14), prefix: "t12i010100"},
		{name: "grease-only versions", in: records(hello([]uint16{0x1301}, []ext{versionsExt(0x1a1a)}), 1<<14), prefix: "t00i010100"},
		{name: "bad ALPN length", in: records(hello([]uint16{0x1301}, []ext{{0x0010, []byte{0, 3, 5, 'h'}}}), 1<<14), noJA4: true},
		{name: "odd cipher bytes", in: records(append([]byte{1, 0, 0, 41}, append(append(u16(0x0303), make([]byte, 32)...), 0, 0, 3, 1, 2, 3, 1, 0)...), 1<<14), noJA4: true},
		{name: "trailing bytes after extensions", in: records(withTrailing(hello([]uint16{0x1301}, []ext{alpnExt("h2")})), 1<<14), noJA4: true},
		{name: "server hello", in: records([]byte{2, 0, 0, 2, 3, 3}, 1<<14), noJA4: true},
		{name: "alert record", in: []byte{0x15, 3, 3, 0, 2, 2, 40}, noJA4: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := Parse(c.in)
			if c.noJA4 {
				if h.JA4 != "" || h.Complete || h.SNI != "" {
					t.Fatalf("malformed hello gave %+v", h)
				}
				return
			}
			if !strings.HasPrefix(h.JA4, c.prefix+"_") {
				t.Errorf("JA4 = %q, want prefix %q", h.JA4, c.prefix)
			}
			if c.cipherH != "" && !strings.Contains(h.JA4, "_"+c.cipherH+"_") {
				t.Errorf("JA4 = %q, want cipher hash %s", h.JA4, c.cipherH)
			}
			if h.SNI != c.sni || h.SNICut != c.sniCut {
				t.Errorf("SNI %q cut %v, want %q cut %v", h.SNI, h.SNICut, c.sni, c.sniCut)
			}
		})
	}
}

// TestTruncated cuts real ClientHellos at every length: never a JA4 from a part, always
// protocol tls once the record header is there.
func TestTruncated(t *testing.T) {
	files, _ := filepath.Glob("testdata/clienthello/*.bin")
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		full := Parse(raw)
		for n := 0; n < len(raw); n++ {
			h := Parse(raw[:n])
			if h.JA4 != "" && n < recordEnd(raw) {
				t.Fatalf("%s cut at %d: JA4 %q from a partial hello", f, n, h.JA4)
			}
			if h.HandshakeRec != (n >= 5) {
				t.Fatalf("%s cut at %d: HandshakeRec %v", f, n, h.HandshakeRec)
			}
		}
		// Bytes after the hello (a client's next records) change nothing.
		if h := Parse(append(bytes.Clone(raw), 0x14, 3, 3, 0, 1, 1)); h.JA4 != full.JA4 {
			t.Errorf("%s: trailing record changed JA4 to %q", f, h.JA4)
		}
	}
}

func recordEnd(raw []byte) int {
	n := 0
	for p := raw; IsRecord(p); {
		l := 5 + int(p[3])<<8 | int(p[4])
		n += l
		p = p[l:]
	}
	return n
}

func TestGREASE(t *testing.T) {
	n := 0
	for v := 0; v < 1<<16; v++ {
		if IsGREASE(uint16(v)) {
			n++
			if v&0xff != 0x0a && v&0xff != 0x1a && (v&0x0f) != 0x0a {
				t.Errorf("%04x", v)
			}
		}
	}
	if n != 16 {
		t.Errorf("%d GREASE values, want 16", n)
	}
}

// withTrailing adds a byte inside the message after its extensions.
func withTrailing(msg []byte) []byte {
	msg = append(bytes.Clone(msg), 0)
	n := len(msg) - 4
	msg[1], msg[2], msg[3] = byte(n>>16), byte(n>>8), byte(n)
	return msg
}
