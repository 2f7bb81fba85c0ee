package record

import (
	"encoding/hex"
	"strconv"

	"spip/pkg/protocol"
)

// JSONType is how a field's value is written in the JSON mirror. In journald every value is
// text: numbers in decimal, booleans true/false, lists joined with commas (see AppendList).
type JSONType uint8

// JSON types.
const (
	JSONString  JSONType = iota
	JSONInt              // a JSON integer
	JSONBool             // true or false
	JSONStrings          // an array of strings
)

func (t JSONType) String() string {
	switch t {
	case JSONInt:
		return "integer"
	case JSONBool:
		return "boolean"
	case JSONStrings:
		return "array of strings"
	}
	return "string"
}

// Scope says which records carry a field.
type Scope uint8

// Scopes; a field may have both.
const (
	ScopeConnection Scope = 1 << iota // connection records
	ScopeEvent                        // spip's own event records (started, stopping, summary, warning)
)

// Transport is a connection record's transport protocol.
type Transport uint8

// Transports.
const (
	TCP Transport = iota
	UDP
)

var transportNames = [...]string{TCP: "tcp", UDP: "udp"}

func (t Transport) String() string {
	if int(t) < len(transportNames) {
		return transportNames[t]
	}
	return "unknown"
}

// Transports is a set of transports: which connection records carry a field.
type Transports uint8

// Transport sets.
const (
	OnTCP Transports = 1 << TCP
	OnUDP Transports = 1 << UDP
	OnAll            = OnTCP | OnUDP
)

// Has reports whether t is in the set.
func (s Transports) Has(t Transport) bool { return s&(1<<t) != 0 }

// Presence says whether a field with no value is written.
type Presence uint8

// Presences.
const (
	Always  Presence = iota // every record of its scope and transport carries it, empty or not
	WhenSet                 // absent, never empty, when it has no value
)

// FieldDef is one row of the schema: everything spip and its documentation need to know about a
// record key. Both encoders walk Fields; the README's and spip(8)'s record tables, the journald
// catalog test, the ECS mapping and the ClickHouse schema are made or checked from it.
type FieldDef struct {
	Key      Key
	Type     JSONType
	Scope    Scope
	On       Transports // connection records of these transports carry it
	Presence Presence
	Doc      string // one line: what the value means
	// JSONOnly: not a journald field (the JSON "message" is journald's own MESSAGE).
	JSONOnly bool

	// ECS is the Elastic Common Schema name ("spip.<key>" where ECS has none: ECS names are
	// never invented), ECSType its Elasticsearch field type.
	ECS, ECSType string
	// ClickHouse is the column type in packaging/clickhouse (it must run on Debian's 18.16).
	ClickHouse string

	// How a connection record's value is read: exactly one is set for connection fields. Event
	// fields come from Record.Fields.
	text func(*Record, *Encoder) string // any bytes: escaped by each encoding as it needs
	raw  func(*Record) []byte           // the same, for byte slices (the payload)
	safe func([]byte, *Record) []byte   // appends printable ASCII that needs no escaping
	list func(*Record) []string
	has  func(*Record) bool // WhenSet fields read with safe: whether there is a value

	jname string // SPIP_<KEY>, made once
	jkey  string // ,"key": for the JSON mirror
	head  bool   // one of journalHead
}

// Fields is the record schema, in the order the JSON mirror writes a connection record. The
// first eight rows are the original spip's keys, with its names and meaning. Keys are only
// ever added, never renamed.
var Fields = []FieldDef{
	{Key: KeyTimestamp, Type: JSONInt, Scope: ScopeConnection | ScopeEvent, On: OnAll,
		Doc:  "accept time (an event's time), unix seconds",
		safe: func(b []byte, r *Record) []byte { return strconv.AppendInt(b, r.Time.Unix(), 10) },
		ECS:  "spip.timestamp", ECSType: "long", ClickHouse: "UInt32"},
	{Key: KeyPayload, Type: JSONString, Scope: ScopeConnection, On: OnAll,
		Doc: "the captured bytes (JSON: UTF-8, invalid bytes as U+FFFD; journald: the exact bytes)",
		raw: func(r *Record) []byte { return r.Payload },
		ECS: "spip.payload", ECSType: "wildcard", ClickHouse: "String"},
	{Key: KeyPayloadHex, Type: JSONString, Scope: ScopeConnection, On: OnAll,
		Doc:  "the same bytes in hex, always printable",
		safe: func(b []byte, r *Record) []byte { return hex.AppendEncode(b, r.Payload) },
		ECS:  "spip.payload_hex", ECSType: "wildcard", ClickHouse: "String"},
	{Key: KeySourceIP, Type: JSONString, Scope: ScopeConnection, On: OnAll,
		Doc:  "the peer's address (IPv4 printed unmapped)",
		safe: func(b []byte, r *Record) []byte { return r.Source.Addr().Unmap().AppendTo(b) },
		ECS:  "source.ip", ECSType: "ip", ClickHouse: "String"},
	{Key: KeySourcePort, Type: JSONInt, Scope: ScopeConnection, On: OnAll,
		Doc:  "the peer's port",
		safe: func(b []byte, r *Record) []byte { return strconv.AppendUint(b, uint64(r.Source.Port()), 10) },
		ECS:  "source.port", ECSType: "long", ClickHouse: "UInt16"},
	{Key: KeyDestinationIP, Type: JSONString, Scope: ScopeConnection, On: OnAll,
		Doc: "the ORIGINAL destination address, before the redirect (empty when unknown)",
		safe: func(b []byte, r *Record) []byte {
			if r.Destination.IsValid() {
				b = r.Destination.Addr().Unmap().AppendTo(b)
			}
			return b
		},
		ECS: "destination.ip", ECSType: "ip", ClickHouse: "String"},
	{Key: KeyDestinationPort, Type: JSONInt, Scope: ScopeConnection, On: OnAll,
		Doc:  "the ORIGINAL destination port, before the redirect",
		safe: func(b []byte, r *Record) []byte { return strconv.AppendUint(b, uint64(r.Destination.Port()), 10) },
		ECS:  "destination.port", ECSType: "long", ClickHouse: "UInt16"},
	{Key: KeySessionID, Type: JSONString, Scope: ScopeConnection, On: OnAll,
		Doc:  "a UUID (version 7: sorts by time) per connection",
		safe: appendUUID,
		ECS:  "event.id", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyTime, Type: JSONString, Scope: ScopeConnection | ScopeEvent, On: OnAll,
		Doc:  "accept time (an event's time), RFC 3339 UTC with microseconds",
		safe: func(b []byte, r *Record) []byte { return appendTime(b, r.Time) },
		ECS:  "@timestamp", ECSType: "date", ClickHouse: "String"},
	{Key: KeyTransport, Type: JSONString, Scope: ScopeConnection, On: OnAll,
		Doc:  "`tcp`, or `udp` for a UDP flow (datagrams from one source address and port to one original destination)",
		safe: func(b []byte, r *Record) []byte { return append(b, r.Transport.String()...) },
		ECS:  "network.transport", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyDatagrams, Type: JSONInt, Scope: ScopeConnection, On: OnUDP,
		Doc:  "the flow's datagrams (`payload` is the first one's, capped)",
		safe: func(b []byte, r *Record) []byte { return strconv.AppendUint(b, r.Datagrams, 10) },
		ECS:  "network.packets", ECSType: "long", ClickHouse: "UInt64"},
	{Key: KeyBytesReceived, Type: JSONInt, Scope: ScopeConnection, On: OnAll,
		Doc:  "everything the peer sent, also past the payload cap",
		safe: func(b []byte, r *Record) []byte { return strconv.AppendUint(b, r.BytesReceived, 10) },
		ECS:  "source.bytes", ECSType: "long", ClickHouse: "UInt64"},
	{Key: KeyPayloadTruncated, Type: JSONBool, Scope: ScopeConnection, On: OnAll,
		Doc:  "`true` when `bytes_received` exceeds the captured payload",
		safe: func(b []byte, r *Record) []byte { return strconv.AppendBool(b, r.Truncated) },
		ECS:  "spip.payload_truncated", ECSType: "boolean", ClickHouse: "UInt8"},
	{Key: KeyDurationMS, Type: JSONInt, Scope: ScopeConnection, On: OnAll,
		Doc:  "accept to close, milliseconds (UDP: first datagram to last)",
		safe: func(b []byte, r *Record) []byte { return strconv.AppendInt(b, r.Duration.Milliseconds(), 10) },
		ECS:  "event.duration", ECSType: "long", ClickHouse: "UInt64"},
	{Key: KeyCloseReason, Type: JSONString, Scope: ScopeConnection, On: OnAll,
		Doc:  "`eof` (peer closed), `timeout` (silent or idle), `reset`, `limit` (max session length), `overload` (recorded, not read: too many sessions), `shutdown` (cut by a stop)",
		safe: func(b []byte, r *Record) []byte { return append(b, r.Close.String()...) },
		ECS:  "spip.close_reason", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyDestinationError, Type: JSONString, Scope: ScopeConnection, On: OnAll, Presence: WhenSet,
		Doc:  "only when the original destination could not be read or is unknown: why",
		text: func(r *Record, _ *Encoder) string { return r.DestError },
		ECS:  "spip.destination_error", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeySensor, Type: JSONString, Scope: ScopeConnection | ScopeEvent, On: OnAll,
		Doc:  "the sensor's name (`sensor.name`, default the host name)",
		text: func(_ *Record, e *Encoder) string { return e.sensor },
		ECS:  "observer.name", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyEvent, Type: JSONString, Scope: ScopeConnection | ScopeEvent, On: OnAll,
		Doc:  "`connection`; spip's own events are `started`, `stopping`, `summary`, `warning`",
		safe: func(b []byte, r *Record) []byte { return append(b, r.Kind.String()...) },
		ECS:  "event.action", ECSType: "keyword", ClickHouse: "String"},

	// What the payload is, from its first bytes (pkg/protocol), and the flow's Community ID.
	// Values are bytes as the peer sent them, bounded by the parsers; each encoding escapes them.
	{Key: KeyCommunityID, Type: JSONString, Scope: ScopeConnection, On: OnAll, Presence: WhenSet,
		Doc:  "Community ID v1 of the flow (source and ORIGINAL destination; seed `record.community_id_seed`): joins with Zeek, Suricata and Elastic data",
		text: func(r *Record, _ *Encoder) string { return r.CommunityID },
		ECS:  "network.community_id", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyProtocol, Type: JSONString, Scope: ScopeConnection, On: OnAll, Presence: WhenSet,
		Doc:  "what the first bytes are: `tls`, `http`, `ssh`, `sip`, `rdp`, `tpkt`, `smb`, `redis`, `mqtt`, `telnet`; over UDP `dns`, `ssdp`, `sip`, `memcached`, `snmp`, `quic`, `ntp`",
		text: func(r *Record, _ *Encoder) string { return r.Facts.Protocol },
		ECS:  "network.protocol", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyTLSSNI, Type: JSONString, Scope: ScopeConnection, On: OnAll, Presence: WhenSet,
		Doc:  "the server name the TLS ClientHello asks for (at most 255 bytes)",
		text: func(r *Record, _ *Encoder) string { return r.Facts.TLSSNI },
		ECS:  "tls.client.server_name", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyTLSALPN, Type: JSONStrings, Scope: ScopeConnection, On: OnAll, Presence: WhenSet,
		Doc:  "the ALPN values offered, in order (journald: joined with `,`, with `%` and `,` in a value as `%25` and `%2C`)",
		list: func(r *Record) []string { return r.Facts.TLSALPN },
		ECS:  "spip.tls_alpn", ECSType: "keyword", ClickHouse: "Array(String)"},
	{Key: KeyTLSVersion, Type: JSONString, Scope: ScopeConnection, On: OnAll, Presence: WhenSet,
		Doc:  "the highest TLS version the ClientHello offers: `1.3`, `1.2`, `1.1`, `1.0`, `ssl3.0`",
		text: func(r *Record, _ *Encoder) string { return r.Facts.TLSVersion },
		ECS:  "spip.tls_version", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyJA4, Type: JSONString, Scope: ScopeConnection, On: OnAll, Presence: WhenSet,
		Doc:  "FoxIO's JA4 TLS client fingerprint, only from a whole, well-formed ClientHello (`q` first for QUIC, from its decrypted Initial packets)",
		text: func(r *Record, _ *Encoder) string { return r.Facts.JA4 },
		ECS:  "spip.ja4", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyHTTPMethod, Type: JSONString, Scope: ScopeConnection, On: OnTCP, Presence: WhenSet,
		Doc:  "the HTTP request method",
		text: func(r *Record, _ *Encoder) string { return r.Facts.HTTPMethod },
		ECS:  "http.request.method", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyHTTPPath, Type: JSONString, Scope: ScopeConnection, On: OnTCP, Presence: WhenSet,
		Doc:  "the HTTP request target as sent (at most 1024 bytes)",
		text: func(r *Record, _ *Encoder) string { return r.Facts.HTTPPath },
		ECS:  "url.original", ECSType: "wildcard", ClickHouse: "String"},
	{Key: KeyHTTPVersion, Type: JSONString, Scope: ScopeConnection, On: OnTCP, Presence: WhenSet,
		Doc:  "the HTTP version of the request line, such as `1.1`",
		text: func(r *Record, _ *Encoder) string { return r.Facts.HTTPVersion },
		ECS:  "http.version", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyHTTPHost, Type: JSONString, Scope: ScopeConnection, On: OnTCP, Presence: WhenSet,
		Doc:  "the request's Host header (at most 255 bytes)",
		text: func(r *Record, _ *Encoder) string { return r.Facts.HTTPHost },
		ECS:  "spip.http_host", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyHTTPUserAgent, Type: JSONString, Scope: ScopeConnection, On: OnTCP, Presence: WhenSet,
		Doc:  "the request's User-Agent header (at most 512 bytes)",
		text: func(r *Record, _ *Encoder) string { return r.Facts.HTTPUserAgent },
		ECS:  "user_agent.original", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeySSHBanner, Type: JSONString, Scope: ScopeConnection, On: OnTCP, Presence: WhenSet,
		Doc:  "the SSH client's identification string, without CR LF (at most 253 bytes)",
		text: func(r *Record, _ *Encoder) string { return r.Facts.SSHBanner },
		ECS:  "spip.ssh_banner", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyHASSH, Type: JSONString, Scope: ScopeConnection, On: OnTCP, Presence: WhenSet,
		Doc:  "HASSH of the SSH client's KEXINIT, when it is among the captured bytes (most clients wait for the server first)",
		text: func(r *Record, _ *Encoder) string { return r.Facts.HASSH },
		ECS:  "spip.hassh", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyDNSQueryName, Type: JSONString, Scope: ScopeConnection, On: OnUDP, Presence: WhenSet,
		Doc:  "the name a DNS query's first question asks for, without the final dot (at most 255 bytes)",
		text: func(r *Record, _ *Encoder) string { return r.Facts.DNSQueryName },
		ECS:  "dns.question.name", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyDNSQueryType, Type: JSONString, Scope: ScopeConnection, On: OnUDP, Presence: WhenSet,
		Doc:  "that DNS question's type: `A`, `AAAA`, `ANY`, `TXT`, …, or `TYPEn`",
		text: func(r *Record, _ *Encoder) string { return r.Facts.DNSQueryType },
		ECS:  "dns.question.type", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyNTPVersion, Type: JSONInt, Scope: ScopeConnection, On: OnUDP, Presence: WhenSet,
		Doc:  "an NTP request's version, 1-4",
		safe: func(b []byte, r *Record) []byte { return strconv.AppendUint(b, uint64(r.Facts.NTPVersion), 10) },
		has:  func(r *Record) bool { return r.Facts.NTPVersion != 0 },
		ECS:  "spip.ntp_version", ECSType: "long", ClickHouse: "UInt8"},
	{Key: KeyNTPMode, Type: JSONInt, Scope: ScopeConnection, On: OnUDP, Presence: WhenSet,
		Doc:  "an NTP request's mode: 3 client, 1 symmetric, 6 control (ntpq), 7 private (ntpdc, monlist)",
		safe: func(b []byte, r *Record) []byte { return strconv.AppendUint(b, uint64(r.Facts.NTPMode), 10) },
		has:  func(r *Record) bool { return r.Facts.NTPVersion != 0 },
		ECS:  "spip.ntp_mode", ECSType: "long", ClickHouse: "UInt8"},
	{Key: KeySSDPTarget, Type: JSONString, Scope: ScopeConnection, On: OnUDP, Presence: WhenSet,
		Doc:  "an SSDP M-SEARCH's search target (ST), such as `ssdp:all` (at most 255 bytes)",
		text: func(r *Record, _ *Encoder) string { return r.Facts.SSDPTarget },
		ECS:  "spip.ssdp_target", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyFieldsTruncated, Type: JSONStrings, Scope: ScopeConnection, On: OnAll, Presence: WhenSet,
		Doc:  "the fields above whose value was cut to its bound, or whose end was not in the captured bytes",
		list: truncatedFields,
		ECS:  "spip.fields_truncated", ECSType: "keyword", ClickHouse: "Array(String)"},

	// Event records: spip's own events. Their fields come from Record.Fields.
	{Key: KeyMessage, Type: JSONString, Scope: ScopeEvent, JSONOnly: true,
		Doc: "what happened, in words (journald: MESSAGE)", ECS: "message", ECSType: "match_only_text", ClickHouse: "String"},
	{Key: KeySink, Type: JSONString, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "the output concerned: `journald` or `json`", ECS: "spip.sink", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyReason, Type: JSONString, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "why records were dropped", ECS: "spip.reason", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyDropped, Type: JSONInt, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "records an output dropped in the interval", ECS: "spip.dropped", ECSType: "long", ClickHouse: "UInt64"},
	{Key: KeyDroppedTotal, Type: JSONInt, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "records an output dropped since start", ECS: "spip.dropped_total", ECSType: "long", ClickHouse: "UInt64"},
	{Key: KeyOverloadTotal, Type: JSONInt, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "connections recorded unread since start: too many sessions at once", ECS: "spip.overload_total", ECSType: "long", ClickHouse: "UInt64"},
	{Key: KeyRateLimited, Type: JSONInt, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "connections closed unread in the interval: over the per-source budget", ECS: "spip.ratelimited", ECSType: "long", ClickHouse: "UInt64"},
	{Key: KeyRateLimitedTotal, Type: JSONInt, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "the same since start", ECS: "spip.ratelimited_total", ECSType: "long", ClickHouse: "UInt64"},
	{Key: KeyTopSources, Type: JSONString, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "the sources most over their budget, with counts", ECS: "spip.top_sources", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyRecordedTotal, Type: JSONInt, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "connections recorded since start", ECS: "spip.recorded_total", ECSType: "long", ClickHouse: "UInt64"},
	{Key: KeyListen, Type: JSONString, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "the listening socket's address", ECS: "spip.listen", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyMode, Type: JSONString, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "the capture mode: `tproxy` or `redirect`", ECS: "spip.mode", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyVersion, Type: JSONString, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "spip's version", ECS: "observer.version", ECSType: "keyword", ClickHouse: "String"},
	{Key: KeyError, Type: JSONString, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "the error the system returned", ECS: "error.message", ECSType: "match_only_text", ClickHouse: "String"},
	{Key: KeyIntervalSeconds, Type: JSONInt, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "the summary's interval, seconds", ECS: "spip.interval_s", ECSType: "long", ClickHouse: "UInt32"},
	{Key: KeyUDPDropped, Type: JSONInt, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "UDP datagrams dropped unrecorded in the interval: past `session.max_udp_flows`, or by the kernel for a full receive buffer", ECS: "spip.udp_dropped", ECSType: "long", ClickHouse: "UInt64"},
	{Key: KeyUDPDroppedTotal, Type: JSONInt, Scope: ScopeEvent, Presence: WhenSet,
		Doc: "the same since start", ECS: "spip.udp_dropped_total", ECSType: "long", ClickHouse: "UInt64"},
}

// fieldIndex finds a key's row; journalHeadRows are the rows of journalHead.
var (
	fieldIndex      = map[Key]*FieldDef{}
	journalHeadRows [len(journalHead)]*FieldDef
	// connRows are the rows of connection records, journalConnRows those journald writes
	// after its head: the encoders' loops skip nothing they need not.
	connRows, journalConnRows []*FieldDef
)

func init() {
	for i := range Fields {
		f := &Fields[i]
		f.jname = f.Key.JournalName()
		f.jkey = `,"` + string(f.Key) + `":`
		fieldIndex[f.Key] = f
	}
	for i, k := range journalHead {
		journalHeadRows[i] = fieldIndex[k]
		journalHeadRows[i].head = true
	}
	for i := range Fields {
		f := &Fields[i]
		if f.Scope&ScopeConnection == 0 {
			continue
		}
		connRows = append(connRows, f)
		if !f.JSONOnly && !f.head {
			journalConnRows = append(journalConnRows, f)
		}
	}
}

// Lookup returns the row of key k.
func Lookup(k Key) (*FieldDef, bool) {
	f, ok := fieldIndex[k]
	return f, ok
}

// present reports whether a connection record carries the field.
func (f *FieldDef) present(r *Record, e *Encoder) bool {
	if !f.On.Has(r.Transport) {
		return false
	}
	if f.Presence == Always {
		return true
	}
	return f.hasValue(r, e)
}

func (f *FieldDef) hasValue(r *Record, e *Encoder) bool {
	switch {
	case f.has != nil:
		return f.has(r)
	case f.text != nil:
		return f.text(r, e) != ""
	case f.raw != nil:
		return len(f.raw(r)) > 0
	case f.list != nil:
		return len(f.list(r)) > 0
	}
	return true
}

// journalHead are written first in journald, in this order, for every kind of record: what
// identifies an entry when it is read without its fields (journalctl's short output).
var journalHead = [...]Key{KeyEvent, KeyTimestamp, KeyTime, KeySensor}

// AppendList appends a list as journald holds it: values joined with ",", and "%" and "," inside
// a value written as %25 and %2C, so the list splits back exactly.
func AppendList(b []byte, vs []string) []byte {
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		for j := 0; j < len(v); j++ {
			switch c := v[j]; c {
			case '%':
				b = append(b, "%25"...)
			case ',':
				b = append(b, "%2C"...)
			default:
				b = append(b, c)
			}
		}
	}
	return b
}

// cutKeys names the field of each protocol.Cut bit.
var cutKeys = [...]struct {
	bit protocol.Cut
	key Key
}{
	{protocol.CutTLSSNI, KeyTLSSNI},
	{protocol.CutTLSALPN, KeyTLSALPN},
	{protocol.CutHTTPPath, KeyHTTPPath},
	{protocol.CutHTTPHost, KeyHTTPHost},
	{protocol.CutHTTPUserAgent, KeyHTTPUserAgent},
	{protocol.CutSSHBanner, KeySSHBanner},
	{protocol.CutSSDPTarget, KeySSDPTarget},
}

func truncatedFields(r *Record) []string {
	if r.Facts.Cut == 0 {
		return nil
	}
	var out []string
	for _, c := range cutKeys {
		if r.Facts.Cut&c.bit != 0 {
			out = append(out, string(c.key))
		}
	}
	return out
}
