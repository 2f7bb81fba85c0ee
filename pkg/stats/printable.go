package stats

// Printable renders bytes a stranger chose so that they can do nothing to a terminal: printable
// ASCII stays, a backslash doubles, \t \r \n print as such escapes, and every other byte
// (control characters, escape sequences, anything not ASCII, so no bidirectional overrides or
// look-alike letters either) prints as \xNN. It never returns a byte outside 0x20-0x7e.
func Printable(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c == '\\':
			out = append(out, '\\', '\\')
		case c == '\t':
			out = append(out, '\\', 't')
		case c == '\r':
			out = append(out, '\\', 'r')
		case c == '\n':
			out = append(out, '\\', 'n')
		case c >= 0x20 && c < 0x7f:
			out = append(out, c)
		default:
			out = append(out, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		}
	}
	return string(out)
}

const hexDigits = "0123456789abcdef"
