package deb

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"spip/pkg/config"
	"spip/pkg/test/netns"
)

// packagedDefaults reads packaging/spip.toml's "key = value" lines as dotted key → value text.
// (config's own test proves that file equals config.Default().)
func packagedDefaults(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(netns.RepoRoot(), "packaging", "spip.toml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("packaging/spip.toml: unexpected line %q", line)
			}
			out[section+"."+strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// manKeyRe matches a key's entry in spip.toml.5.md: **section.key** = default
var manKeyRe = regexp.MustCompile(`(?m)^\*\*([a-z0-9_]+\.[a-z0-9_]+)\*\* = (.*)$`)

// TestManPageDocumentsEveryKey keeps spip.toml(5) in step with the configuration: every key has
// an entry showing the packaged default, and there is no entry for a key that does not exist.
func TestManPageDocumentsEveryKey(t *testing.T) {
	body, err := os.ReadFile(filepath.Join(netns.RepoRoot(), "packaging", "spip.toml.5.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	for _, m := range manKeyRe.FindAllStringSubmatch(string(body), -1) {
		documented[m[1]] = m[2]
	}
	defaults := packagedDefaults(t)
	keys := map[string]bool{}
	for _, k := range config.Keys() {
		keys[k] = true
		got, ok := documented[k]
		switch {
		case !ok:
			t.Errorf("spip.toml.5.md has no entry \"**%s** = …\"", k)
		case got != defaults[k]:
			t.Errorf("spip.toml.5.md shows %s = %s, packaging/spip.toml has %s", k, got, defaults[k])
		}
	}
	for k := range documented {
		if !keys[k] {
			t.Errorf("spip.toml.5.md documents %s, which is not a configuration key", k)
		}
	}
}
