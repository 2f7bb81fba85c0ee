package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunExitStatus(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[session]\nidle_timeout = \"banana\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte("[session]\nidle_timeout = \"3s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		env        []string
		want       int
		wantOut    string
		wantStderr string
	}{
		{"no command", nil, nil, ExitUsage, "", "usage: spip COMMAND"},
		{"help", []string{"--help"}, nil, ExitOK, "", ""},
		{"unknown command", []string{"frobnicate"}, nil, ExitUsage, "", `unknown command "frobnicate"`},
		{"version", []string{"version"}, nil, ExitOK, "spip 1.2.3\n", ""},
		{"stray argument", []string{"version", "extra"}, nil, ExitUsage, "", `unexpected argument "extra"`},
		{"unknown flag", []string{"serve", "--nope"}, nil, ExitUsage, "", "unknown flag: --nope"},
		{"check bad file", []string{"check", "--config", bad}, nil, ExitConfig, "", "session.idle_timeout"},
		{"check missing file", []string{"check", "--config", filepath.Join(dir, "nope.toml")}, nil, ExitConfig, "", "no such file"},
		{"check bad env", []string{"check", "--config", good}, []string{"SPIP_SESSION_MAX_SESSIONS=0"}, ExitConfig, "", "session.max_sessions"},
		{"check unknown env", []string{"check", "--config", good}, []string{"SPIP_TYPO=1"}, ExitConfig, "", "SPIP_TYPO"},
		{"serve bad listen flag", []string{"serve", "--config", good, "--listen", "nowhere"}, nil, ExitConfig, "", "listen.address"},
		{"serve bad journald flag", []string{"serve", "--config", good, "--journald", "maybe"}, nil, ExitConfig, "", "output.journald"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			env := &Env{Version: "1.2.3", Stdout: &out, Stderr: &errb, Environ: tt.env}
			if env.Environ == nil {
				env.Environ = []string{}
			}
			got := Run(context.Background(), env, tt.args)
			if got != tt.want {
				t.Errorf("exit %d, want %d; stderr: %s", got, tt.want, errb.String())
			}
			if tt.wantOut != "" && out.String() != tt.wantOut {
				t.Errorf("stdout %q, want %q", out.String(), tt.wantOut)
			}
			if !strings.Contains(errb.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", errb.String(), tt.wantStderr)
			}
		})
	}
}

// A config error must name the key on its own line, the way systemctl status shows it.
func TestConfigErrorNamesEveryKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "two.toml")
	if err := os.WriteFile(p, []byte("[session]\nidle_timeout = \"-1s\"\nmax_sessions = -1\n[bogus]\nx = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &errb, Environ: []string{}}
	if got := Run(context.Background(), env, []string{"check", "--config", p}); got != ExitConfig {
		t.Fatalf("exit %d: %s", got, errb.String())
	}
	for _, want := range []string{"bogus: unknown key", "session.idle_timeout: must be a positive", "session.max_sessions: -1 is outside"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr %q lacks %q", errb.String(), want)
		}
	}
}

// Every command explains itself the same way from 'spip help CMD' and 'spip CMD --help', on
// standard output, with its flags; usage errors name the command.
func TestHelp(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		env := &Env{Version: "1.2.3", Stdout: &out, Stderr: &errb, Environ: []string{}}
		return Run(context.Background(), env, args), out.String(), errb.String()
	}
	for name := range commands {
		code, viaHelp, _ := run("help", name)
		if code != ExitOK || !strings.HasPrefix(viaHelp, "usage: spip "+name+" [flags]") || !strings.Contains(viaHelp, "--config") {
			t.Errorf("spip help %s: exit %d, %q", name, code, viaHelp)
		}
		code, viaFlag, _ := run(name, "--help")
		if code != ExitOK || viaFlag != viaHelp {
			t.Errorf("spip %s --help (exit %d) differs from spip help %s:\n%s\n---\n%s", name, code, name, viaFlag, viaHelp)
		}
		code, _, stderr := run(name, "--bogus")
		if code != ExitUsage || !strings.HasPrefix(stderr, "spip "+name+": unknown flag: --bogus\n") {
			t.Errorf("spip %s --bogus: exit %d, stderr %q", name, code, stderr)
		}
	}
	if _, out, _ := run("help", "serve"); !strings.Contains(out, `(default "[::]:12345")`) {
		t.Errorf("serve's help shows no default for --listen:\n%s", out)
	}
	for _, args := range [][]string{{"--version"}, {"-V"}, {"version"}} {
		if code, out, _ := run(args...); code != ExitOK || out != "spip 1.2.3\n" {
			t.Errorf("spip %v: exit %d, %q", args, code, out)
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		if code, out, _ := run(args...); code != ExitOK || !strings.Contains(out, "commands:") {
			t.Errorf("spip %v: exit %d, %q", args, code, out)
		}
	}
	if code, _, stderr := run("help", "nope"); code != ExitUsage || !strings.Contains(stderr, `unknown command "nope"`) {
		t.Errorf("spip help nope: exit %d, %q", code, stderr)
	}
}
