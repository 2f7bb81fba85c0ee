package record

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README's and spip(8)'s record tables are made from Fields: go test ./pkg/record -run
// TestDocTables -update rewrites them between their markers; without -update the test fails
// when they differ, so a new row cannot go undocumented.

func presenceNote(f *FieldDef) string {
	var notes []string
	if f.On != OnAll && f.Scope&ScopeConnection != 0 {
		var ts []string
		for t := TCP; t <= UDP; t++ {
			if f.On.Has(t) {
				ts = append(ts, t.String())
			}
		}
		notes = append(notes, strings.Join(ts, ", ")+" only")
	}
	if f.Presence == WhenSet && f.Scope&ScopeConnection != 0 {
		notes = append(notes, "absent when empty")
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, "; ") + ")"
}

func readmeTable(scope Scope) string {
	var b strings.Builder
	b.WriteString("| JSON key | journald field | JSON type | meaning |\n|---|---|---|---|\n")
	for i := range Fields {
		f := &Fields[i]
		if f.Scope&scope == 0 || (scope == ScopeEvent && f.Scope&ScopeConnection != 0) {
			continue
		}
		jn := "`" + f.Key.JournalName() + "`"
		if f.JSONOnly {
			jn = "`MESSAGE`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s%s |\n", f.Key, jn, f.Type, f.Doc, presenceNote(f))
	}
	return b.String()
}

func manList() string {
	var b strings.Builder
	for i := range Fields {
		f := &Fields[i]
		if f.Scope&ScopeConnection == 0 {
			continue
		}
		doc := strings.ReplaceAll(f.Doc, "`", "**")
		fmt.Fprintf(&b, "**%s** (%s)\n:   %s%s.\n\n", f.Key, f.Type, strings.ToUpper(doc[:1])+doc[1:], presenceNote(f))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// replaceBetween puts body between the lines "<!-- name:begin -->" and "<!-- name:end -->".
func replaceBetween(t *testing.T, doc []byte, name, body string) []byte {
	t.Helper()
	begin, end := []byte("<!-- "+name+":begin -->\n"), []byte("<!-- "+name+":end -->")
	i, j := bytes.Index(doc, begin), bytes.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("markers %q and %q not found", begin, end)
	}
	out := append([]byte(nil), doc[:i+len(begin)]...)
	out = append(out, body...)
	return append(out, doc[j:]...)
}

func TestDocTables(t *testing.T) {
	root := filepath.Join("..", "..")
	docs := []struct {
		file  string
		parts map[string]string
	}{
		{"README.md", map[string]string{"record-fields": readmeTable(ScopeConnection), "event-fields": readmeTable(ScopeEvent)}},
		{filepath.Join("packaging", "spip.8.md"), map[string]string{"record-fields": manList() + "\n"}},
	}
	for _, d := range docs {
		path := filepath.Join(root, d.file)
		old, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		doc := old
		for name, body := range d.parts {
			doc = replaceBetween(t, doc, name, body)
		}
		if bytes.Equal(doc, old) {
			continue
		}
		if *update {
			if err := os.WriteFile(path, doc, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s: its record tables differ from record.Fields (go test ./pkg/record -run TestDocTables -update)", d.file)
	}
}

// TestFieldsTable checks each row is complete: a name journald accepts, a meaning, an ECS and a
// ClickHouse decision, and exactly one way to read a connection record's value.
func TestFieldsTable(t *testing.T) {
	seen := map[Key]bool{}
	for _, f := range Fields {
		if seen[f.Key] {
			t.Errorf("%s: two rows", f.Key)
		}
		seen[f.Key] = true
		if f.Doc == "" || f.ECS == "" || f.ECSType == "" || f.ClickHouse == "" {
			t.Errorf("%s: Doc, ECS, ECSType and ClickHouse must all be set", f.Key)
		}
		readers := 0
		for _, set := range []bool{f.text != nil, f.raw != nil, f.safe != nil, f.list != nil} {
			if set {
				readers++
			}
		}
		if f.Scope&ScopeConnection != 0 && readers != 1 {
			t.Errorf("%s: a connection field needs exactly one reader, has %d", f.Key, readers)
		}
		if f.Scope == ScopeEvent && readers != 0 {
			t.Errorf("%s: an event field is read from Record.Fields, not by a reader", f.Key)
		}
		if f.Presence == WhenSet && f.safe != nil && f.has == nil {
			t.Errorf("%s: absent when empty, but read with safe and no has", f.Key)
		}
		if f.Scope&ScopeConnection != 0 && f.On == 0 {
			t.Errorf("%s: carried by no transport", f.Key)
		}
	}
}

func TestAppendList(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"h2", "http/1.1"}, "h2,http/1.1"},
		{[]string{"a,b", "100%"}, "a%2Cb,100%25"},
		{[]string{""}, ""},
	}
	for _, tt := range tests {
		if got := string(AppendList(nil, tt.in)); got != tt.want {
			t.Errorf("AppendList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
