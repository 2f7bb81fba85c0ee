// Package config loads spip's configuration (file, SPIP_* environment, flags) into one validated struct.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"spip/pkg/record"
)

// DefaultPath is where the package installs the configuration file.
const DefaultPath = "/etc/spip/spip.toml"

// EnvPrefix prefixes every environment variable spip reads: SPIP_SESSION_IDLE_TIMEOUT=3s sets session.idle_timeout.
const EnvPrefix = "SPIP"

// Limits on values that size memory or journald entries.
const (
	MaxPayloadCap = 64 << 10 // keeps one journald entry well under the datagram limit
	MaxQueueSize  = 1 << 22
	MaxSessions   = 1 << 20
	MinInterval   = 100 * time.Millisecond // output.status_interval, output.summary_interval
	MinQueueBytes = 1 << 20                // output.queue_bytes: a few records of the largest payload
	MaxQueueBytes = 4 << 30
)

// Config is spip's whole configuration. Field tags name the file keys.
type Config struct {
	Sensor    Sensor    `mapstructure:"sensor"`
	Listen    Listen    `mapstructure:"listen"`
	Capture   Capture   `mapstructure:"capture"`
	Session   Session   `mapstructure:"session"`
	Output    Output    `mapstructure:"output"`
	RateLimit RateLimit `mapstructure:"ratelimit"`
	Ship      Ship      `mapstructure:"ship"`
	Record    Record    `mapstructure:"record"`
}

// Record shapes what a connection record says beyond the connection itself.
type Record struct {
	// CommunityIDSeed seeds every record's Community ID; Zeek, Suricata and Elastic must use
	// the same seed for the IDs to join.
	CommunityIDSeed int `mapstructure:"community_id_seed"`
	// JournaldOmit are connection fields left out of journald's entries (record.JournalOmittable):
	// smaller entries cost journald less; the JSON mirror keeps them.
	JournaldOmit []string `mapstructure:"journald_omit"`
}

// Sensor identifies this sensor in records.
type Sensor struct {
	// Name goes into every record's sensor field; empty means the host name.
	Name string `mapstructure:"name"`
}

// Listen is the socket spip opens itself when systemd passes none.
type Listen struct {
	Address string `mapstructure:"address"`
}

// Capture describes how traffic reaches the socket; the nftables ruleset is rendered from it.
type Capture struct {
	Mode         string   `mapstructure:"mode"`
	Interfaces   []string `mapstructure:"interfaces"`
	ExcludePorts []string `mapstructure:"exclude_ports"`
	ExcludeSSHD  bool     `mapstructure:"exclude_sshd"`
	// UDP turns on the UDP capture (TPROXY to spip-udp.socket); ExcludeUDPPorts are never captured.
	UDP             bool     `mapstructure:"udp"`
	ExcludeUDPPorts []string `mapstructure:"exclude_udp_ports"`
}

// Session bounds what one connection may cost.
type Session struct {
	PayloadCap       int           `mapstructure:"payload_cap"`
	FirstByteTimeout time.Duration `mapstructure:"first_byte_timeout"`
	IdleTimeout      time.Duration `mapstructure:"idle_timeout"`
	MaxDuration      time.Duration `mapstructure:"max_duration"`
	MaxSessions      int           `mapstructure:"max_sessions"`
	ShutdownGrace    time.Duration `mapstructure:"shutdown_grace"`
	CloseWithReset   bool          `mapstructure:"close_with_reset"`
	// UDPIdleTimeout ends a UDP flow this long after its last datagram; MaxUDPFlows bounds the flow table.
	UDPIdleTimeout time.Duration `mapstructure:"udp_idle_timeout"`
	MaxUDPFlows    int           `mapstructure:"max_udp_flows"`
}

// Output selects the sinks and sizes their queues.
type Output struct {
	// Journald is "auto" (on when journald's socket exists), "on" or "off".
	Journald string `mapstructure:"journald"`
	JSONFile string `mapstructure:"json_file"`
	// JSONFormat is the mirror's format: "spip" (the original's keys) or "ecs" (Elastic Common Schema).
	JSONFormat      string        `mapstructure:"json_format"`
	QueueSize       int           `mapstructure:"queue_size"`
	QueueBytes      int64         `mapstructure:"queue_bytes"`
	SummaryInterval time.Duration `mapstructure:"summary_interval"`
	StatusInterval  time.Duration `mapstructure:"status_interval"`
}

// RateLimit is the optional per-source connection budget.
type RateLimit struct {
	PerSourceRate  float64 `mapstructure:"per_source_rate"`
	PerSourceBurst int     `mapstructure:"per_source_burst"`
	IPv4Prefix     int     `mapstructure:"ipv4_prefix"`
	IPv6Prefix     int     `mapstructure:"ipv6_prefix"`
	MaxSources     int     `mapstructure:"max_sources"`
}

// Ship is where `spip ship` sends the journal's records: a ClickHouse server's HTTP(S)
// interface. The password is never here (this file is world-readable): it comes from the
// systemd credential clickhouse-password, or a file named with --password-file.
type Ship struct {
	URL           string        `mapstructure:"url"`
	Database      string        `mapstructure:"database"`
	Table         string        `mapstructure:"table"`
	EventsTable   string        `mapstructure:"events_table"`
	User          string        `mapstructure:"user"`
	BatchSize     int           `mapstructure:"batch_size"`
	FlushInterval time.Duration `mapstructure:"flush_interval"`
}

// MaxBatchSize bounds ship.batch_size (one batch is held in memory).
const MaxBatchSize = 1000000

// Capture modes.
const (
	ModeRedirect = "redirect"
	ModeTProxy   = "tproxy"
)

// Default returns the built-in configuration; packaging/spip.toml spells out the same values.
func Default() Config {
	return Config{
		Listen: Listen{Address: "[::]:12345"},
		Capture: Capture{
			Mode:         ModeTProxy,
			Interfaces:   []string{},
			ExcludePorts: []string{"22"},
			ExcludeSSHD:  true,
			// DHCP and DHCPv6 clients and WireGuard: what a host is managed through or cannot lose.
			UDP:             false,
			ExcludeUDPPorts: []string{"67-68", "546-547", "51820"},
		},
		Session: Session{
			PayloadCap:       4096,
			FirstByteTimeout: 10 * time.Second,
			IdleTimeout:      5 * time.Second,
			MaxDuration:      60 * time.Second,
			MaxSessions:      16384,
			ShutdownGrace:    2 * time.Second,
			CloseWithReset:   true,
			UDPIdleTimeout:   5 * time.Second,
			MaxUDPFlows:      16384,
		},
		Output: Output{
			Journald:        "auto",
			JSONFile:        "",
			JSONFormat:      "spip",
			QueueSize:       65536,
			QueueBytes:      128 << 20,
			SummaryInterval: 60 * time.Second,
			StatusInterval:  5 * time.Second,
		},
		RateLimit: RateLimit{
			PerSourceRate:  0,
			PerSourceBurst: 50,
			IPv4Prefix:     32,
			IPv6Prefix:     64,
			MaxSources:     65536,
		},
		Ship: Ship{
			URL:           "http://127.0.0.1:8123",
			Database:      "spip",
			Table:         "connections",
			EventsTable:   "events",
			User:          "default",
			BatchSize:     10000,
			FlushInterval: time.Second,
		},
		Record: Record{CommunityIDSeed: 0, JournaldOmit: []string{}},
	}
}

// PortRange is an inclusive range of ports; a single port has Lo == Hi.
type PortRange struct{ Lo, Hi uint16 }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Contains reports whether p is in the range.
func (r PortRange) Contains(p uint16) bool { return p >= r.Lo && p <= r.Hi }

// ParsePortRange parses "22" or "5000-5010".
func ParsePortRange(s string) (PortRange, error) {
	s = strings.TrimSpace(s)
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := parsePort(lo)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{a, a}, nil
	}
	b, err := parsePort(hi)
	if err != nil {
		return PortRange{}, err
	}
	if b < a {
		return PortRange{}, fmt.Errorf("range %q ends before it starts", s)
	}
	return PortRange{a, b}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return uint16(n), nil
}

// ListenAddr is listen.address parsed.
func (c *Config) ListenAddr() netip.AddrPort {
	ap, _ := netip.ParseAddrPort(c.Listen.Address)
	return ap
}

// ExcludedPorts returns capture.exclude_ports parsed and sorted (validated by Validate).
func (c *Config) ExcludedPorts() []PortRange { return parseRanges(c.Capture.ExcludePorts) }

// ExcludedUDPPorts returns capture.exclude_udp_ports parsed and sorted (validated by Validate).
func (c *Config) ExcludedUDPPorts() []PortRange { return parseRanges(c.Capture.ExcludeUDPPorts) }

func parseRanges(ss []string) []PortRange {
	out := make([]PortRange, 0, len(ss))
	for _, s := range ss {
		if r, err := ParsePortRange(s); err == nil {
			out = append(out, r)
		}
	}
	sortRanges(out)
	return out
}

func sortRanges(rs []PortRange) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].Lo < rs[j-1].Lo; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// SensorName is sensor.name, or the host name when that is empty.
func (c *Config) SensorName() string {
	if c.Sensor.Name != "" {
		return c.Sensor.Name
	}
	h, err := os.Hostname()
	if err != nil {
		return "spip"
	}
	return h
}

// Validate checks every value and returns one error per bad key, each naming the key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}

	if len(c.Sensor.Name) > 255 || strings.ContainsAny(c.Sensor.Name, "\x00\n\r") {
		bad("sensor.name", "must be at most 255 bytes without NUL or line breaks")
	}

	ap, err := netip.ParseAddrPort(c.Listen.Address)
	switch {
	case err != nil:
		bad("listen.address", "%q is not ADDRESS:PORT (for example \"[::]:12345\" or \"0.0.0.0:12345\")", c.Listen.Address)
	case ap.Port() == 0:
		bad("listen.address", "port 0 is not allowed")
	}

	switch c.Capture.Mode {
	case ModeRedirect, ModeTProxy:
	default:
		bad("capture.mode", "%q is not one of redirect, tproxy", c.Capture.Mode)
	}
	for _, name := range c.Capture.Interfaces {
		if !validIfName(name) {
			bad("capture.interfaces", "%q is not an interface name (1-15 characters, no spaces, quotes or slashes)", name)
		}
	}
	ranges := checkRanges("capture.exclude_ports", c.Capture.ExcludePorts, bad)
	udpRanges := checkRanges("capture.exclude_udp_ports", c.Capture.ExcludeUDPPorts, bad)
	if err == nil && ap.Port() != 0 {
		for _, r := range ranges {
			if r.Contains(ap.Port()) {
				bad("capture.exclude_ports", "%s contains the sensor's own port %d", r, ap.Port())
			}
		}
		for _, r := range udpRanges {
			if r.Contains(ap.Port()) {
				bad("capture.exclude_udp_ports", "%s contains the sensor's own port %d (spip-udp.socket listens there)", r, ap.Port())
			}
		}
	}

	s := c.Session
	if s.PayloadCap < 0 || s.PayloadCap > MaxPayloadCap {
		bad("session.payload_cap", "%d is outside 0-%d bytes", s.PayloadCap, MaxPayloadCap)
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration such as \"5s\", got %s", d)
		} else if d > 24*time.Hour {
			bad(key, "%s is longer than 24h", d)
		}
	}
	positive("session.first_byte_timeout", s.FirstByteTimeout)
	positive("session.idle_timeout", s.IdleTimeout)
	positive("session.max_duration", s.MaxDuration)
	if s.ShutdownGrace < 0 || s.ShutdownGrace > time.Minute {
		bad("session.shutdown_grace", "%s is outside 0s-1m", s.ShutdownGrace)
	}
	if s.MaxSessions < 1 || s.MaxSessions > MaxSessions {
		bad("session.max_sessions", "%d is outside 1-%d", s.MaxSessions, MaxSessions)
	}
	positive("session.udp_idle_timeout", s.UDPIdleTimeout)
	if s.MaxUDPFlows < 1 || s.MaxUDPFlows > MaxSessions {
		bad("session.max_udp_flows", "%d is outside 1-%d", s.MaxUDPFlows, MaxSessions)
	}

	o := c.Output
	switch o.Journald {
	case "auto", "on", "off":
	default:
		bad("output.journald", "%q is not one of auto, on, off", o.Journald)
	}
	if strings.ContainsAny(o.JSONFile, "\x00\n") {
		bad("output.json_file", "contains NUL or a line break")
	}
	if o.JSONFormat != "spip" && o.JSONFormat != "ecs" {
		bad("output.json_format", "%q is not one of spip, ecs", o.JSONFormat)
	}
	if o.QueueSize < 1 || o.QueueSize > MaxQueueSize {
		bad("output.queue_size", "%d is outside 1-%d", o.QueueSize, MaxQueueSize)
	}
	if o.QueueBytes < MinQueueBytes || o.QueueBytes > MaxQueueBytes {
		bad("output.queue_bytes", "%d is outside %d-%d bytes", o.QueueBytes, MinQueueBytes, MaxQueueBytes)
	}
	// A tiny interval is no use to anyone and makes an idle sensor spin.
	for _, iv := range []struct {
		key string
		d   time.Duration
	}{{"output.summary_interval", o.SummaryInterval}, {"output.status_interval", o.StatusInterval}} {
		if iv.d < MinInterval {
			bad(iv.key, "%s is shorter than %s", iv.d, MinInterval)
		} else {
			positive(iv.key, iv.d)
		}
	}

	r := c.RateLimit
	if r.PerSourceRate < 0 || r.PerSourceRate > 1e6 {
		bad("ratelimit.per_source_rate", "%g is outside 0-1000000 connections per second (0 turns the budget off)", r.PerSourceRate)
	}
	if r.PerSourceBurst < 1 || r.PerSourceBurst > 1e6 {
		bad("ratelimit.per_source_burst", "%d is outside 1-1000000", r.PerSourceBurst)
	}
	if r.IPv4Prefix < 1 || r.IPv4Prefix > 32 {
		bad("ratelimit.ipv4_prefix", "%d is outside 1-32", r.IPv4Prefix)
	}
	if r.IPv6Prefix < 1 || r.IPv6Prefix > 128 {
		bad("ratelimit.ipv6_prefix", "%d is outside 1-128", r.IPv6Prefix)
	}
	if r.MaxSources < 1 || r.MaxSources > MaxSessions {
		bad("ratelimit.max_sources", "%d is outside 1-%d", r.MaxSources, MaxSessions)
	}

	sh := c.Ship
	if err := validShipURL(sh.URL); err != nil {
		bad("ship.url", "%v", err)
	}
	for key, v := range map[string]string{"ship.database": sh.Database, "ship.table": sh.Table, "ship.events_table": sh.EventsTable} {
		if !validIdentifier(v) {
			bad(key, "%q is not a ClickHouse name spip accepts (a letter or _, then letters, digits or _; at most 64)", v)
		}
	}
	if sh.Table == sh.EventsTable {
		bad("ship.events_table", "must differ from ship.table")
	}
	if sh.User == "" || len(sh.User) > 64 || strings.ContainsAny(sh.User, "\x00\n\r:") {
		bad("ship.user", "must be 1-64 bytes without NUL, line breaks or ':'")
	}
	if sh.BatchSize < 1 || sh.BatchSize > MaxBatchSize {
		bad("ship.batch_size", "%d is outside 1-%d", sh.BatchSize, MaxBatchSize)
	}
	if sh.FlushInterval <= 0 || sh.FlushInterval > time.Hour {
		bad("ship.flush_interval", "must be a positive duration up to 1h such as \"1s\", got %s", sh.FlushInterval)
	}
	if s := c.Record.CommunityIDSeed; s < 0 || s > 65535 {
		bad("record.community_id_seed", "%d is outside 0-65535 (the seed is 16 bits)", s)
	}
	for _, k := range c.Record.JournaldOmit {
		if !slices.Contains(record.JournalOmittable, record.Key(k)) {
			bad("record.journald_omit", "%q is not a field that can be left out (%v)", k, record.JournalOmittable)
		}
	}
	return errors.Join(errs...)
}

// checkRanges parses a list of ports and ranges, reports each bad or overlapping one under key,
// and returns the good ones sorted.
func checkRanges(key string, ss []string, bad func(key, format string, args ...any)) []PortRange {
	var ranges []PortRange
	for _, s := range ss {
		r, err := ParsePortRange(s)
		if err != nil {
			bad(key, "%v", err)
			continue
		}
		ranges = append(ranges, r)
	}
	sortRanges(ranges)
	for i := 1; i < len(ranges); i++ {
		if ranges[i].Lo <= ranges[i-1].Hi {
			bad(key, "%s overlaps %s", ranges[i], ranges[i-1])
		}
	}
	return ranges
}

// validShipURL accepts http(s)://host[:port] with no credentials, path or query: a password
// in the world-readable configuration would be readable by every user.
func validShipURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL", s)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: the scheme must be http or https", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return fmt.Errorf("%q holds credentials: put the password in the clickhouse-password credential (see spip(8)), the user in ship.user", u.Redacted())
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q: only scheme, host and port (ClickHouse's HTTP interface is at the root)", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: bad port", s)
		}
	}
	return nil
}

func validIdentifier(s string) bool {
	if len(s) == 0 || len(s) > 64 || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func validIfName(s string) bool {
	if len(s) == 0 || len(s) > 15 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '\'' || r == '/' || r == '\\' || r > '~' {
			return false
		}
	}
	return true
}
