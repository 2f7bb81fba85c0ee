package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
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
		{"journald_omit", "[record]\njournald_omit = [\"payload\"]\n", nil, []string{"record.journald_omit", "\"payload\""}},
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

// Decoding is strict, and a value means the same, with the same error, from the file, the
// environment and the flags: an environment variable or flag is read as the TOML literal of the
// key's type would be.
func TestStrictEverySource(t *testing.T) {
	tests := []struct {
		name       string
		file       string // the value in spip.toml
		key, value string // the same key and value in the environment / as a flag
		want       string // the error, "" for none
	}{
		{"bare number duration", "[session]\nfirst_byte_timeout = 10\n", "session.first_byte_timeout", "10",
			`session.first_byte_timeout: 10 is not a duration: write a string with a unit`},
		{"unitless duration string", "[session]\nfirst_byte_timeout = \"10\"\n", "session.first_byte_timeout", "10",
			`session.first_byte_timeout: `},
		{"status interval bare", "[output]\nstatus_interval = 5\n", "output.status_interval", "5",
			`output.status_interval: `},
		{"status interval tiny", "[output]\nstatus_interval = \"5ns\"\n", "output.status_interval", "5ns",
			`output.status_interval: 5ns is shorter than 100ms`},
		{"fraction for integer", "[session]\npayload_cap = 4096.9\n", "session.payload_cap", "4096.9",
			`session.payload_cap: 4096.9 is not an integer: write a whole number without quotes`},
		{"whole float for integer", "[session]\npayload_cap = 4096.0\n", "session.payload_cap", "4096.0",
			`session.payload_cap: 4096 is not an integer`},
		{"word for integer", "[session]\npayload_cap = \"lots\"\n", "session.payload_cap", "lots",
			`session.payload_cap: "lots" is not an integer`},
		{"word for boolean", "[session]\nclose_with_reset = \"yes\"\n", "session.close_with_reset", "yes",
			`session.close_with_reset: "yes" is not a boolean: write true or false`},
		{"number for rate", "[ratelimit]\nper_source_rate = \"x\"\n", "ratelimit.per_source_rate", "x",
			`ratelimit.per_source_rate: "x" is not a number`},
		{"duration ok", "[session]\nidle_timeout = \"3s\"\n", "session.idle_timeout", "3s", ""},
		{"integer ok", "[session]\npayload_cap = 100\n", "session.payload_cap", "100", ""},
		{"boolean ok", "[session]\nclose_with_reset = false\n", "session.close_with_reset", "false", ""},
		{"integer rate ok", "[ratelimit]\nper_source_rate = 10\n", "ratelimit.per_source_rate", "10", ""},
		{"fraction rate ok", "[ratelimit]\nper_source_rate = 0.5\n", "ratelimit.per_source_rate", "0.5", ""},
		{"number as name ok from env", "[sensor]\nname = \"5\"\n", "sensor.name", "5", ""},
		{"listen from every source", "[listen]\naddress = \"[::]:4000\"\n", "listen.address", "[::]:4000", ""},
		{"bad listen from every source", "[listen]\naddress = \"nope\"\n", "listen.address", "nope", `listen.address: "nope" is not ADDRESS:PORT`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(tt.key, ".", "_")) + "=" + tt.value
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			fs.String("x", "", "")
			if err := fs.Parse([]string{"--x", tt.value}); err != nil {
				t.Fatal(err)
			}
			empty := writeFile(t, "")
			sources := map[string]Source{
				"file": {Path: writeFile(t, tt.file), Environ: []string{}},
				"env":  {Path: empty, Environ: []string{env}},
				"flag": {Path: empty, Environ: []string{}, Flags: fs, FlagKeys: map[string]string{"x": tt.key}},
			}
			var first string
			for _, name := range []string{"file", "env", "flag"} {
				_, err := Load(sources[name])
				got := ""
				if err != nil {
					got = err.Error()
				}
				if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
					t.Errorf("%s: error %q, want %q", name, got, tt.want)
				}
				if tt.file[strings.Index(tt.file, "= ")+2] != '"' && name == "file" {
					first = got // an unquoted file value reads as the same literal as env and flag
				} else if name == "file" {
					first = "" // a quoted number in the file is a string: compare env with flag only
				}
				if name != "file" && first != "" && got != first {
					t.Errorf("%s: error %q differs from the file's %q", name, got, first)
				}
			}
		})
	}
}

// Ports may be written as numbers: a port is one. Ranges are strings.
func TestExcludePortsAsNumbers(t *testing.T) {
	cfg, err := Load(Source{Path: writeFile(t, "[capture]\nexclude_ports = [22, 2222, \"5000-5010\"]\n"), Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"22", "2222", "5000-5010"}; !reflect.DeepEqual(cfg.Capture.ExcludePorts, want) {
		t.Errorf("exclude_ports = %q, want %q", cfg.Capture.ExcludePorts, want)
	}
	if _, err := Load(Source{Path: writeFile(t, "[capture]\nexclude_ports = [2.5]\n"), Environ: []string{}}); err == nil ||
		!strings.Contains(err.Error(), "capture.exclude_ports[0]: 2.5 is not a string") || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("exclude_ports = [2.5]: %v, want one error naming the element", err)
	}
}

// spip.service's memory limits must leave room for what the default configuration may hold: a
// MemoryMax= the defaults can reach would kill a sensor that works as configured.
func TestMemoryMaxCoversDefaults(t *testing.T) {
	unit, err := os.ReadFile("../../systemd/spip.service")
	if err != nil {
		t.Fatal(err)
	}
	var memMax, goLimit int64
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "MemoryMax="); ok {
			memMax = parseSize(t, v)
		}
		if v, ok := strings.CutPrefix(line, "Environment=GOMEMLIMIT="); ok {
			goLimit = parseSize(t, strings.TrimSuffix(v, "iB"))
		}
	}
	if memMax == 0 || goLimit == 0 {
		t.Fatalf("spip.service sets no MemoryMax= (%d) or GOMEMLIMIT (%d)", memMax, goLimit)
	}
	d := Default()
	const sinks = 2           // journald and the JSON mirror
	const sessionBytes = 1024 // the session, its timer slot and the slice headers
	// A session's payload slice grows by appending: up to twice the cap in capacity.
	live := int64(d.Session.MaxSessions)*(2*int64(d.Session.PayloadCap)+sessionBytes) +
		sinks*d.Output.QueueBytes + 32<<20 // read buffer, encoders, runtime
	kernel := int64(d.Session.MaxSessions) * 4 << 10 // socket memory charged to the unit
	t.Logf("default bounds: live heap %d MiB, socket memory %d MiB; GOMEMLIMIT %d MiB, MemoryMax %d MiB",
		live>>20, kernel>>20, goLimit>>20, memMax>>20)
	if goLimit < live*5/4 {
		t.Errorf("GOMEMLIMIT %d MiB leaves under 25%% over the %d MiB the defaults may hold live", goLimit>>20, live>>20)
	}
	if memMax < goLimit+kernel+64<<20 {
		t.Errorf("MemoryMax %d MiB is under GOMEMLIMIT + socket memory + 64 MiB (%d MiB)", memMax>>20, (goLimit+kernel+64<<20)>>20)
	}
}

func parseSize(t *testing.T, v string) int64 {
	t.Helper()
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "G"):
		mult, v = 1<<30, strings.TrimSuffix(v, "G")
	case strings.HasSuffix(v, "M"):
		mult, v = 1<<20, strings.TrimSuffix(v, "M")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("size %q: %v", v, err)
	}
	return n * mult
}
