package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfig loads arbitrary bytes as the configuration file. Load must never panic; every
// error must be an *Error (so spip exits 78, not 1); and what it accepts must validate.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("[session]\nidle_timeout = \"3s\"\n"))
	f.Add([]byte("[session\n"))
	f.Add([]byte("[ratelimit]\nper_source_rate = 1e400\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "spip.toml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(Source{Path: p, Environ: []string{}})
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, not *config.Error: %v", err, err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load accepted a configuration that does not validate: %v", err)
		}
	})
}
