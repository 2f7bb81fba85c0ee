package stats

import (
	"bytes"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

var errJSON = errors.New("not a JSON object of spip's")

// parseJSONLine reads one record of the JSON mirror, in spip's format (a flat object) or in
// ECS (output.json_format = "ecs": nested objects, dotted names from record.Fields). Values of
// the slots the report reads land in r (strings unescaped into arena, which must have room for
// len(line) more bytes so that it never moves); every other key is skipped. It is a scanner for
// spip's own lines, several times faster than encoding/json, and strict enough that a damaged
// line is an error rather than a wrong record.
func parseJSONLine(line []byte, r *raw, arena *[]byte) error {
	i := skipSpace(line, 0)
	var path [maxPath]byte
	end, err := parseObject(line, i, path[:0], r, arena, 0)
	if err != nil {
		return err
	}
	if skipSpace(line, end) != len(line) {
		return errJSON
	}
	return nil
}

// maxPath and maxDepth bound the nesting a line may have; ECS documents are three deep.
const (
	maxPath  = 128
	maxDepth = 8
)

// parseObject reads the object at line[i] whose keys sit under path ("" at the top, "source."
// inside "source") and returns the index after it.
func parseObject(line []byte, i int, path []byte, r *raw, arena *[]byte, depth int) (int, error) {
	if i >= len(line) || line[i] != '{' {
		return 0, errJSON
	}
	i = skipSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(line) || line[i] != '"' {
			return 0, errJSON
		}
		end, esc := stringEnd(line, i+1)
		if end < 0 {
			return 0, errJSON
		}
		key := line[i+1 : end]
		var s slot
		want := false
		if !esc {
			if len(path) == 0 {
				s, want = jsonIndex.lookup(key)
			} else if len(path)+len(key) <= maxPath {
				s, want = ecsSlots[string(append(path, key...))]
			}
		}
		i = skipSpace(line, end+1)
		if i >= len(line) || line[i] != ':' {
			return 0, errJSON
		}
		i = skipSpace(line, i+1)
		if i >= len(line) {
			return 0, errJSON
		}
		switch c := line[i]; {
		case c == '"':
			end, esc := stringEnd(line, i+1)
			if end < 0 {
				return 0, errJSON
			}
			if want {
				v := line[i+1 : end]
				if esc {
					start := len(*arena)
					out, ok := unescape(*arena, v)
					if !ok {
						return 0, errJSON
					}
					*arena = out
					v = out[start:len(out):len(out)]
				}
				r[s] = v
			}
			i = end + 1
		case c == '{' && !esc && depth < maxDepth && len(path)+len(key)+1 <= maxPath:
			end, err := parseObject(line, i, append(append(path, key...), '.'), r, arena, depth+1)
			if err != nil {
				return 0, err
			}
			i = end
		case c == '{' || c == '[':
			end := skipNested(line, i)
			if end < 0 {
				return 0, errJSON
			}
			i = end
		default:
			j := i
			for j < len(line) && line[j] != ',' && line[j] != '}' && line[j] != ' ' && line[j] != '\t' {
				j++
			}
			if j == i {
				return 0, errJSON
			}
			if want && !bytes.Equal(line[i:j], []byte("null")) {
				r[s] = line[i:j]
			}
			i = j
		}
		i = skipSpace(line, i)
		if i >= len(line) {
			return 0, errJSON
		}
		if line[i] == '}' {
			return i + 1, nil
		}
		if line[i] != ',' {
			return 0, errJSON
		}
		i = skipSpace(line, i+1)
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// stringEnd returns the index of the quote that closes the string starting at i, and whether
// the string holds escapes; -1 when it does not close.
func stringEnd(b []byte, i int) (int, bool) {
	esc := false
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1, esc
		}
		q := i + j
		// The quote is escaped when an odd number of backslashes precede it.
		n := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if !esc && bytes.IndexByte(b[i:q], '\\') >= 0 {
			esc = true
		}
		if n%2 == 0 {
			return q, esc
		}
		i = q + 1
	}
}

// skipNested skips an object or array starting at i and returns the index after it.
func skipNested(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		case '"':
			end, _ := stringEnd(b, i+1)
			if end < 0 {
				return -1
			}
			i = end
		}
		i++
	}
	return -1
}

// unescape appends the JSON string body v, unescaped, to out.
func unescape(out, v []byte) ([]byte, bool) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(v) {
			return out, false
		}
		switch v[i] {
		case '"', '\\', '/':
			out = append(out, v[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(v[i+1:])
			if !ok {
				return out, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if i+6 < len(v) && v[i+1] == '\\' && v[i+2] == 'u' {
					r2, ok = hex4(v[i+3:])
				}
				if ok {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						r = d
						i += 6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return out, false
		}
	}
	return out, true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
