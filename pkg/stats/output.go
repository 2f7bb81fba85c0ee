package stats

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// WriteJSON writes rep as one JSON document, indented. Everything outside printable ASCII is
// escaped (\u001b, \u202e, …), so the document is safe to print on a terminal too.
func WriteJSON(w io.Writer, rep *Report) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	_, err := w.Write(asciiJSON(buf.Bytes()))
	return err
}

// asciiJSON escapes every non-ASCII rune of encoded JSON as \uXXXX (outside strings there
// are none). encoding/json already escaped control characters and invalid UTF-8.
func asciiJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		i += n
		if r > 0xffff {
			r -= 0x10000
			out = appendU(out, 0xd800+(r>>10))
			out = appendU(out, 0xdc00+(r&0x3ff))
			continue
		}
		out = appendU(out, r)
	}
	return out
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// StyleFor picks the style for w in environment env: colour only on a terminal and without
// NO_COLOR, Unicode only under a UTF-8 locale.
func StyleFor(w io.Writer, env []string) Style {
	get := func(k string) string {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	}
	st := Style{Width: 80, Color: IsTerminal(w) && get("NO_COLOR") == "" && get("TERM") != "dumb"}
	locale := get("LC_ALL")
	if locale == "" {
		locale = get("LC_CTYPE")
	}
	if locale == "" {
		locale = get("LANG")
	}
	l := strings.ToLower(locale)
	st.ASCII = !strings.Contains(l, "utf-8") && !strings.Contains(l, "utf8")
	return st
}
