package ship

import (
	"strconv"
	"strings"

	"spip/pkg/export"
	"spip/pkg/record"
)

// maxValue bounds one value the shipper sends: spip's largest (payload_hex of a 64 KiB payload)
// is 128 KiB. A longer value can only be a forged entry; it is dropped and counted.
const maxValue = 1 << 20

// valueKind is how a journal value becomes a JSONEachRow value for its column.
type valueKind uint8

const (
	kString  valueKind = iota // any bytes, escaped for ClickHouse's JSON reader
	kUint                     // decimal, checked against the column's width
	kInt                      // signed decimal, checked against the column's width
	kBool                     // true or false (a UInt8 column)
	kStrings                  // a journald list (AppendList) into Array(String)
)

// column is one ClickHouse column: a record field named as its JSON key.
type column struct {
	key     record.Key
	journal string // the journald field the value is read from
	chType  string
	kind    valueKind
	bits    int // for kUint and kInt
}

// table is one destination table's columns and the journald names that fill them.
type table struct {
	scope     record.Scope
	columns   []column
	byJournal map[string]int
}

func newTable(scope record.Scope) *table {
	t := &table{scope: scope, byJournal: map[string]int{}}
	for _, f := range record.Fields {
		if f.Scope&scope == 0 || f.ClickHouse == "" {
			continue
		}
		c := column{key: f.Key, journal: f.Key.JournalName(), chType: f.ClickHouse}
		if f.JSONOnly {
			// The JSON "message" is journald's own MESSAGE.
			c.journal = "MESSAGE"
		}
		switch {
		case f.Type == record.JSONBool:
			c.kind = kBool
		case f.Type == record.JSONStrings:
			c.kind = kStrings
		case strings.HasPrefix(f.ClickHouse, "UInt"):
			c.kind, c.bits = kUint, atoiOr(f.ClickHouse[4:], 64)
		case strings.HasPrefix(f.ClickHouse, "Int"):
			c.kind, c.bits = kInt, atoiOr(f.ClickHouse[3:], 64)
		}
		t.byJournal[c.journal] = len(t.columns)
		t.columns = append(t.columns, c)
	}
	return t
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

// rowStats counts what a conversion left out.
type rowStats struct {
	malformed int // values that did not fit their column: left to the column's default
}

// appendRow appends entry as one JSONEachRow line for t. Each column is written at most once
// (journald allows repeated fields; the first wins); fields t does not know are skipped, so a
// newer sensor's fields cannot break an older shipper. seen is scratch space of len(t.columns).
func (t *table) appendRow(b []byte, e export.Entry, seen []bool, st *rowStats) []byte {
	for i := range seen {
		seen[i] = false
	}
	b = append(b, '{')
	first := true
	for _, f := range e {
		i, ok := t.byJournal[string(f.Name)]
		if !ok || seen[i] {
			continue
		}
		seen[i] = true
		c := &t.columns[i]
		if len(f.Value) > maxValue {
			st.malformed++
			continue
		}
		mark := len(b)
		if !first {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, c.key...)
		b = append(b, '"', ':')
		var good bool
		b, good = c.appendValue(b, f.Value)
		if !good {
			st.malformed++
			b = b[:mark]
			continue
		}
		first = false
	}
	return append(b, '}', '\n')
}

func (c *column) appendValue(b, v []byte) ([]byte, bool) {
	switch c.kind {
	case kUint:
		if _, err := strconv.ParseUint(string(v), 10, c.bits); err != nil {
			return b, false
		}
		return append(b, v...), true
	case kInt:
		if _, err := strconv.ParseInt(string(v), 10, c.bits); err != nil {
			return b, false
		}
		return append(b, v...), true
	case kBool:
		switch string(v) {
		case "true", "false":
			return append(b, v...), true
		case "1":
			return append(b, "true"...), true
		case "0":
			return append(b, "false"...), true
		}
		return b, false
	case kStrings:
		b = append(b, '[')
		if len(v) > 0 {
			for i, item := range strings.Split(string(v), ",") {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendCHString(b, []byte(unescapeList(item)))
			}
		}
		return append(b, ']'), true
	}
	return appendCHString(b, v), true
}

// unescapeList undoes record.AppendList's %2C and %25.
func unescapeList(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	s = strings.ReplaceAll(s, "%2C", ",")
	return strings.ReplaceAll(s, "%25", "%")
}

const hexDigits = "0123456789abcdef"

// appendCHString writes v as a string for ClickHouse's JSON reader, byte-exact: quote,
// backslash and control bytes are escaped, every other byte (also invalid UTF-8) goes raw,
// which ClickHouse stores as it is. Standard JSON could not carry bytes that are not UTF-8.
func appendCHString(b, v []byte) []byte {
	b = append(b, '"')
	start := 0
	for i, c := range v {
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, v[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\t':
			b = append(b, '\\', 't')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, v[start:]...)
	return append(b, '"')
}
