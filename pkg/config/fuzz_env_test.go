package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzEnvValue sets any key to any value from the environment and the same text as the TOML
// value in the file: neither may panic, every error is an *Error naming the key, and whatever
// is accepted validates. An accepted environment value means what the file's literal means.
func FuzzEnvValue(f *testing.F) {
	keys := Keys()
	f.Add(uint8(0), "5s")
	f.Add(uint8(3), "4096.9")
	f.Add(uint8(7), "10")
	f.Add(uint8(9), "true")
	f.Add(uint8(1), "22,5000-5010")
	f.Add(uint8(2), "1e400")
	f.Fuzz(func(t *testing.T, k uint8, val string) {
		key := keys[int(k)%len(keys)]
		if strings.ContainsAny(val, "\x00") {
			return // an environment cannot hold NUL
		}
		env := EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_")) + "=" + val
		cfg, err := Load(Source{Path: "/dev/null", Environ: []string{env}})
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, not *config.Error: %v", err, err)
			}
			if !strings.Contains(err.Error(), key) {
				t.Fatalf("error for %s does not name it: %v", env, err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load accepted %s, which does not validate: %v", env, err)
		}
	})
}
