package nftrules

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"spip/pkg/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenCases are rendered to testdata/NAME.nft; the root test loads each one into nft too.
// Each starts from the defaults in redirect mode; the tproxy cases (tproxy is the default)
// set their mode themselves.
var goldenCases = []struct {
	name string
	edit func(*config.Config)
	sshd []uint16
}{
	{name: "redirect", edit: func(*config.Config) {}},
	{name: "sshd-2222", sshd: []uint16{22, 2222}, edit: func(*config.Config) {}},
	{name: "sshd-ignored", sshd: []uint16{2222}, edit: func(c *config.Config) { c.Capture.ExcludeSSHD = false }},
	{name: "ranges", sshd: []uint16{5005, 8081}, edit: func(c *config.Config) {
		// 5005 falls inside a range, 8081 touches one, 23 touches 22: all merge.
		c.Capture.ExcludePorts = []string{"8000-8080", "22", "5000-5010", "23", "443"}
	}},
	{name: "interfaces", edit: func(c *config.Config) {
		c.Capture.Interfaces = []string{"eth0", "ens3", "veth*"}
	}},
	{name: "ipv4-only", edit: func(c *config.Config) { c.Listen.Address = "0.0.0.0:2345" }},
	{name: "tproxy", sshd: []uint16{22, 2222}, edit: func(c *config.Config) { c.Capture.Mode = config.ModeTProxy }},
	{name: "tproxy-interfaces", edit: func(c *config.Config) {
		c.Capture.Mode = config.ModeTProxy
		c.Capture.Interfaces = []string{"eth0", "veth*"}
	}},
	{name: "tproxy-ipv4-only", edit: func(c *config.Config) {
		c.Capture.Mode = config.ModeTProxy
		c.Listen.Address = "0.0.0.0:2345"
	}},
	{name: "udp", edit: func(c *config.Config) {
		c.Capture.Mode = config.ModeTProxy
		c.Capture.UDP = true
		c.Capture.ExcludeUDPPorts = []string{"53", "51820", "67-68", "69"}
	}},
	{name: "udp-redirect", edit: func(c *config.Config) { c.Capture.UDP = true }},
	{name: "udp-none-excluded", edit: func(c *config.Config) {
		c.Capture.Mode = config.ModeTProxy
		c.Capture.UDP = true
		c.Capture.ExcludeUDPPorts = nil
		c.Capture.Interfaces = []string{"eth0"}
		c.Listen.Address = "0.0.0.0:2345"
	}},
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Capture.Mode = config.ModeRedirect
			tc.edit(&cfg)
			rs, err := New(&cfg, tc.sshd)
			if err != nil {
				t.Fatal(err)
			}
			got := rs.Render()
			path := filepath.Join("testdata", tc.name+".nft")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendered ruleset differs from %s:\n%s", path, got)
			}
		})
	}
}

func TestRulesetFields(t *testing.T) {
	cfg := config.Default()
	cfg.Capture.ExcludePorts = []string{"22", "5000-5010"}
	rs, err := New(&cfg, []uint16{5003, 2222, 2222, 22})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := joinRanges(rs.Excluded), "22, 2222, 5000-5010"; got != want {
		t.Errorf("excluded = %s, want %s", got, want)
	}
	if got, want := joinPorts(rs.SSHD), "22, 2222, 5003"; got != want {
		t.Errorf("sshd = %s, want %s", got, want)
	}
	if rs.Port != 12345 || rs.IPv4Only || len(rs.Interfaces) != 0 {
		t.Errorf("ruleset = %+v", rs)
	}
}

func TestRejects(t *testing.T) {
	cases := []struct {
		name string
		edit func(*config.Config)
		sshd []uint16
		want string // in the error
	}{
		{"port 0", func(c *config.Config) { c.Capture.ExcludePorts = []string{"0"} }, nil, `capture.exclude_ports: "0" is not a port`},
		{"port too big", func(c *config.Config) { c.Capture.ExcludePorts = []string{"22", "70000"} }, nil, `"70000" is not a port`},
		{"overlap", func(c *config.Config) { c.Capture.ExcludePorts = []string{"22", "5000-5010", "5005-6000"} }, nil, "5005-6000 overlaps 5000-5010"},
		{"backwards range", func(c *config.Config) { c.Capture.ExcludePorts = []string{"10-5"} }, nil, "ends before it starts"},
		{"sensor port excluded", func(c *config.Config) { c.Capture.ExcludePorts = []string{"22", "12000-13000"} }, nil, "contains the sensor's own port 12345"},
		{"sshd on the sensor port", func(*config.Config) {}, []uint16{12345}, "sshd listens on port 12345"},
		{"loopback interface", func(c *config.Config) { c.Capture.Interfaces = []string{"eth0", "lo"} }, nil, `capture.interfaces: "lo"`},
		{"interface twice", func(c *config.Config) { c.Capture.Interfaces = []string{"eth0", "eth0"} }, nil, `"eth0" is listed twice`},
		{"interface with quote", func(c *config.Config) { c.Capture.Interfaces = []string{`eth"0`} }, nil, "is not an interface name"},
		{"specific listen address", func(c *config.Config) { c.Listen.Address = "198.51.100.2:12345" }, nil, "needs a wildcard address"},
		{"loopback listen address", func(c *config.Config) { c.Listen.Address = "[::1]:12345" }, nil, "needs a wildcard address"},
		{"nothing excluded", func(c *config.Config) { c.Capture.ExcludePorts = nil }, nil, "exclude at least"},
		{"nothing excluded, sshd ignored", func(c *config.Config) { c.Capture.ExcludePorts = nil; c.Capture.ExcludeSSHD = false }, []uint16{22}, "exclude at least"},
		{"bad mode", func(c *config.Config) { c.Capture.Mode = "dnat" }, nil, `"dnat" is not one of`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			tc.edit(&cfg)
			_, err := New(&cfg, tc.sshd)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestNothingExcludedButSSHD(t *testing.T) {
	// An empty exclude_ports is fine while sshd is found and excluded.
	cfg := config.Default()
	cfg.Capture.ExcludePorts = nil
	rs, err := New(&cfg, []uint16{22})
	if err != nil {
		t.Fatal(err)
	}
	if got := joinRanges(rs.Excluded); got != "22" {
		t.Errorf("excluded = %s, want 22", got)
	}
}

func TestUnloadIsIdempotentText(t *testing.T) {
	if got, want := string(Unload()), "table inet spip\ndelete table inet spip\n"; got != want {
		t.Errorf("Unload() = %q, want %q", got, want)
	}
}
