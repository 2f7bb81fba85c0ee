package journald_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"spip/pkg/record"
	"spip/pkg/test/netns"
)

// codeMessageIDs lists the MESSAGE_ID of every record kind.
func codeMessageIDs() map[string]record.Kind {
	ids := map[string]record.Kind{}
	for k := record.Kind(0); int(k) < record.Kinds; k++ {
		ids[k.MessageID()] = k
	}
	return ids
}

type catalogEntry struct {
	id      string
	headers map[string]string
	body    string
}

var idLine = regexp.MustCompile(`^-- ([0-9a-f]{32})$`)

// parseCatalog reads the catalog as journalctl does: "-- ID" starts an entry, "Key: value"
// lines up to the first empty line are its headers, the rest is its body.
func parseCatalog(t *testing.T, path string) []catalogEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []catalogEntry
	var cur *catalogEntry
	inHeader := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "-- ") {
			m := idLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("%s:%d: bad id line %q (want -- and 32 lower-case hex digits)", path, n, line)
			}
			out = append(out, catalogEntry{id: m[1], headers: map[string]string{}})
			cur, inHeader = &out[len(out)-1], true
			continue
		}
		if cur == nil {
			if line != "" && !strings.HasPrefix(line, "#") {
				t.Fatalf("%s:%d: text before the first entry: %q", path, n, line)
			}
			continue
		}
		if inHeader {
			if line == "" {
				inHeader = false
				continue
			}
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				t.Fatalf("%s:%d: header line without \"Key: value\": %q", path, n, line)
			}
			cur.headers[k] = v
			continue
		}
		cur.body += line + "\n"
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var substitution = regexp.MustCompile(`@([A-Za-z0-9_]+)@`)

// TestCatalog checks packaging/spip.catalog against the MESSAGE_IDs in the code, both ways,
// and that every @FIELD@ it substitutes is a field spip actually sends.
func TestCatalog(t *testing.T) {
	path := filepath.Join(netns.RepoRoot(), "packaging", "spip.catalog")
	entries := parseCatalog(t, path)
	code := codeMessageIDs()
	if len(code) < 5 {
		t.Fatalf("found only %d record kinds in the code", len(code))
	}
	fields := map[string]bool{"MESSAGE": true}
	for _, f := range record.Fields {
		k := f.Key
		fields[k.JournalName()] = true
	}
	var seen []string
	for _, e := range entries {
		if slices.Contains(seen, e.id) {
			t.Errorf("%s: two catalog entries", e.id)
		}
		seen = append(seen, e.id)
		kind, ok := code[e.id]
		if !ok {
			t.Errorf("%s: in the catalog but no record kind has this MESSAGE_ID", e.id)
			continue
		}
		for _, h := range []string{"Subject", "Defined-By", "Support"} {
			if e.headers[h] == "" {
				t.Errorf("%s (%s): no %s: header", e.id, kind, h)
			}
		}
		if got := e.headers["Defined-By"]; got != "spip" {
			t.Errorf("%s (%s): Defined-By: %q, want spip", e.id, kind, got)
		}
		if strings.TrimSpace(e.body) == "" {
			t.Errorf("%s (%s): no body", e.id, kind)
		}
		for _, m := range substitution.FindAllStringSubmatch(e.headers["Subject"]+e.body, -1) {
			if !fields[m[1]] {
				t.Errorf("%s (%s): @%s@ is not a field spip sends", e.id, kind, m[1])
			}
		}
	}
	for id, kind := range code {
		if !slices.Contains(seen, id) {
			t.Errorf("record kind %s (MESSAGE_ID %s) has no catalog entry", kind, id)
		}
	}
}

// TestCatalogJournalctl has journalctl itself import the catalog into a scratch root, as the
// systemd package's trigger does on install, and list it back.
func TestCatalogJournalctl(t *testing.T) {
	netns.Require(t, "journalctl")
	root := t.TempDir()
	dir := filepath.Join(root, "usr", "lib", "systemd", "catalog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(netns.RepoRoot(), "packaging", "spip.catalog"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "spip.catalog"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("journalctl", "--root="+root, "--update-catalog").CombinedOutput(); err != nil {
		t.Fatalf("journalctl --update-catalog: %v\n%s", err, out)
	}
	out, err := exec.Command("journalctl", "--root="+root, "--list-catalog").CombinedOutput()
	if err != nil {
		t.Fatalf("journalctl --list-catalog: %v\n%s", err, out)
	}
	for id := range codeMessageIDs() {
		if !strings.Contains(string(out), id+" spip: ") {
			t.Errorf("journalctl --list-catalog does not list %s:\n%s", id, out)
		}
	}
}
