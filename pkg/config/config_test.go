package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spip.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The packaged file documents the defaults; it must say exactly what the binary does without it.
func TestPackagedFileIsDefault(t *testing.T) {
	cfg, err := Load(Source{Path: "../../packaging/spip.toml", Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("packaging/spip.toml differs from Default():\n got %+v\nwant %+v", cfg, want)
	}
	body, _ := os.ReadFile("../../packaging/spip.toml")
	for _, k := range Keys() {
		leaf := k[strings.LastIndex(k, ".")+1:]
		if !strings.Contains(string(body), "\n"+leaf+" = ") {
			t.Errorf("packaging/spip.toml does not document %s", k)
		}
	}
}

func TestMissingDefaultFileMeansDefaults(t *testing.T) {
	if _, err := os.Stat(DefaultPath); err == nil {
		t.Skip(DefaultPath + " exists on this machine")
	}
	cfg, err := Load(Source{Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("got %+v", cfg)
	}
}

func TestLoadOverrides(t *testing.T) {
	p := writeFile(t, `
[session]
idle_timeout = "3s"
payload_cap = 100
[capture]
exclude_ports = [22, "5000-5010"]
`)
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("listen", "", "")
	if err := fs.Parse([]string{"--listen", "127.0.0.1:4000"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Source{
		Path:     p,
		Flags:    fs,
		FlagKeys: map[string]string{"listen": "listen.address"},
		Environ:  []string{"SPIP_SESSION_MAX_SESSIONS=7", "SPIP_CAPTURE_INTERFACES=eth0,eth1", "HOME=/root"},
	})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"idle_timeout from file", cfg.Session.IdleTimeout, 3 * time.Second},
		{"payload_cap from file", cfg.Session.PayloadCap, 100},
		{"exclude_ports mixed types", cfg.Capture.ExcludePorts, []string{"22", "5000-5010"}},
		{"max_sessions from env", cfg.Session.MaxSessions, 7},
		{"interfaces from env", cfg.Capture.Interfaces, []string{"eth0", "eth1"}},
		{"listen from flag", cfg.Listen.Address, "127.0.0.1:4000"},
		{"untouched default", cfg.Session.MaxDuration, time.Minute},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if got := cfg.ExcludedPorts(); !reflect.DeepEqual(got, []PortRange{{22, 22}, {5000, 5010}}) {
		t.Errorf("ExcludedPorts = %v", got)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  []string
		want []string // substrings that must all appear
	}{
		{"unknown key", "[session]\nidle_timeot = \"3s\"\n", nil, []string{"session.idle_timeot: unknown key"}},
		{"unknown section", "[sesion]\nx = 1\n", nil, []string{"sesion", "unknown key"}},
		{"bad duration", "[session]\nidle_timeout = \"soon\"\n", nil, []string{"session.idle_timeout", "not a duration"}},
		{"negative duration", "[session]\nidle_timeout = \"-1s\"\n", nil, []string{"session.idle_timeout", "positive"}},
		{"zero duration", "[output]\nstatus_interval = \"0s\"\n", nil, []string{"output.status_interval"}},
		{"not an int", "[session]\npayload_cap = \"lots\"\n", nil, []string{"session.payload_cap"}},
		{"cap too big", "[session]\npayload_cap = 1000000\n", nil, []string{"session.payload_cap", "65536"}},
		{"bad toml", "[session\n", nil, []string{"not valid TOML"}},
		{"bad listen", "[listen]\naddress = \"localhost\"\n", nil, []string{"listen.address"}},
		{"listen port 0", "[listen]\naddress = \"[::]:0\"\n", nil, []string{"listen.address", "port 0"}},
		{"bad mode", "[capture]\nmode = \"nat\"\n", nil, []string{"capture.mode", "\"nat\""}},
		{"port 0", "[capture]\nexclude_ports = [\"0\"]\n", nil, []string{"capture.exclude_ports", "\"0\" is not a port"}},
		{"port too big", "[capture]\nexclude_ports = [\"70000\"]\n", nil, []string{"capture.exclude_ports"}},
		{"reversed range", "[capture]\nexclude_ports = [\"10-5\"]\n", nil, []string{"capture.exclude_ports", "ends before"}},
		{"overlap", "[capture]\nexclude_ports = [\"22\", \"20-30\"]\n", nil, []string{"capture.exclude_ports", "overlaps"}},
		{"sensor port excluded", "[capture]\nexclude_ports = [\"12000-13000\"]\n", nil, []string{"sensor's own port 12345"}},
		{"bad interface", "[capture]\ninterfaces = [\"eth 0\"]\n", nil, []string{"capture.interfaces"}},
		{"bad journald", "[output]\njournald = \"yes\"\n", nil, []string{"output.journald"}},
		{"queue zero", "[output]\nqueue_size = 0\n", nil, []string{"output.queue_size"}},
		{"sessions zero", "[session]\nmax_sessions = 0\n", nil, []string{"session.max_sessions"}},
		{"negative rate", "[ratelimit]\nper_source_rate = -1\n", nil, []string{"ratelimit.per_source_rate"}},
		{"prefix", "[ratelimit]\nipv4_prefix = 33\nipv6_prefix = 0\n", nil, []string{"ratelimit.ipv4_prefix", "ratelimit.ipv6_prefix"}},
		{"two bad values", "[session]\nidle_timeout = \"x\"\npayload_cap = \"lots\"\n", nil, []string{"session.idle_timeout", "session.payload_cap"}},
		{"two invalid values", "[session]\nidle_timeout = \"-1s\"\nmax_sessions = -1\n", nil, []string{"session.idle_timeout", "session.max_sessions"}},
		{"unknown env", "", []string{"SPIP_SESION_IDLE_TIMEOUT=1s"}, []string{"SPIP_SESION_IDLE_TIMEOUT", "not a spip setting"}},
		{"bad env value", "", []string{"SPIP_SESSION_IDLE_TIMEOUT=forever"}, []string{"session.idle_timeout"}},
		{"sensor name newline", "[sensor]\nname = \"a\\nb\"\n", nil, []string{"sensor.name"}},
		{"community id seed", "[record]\ncommunity_id_seed = 65536\n", nil, []string{"record.community_id_seed", "0-65535"}},
		{"community id seed env", "", []string{"SPIP_RECORD_COMMUNITY_ID_SEED=-1"}, []string{"record.community_id_seed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == nil {
				env = []string{}
			}
			_, err := Load(Source{Path: writeFile(t, tt.file), Environ: env})
			if err == nil {
				t.Fatal("no error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *config.Error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestMissingExplicitFile(t *testing.T) {
	_, err := Load(Source{Path: filepath.Join(t.TempDir(), "nope.toml"), Environ: []string{}})
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("got %v", err)
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRange
		wantErr bool
	}{
		{"22", PortRange{22, 22}, false},
		{" 5000-5010 ", PortRange{5000, 5010}, false},
		{"1-65535", PortRange{1, 65535}, false},
		{"0", PortRange{}, true},
		{"65536", PortRange{}, true},
		{"a-b", PortRange{}, true},
		{"10-", PortRange{}, true},
		{"", PortRange{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePortRange(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePortRange(%q) = %v, %v", tt.in, got, err)
		}
	}
}
