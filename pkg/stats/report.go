package stats

import "time"

// ReportVersion is the version of the JSON document's shape; it changes only when a key's
// meaning does (new keys may be added without it).
const ReportVersion = 1

// Report is what `spip stats` shows; `--json` prints it as one JSON document. spip(8)
// documents its shape.
type Report struct {
	Version  int      `json:"version"`
	Source   string   `json:"source"`
	Window   Window   `json:"window"`
	Filters  Filters  `json:"filters"`
	Losses   Losses   `json:"losses"`
	Totals   Totals   `json:"totals"`
	Timeline Timeline `json:"timeline"`

	Ports      Table        `json:"destination_ports"`
	Sources    Table        `json:"sources"`
	Networks   Table        `json:"source_networks"`
	Protocols  Table        `json:"protocols"`
	SNIs       Table        `json:"tls_sni"`
	JA4s       Table        `json:"ja4"`
	HTTPPaths  Table        `json:"http_paths"`
	UserAgents Table        `json:"http_user_agents"`
	SSHBanners Table        `json:"ssh_banners"`
	Payloads   PayloadTable `json:"payloads"`

	Method Method `json:"method"`
}

// Window is the time the report covers.
type Window struct {
	Since   *time.Time `json:"since,omitempty"` // as asked (--since)
	Until   *time.Time `json:"until,omitempty"` // as asked (--until)
	First   *time.Time `json:"first,omitempty"` // the first connection counted
	Last    *time.Time `json:"last,omitempty"`  // the last connection counted
	Seconds float64    `json:"seconds"`         // the length the rate is computed over
}

// Filters are the record filters asked for; empty when none.
type Filters struct {
	Sensor string `json:"sensor,omitempty"`
	Port   int    `json:"destination_port,omitempty"`
}

// Losses is everything that kept records from the report: what the sensor itself reported in
// the window (summary and warning records, connections recorded unread) and what stats could
// not read.
type Losses struct {
	Dropped     []SinkLoss `json:"dropped"`       // records an output dropped (summary records)
	RateLimited uint64     `json:"ratelimited"`   // connections the per-source budget suppressed
	Overload    uint64     `json:"overload"`      // connections recorded unread (close_reason overload)
	UDPDropped  uint64     `json:"udp_dropped"`   // UDP datagrams dropped unrecorded (summary records)
	Warnings    []Row      `json:"warnings"`      // warning records by message
	Starts      uint64     `json:"sensor_starts"` // "started" records: each start may cut sessions short
	Unreadable  uint64     `json:"unreadable"`    // lines or entries stats could not read
}

// SinkLoss is one output's dropped records.
type SinkLoss struct {
	Sink    string `json:"sink"`
	Records uint64 `json:"records"`
}

// Totals are the window's headline numbers.
type Totals struct {
	Connections   uint64   `json:"connections"`
	Silent        uint64   `json:"silent"` // connections that sent nothing
	Sources       Estimate `json:"distinct_sources"`
	Networks24    Estimate `json:"distinct_ipv4_24"`
	Networks64    Estimate `json:"distinct_ipv6_64"`
	RatePerSecond float64  `json:"rate_per_second"`
	Transports    []Row    `json:"transports"`
	Sensors       []Row    `json:"sensors"`
}

// Estimate is a distinct count: exact, or HyperLogLog's estimate with its relative standard error.
type Estimate struct {
	Value    uint64  `json:"value"`
	Exact    bool    `json:"exact"`
	StdError float64 `json:"relative_std_error,omitempty"`
}

// Timeline is connections per interval over the window.
type Timeline struct {
	Start    *time.Time `json:"start,omitempty"`
	Interval int64      `json:"interval_seconds"`
	Counts   []uint64   `json:"counts"`
}

// Table is one ranked list.
type Table struct {
	Total    uint64 `json:"total"`     // records that had this field
	Distinct int    `json:"distinct"`  // values counted (exact while Exact)
	Exact    bool   `json:"exact"`     // every count is exact
	MaxError uint64 `json:"max_error"` // when not exact: any count may be this much too high, and a value not listed occurred at most this often
	Rows     []Row  `json:"top"`
}

// Row is one value and its count.
type Row struct {
	Value string  `json:"value"`
	Count uint64  `json:"count"`
	Error uint64  `json:"error,omitempty"` // the count is at most this much too high
	Share float64 `json:"share"`           // of the table's total
}

// PayloadTable ranks payloads by their SHA-256.
type PayloadTable struct {
	Total    uint64       `json:"total"` // connections with a payload
	Distinct int          `json:"distinct"`
	Exact    bool         `json:"exact"`
	MaxError uint64       `json:"max_error"`
	Rows     []PayloadRow `json:"top"`
}

// PayloadRow is one payload: its hash, size, and the start of it.
type PayloadRow struct {
	SHA256    string  `json:"sha256_prefix"` // the first 8 bytes of the payload's SHA-256, hex
	Bytes     uint64  `json:"bytes"`
	Count     uint64  `json:"count"`
	Error     uint64  `json:"error,omitempty"`
	Share     float64 `json:"share"`
	Sample    string  `json:"sample"`     // the first bytes, printable: escapes for anything else
	SampleHex string  `json:"sample_hex"` // the same bytes, hex
}

// Method says how the counts were made.
type Method struct {
	Counters       int     `json:"counters_per_table"`
	DistinctBudget int     `json:"distinct_exact_budget"`
	TopAlgorithm   string  `json:"top_algorithm"`
	DistinctAlgo   string  `json:"distinct_algorithm"`
	HLLStdError    float64 `json:"hll_relative_std_error"`
}
