package record

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"spip/pkg/protocol"
)

// Key is a record field name: the JSON key, and, upper-cased behind SPIP_, the journald field.
// Only the constants below exist, so no byte a peer sends can become a field name.
type Key string

// Record keys. The first eight are the original spip's, with its names and meaning.
const (
	KeyTimestamp        Key = "timestamp"
	KeyPayload          Key = "payload"
	KeyPayloadHex       Key = "payload_hex"
	KeySourceIP         Key = "source_ip"
	KeySourcePort       Key = "source_port"
	KeyDestinationIP    Key = "destination_ip"
	KeyDestinationPort  Key = "destination_port"
	KeySessionID        Key = "session_id"
	KeyTime             Key = "time"
	KeyTransport        Key = "transport"
	KeyDatagrams        Key = "datagrams"
	KeyBytesReceived    Key = "bytes_received"
	KeyPayloadTruncated Key = "payload_truncated"
	KeyDurationMS       Key = "duration_ms"
	KeyCloseReason      Key = "close_reason"
	KeyDestinationError Key = "destination_error"
	KeySensor           Key = "sensor"
	KeyEvent            Key = "event"
	KeyMessage          Key = "message" // JSON only; journald has MESSAGE

	// What the payload is (pkg/protocol) and the flow's Community ID.
	KeyCommunityID     Key = "community_id"
	KeyProtocol        Key = "protocol"
	KeyTLSSNI          Key = "tls_sni"
	KeyTLSALPN         Key = "tls_alpn"
	KeyTLSVersion      Key = "tls_version"
	KeyJA4             Key = "ja4"
	KeyHTTPMethod      Key = "http_method"
	KeyHTTPPath        Key = "http_path"
	KeyHTTPVersion     Key = "http_version"
	KeyHTTPHost        Key = "http_host"
	KeyHTTPUserAgent   Key = "http_user_agent"
	KeySSHBanner       Key = "ssh_banner"
	KeyHASSH           Key = "hassh"
	KeyFieldsTruncated Key = "fields_truncated"
	KeyDNSQueryName    Key = "dns_query_name"
	KeyDNSQueryType    Key = "dns_query_type"
	KeyNTPVersion      Key = "ntp_version"
	KeyNTPMode         Key = "ntp_mode"
	KeySSDPTarget      Key = "ssdp_target"

	// Event record keys.
	KeySink             Key = "sink"
	KeyReason           Key = "reason"
	KeyDropped          Key = "dropped"
	KeyDroppedTotal     Key = "dropped_total"
	KeyOverloadTotal    Key = "overload_total"
	KeyRateLimited      Key = "ratelimited"
	KeyRateLimitedTotal Key = "ratelimited_total"
	KeyTopSources       Key = "top_sources"
	KeyRecordedTotal    Key = "recorded_total"
	KeyListen           Key = "listen"
	KeyMode             Key = "mode"
	KeyVersion          Key = "version"
	KeyError            Key = "error"
	KeyIntervalSeconds  Key = "interval_s"
	KeyUDPDropped       Key = "udp_dropped"
	KeyUDPDroppedTotal  Key = "udp_dropped_total"
)

// JournalName is the journald field name of k: SPIP_ and the key in upper case.
func (k Key) JournalName() string { return "SPIP_" + strings.ToUpper(string(k)) }

// Encoder turns records into bytes. It holds what is the same for every record of one sensor.
type Encoder struct {
	sensor   string
	format   Format
	hostname string
	// omit are the fields left out of journald's connection entries (OmitJournal).
	omit []*FieldDef
}

// omits reports whether f is left out of journald's connection entries.
func (e *Encoder) omits(f *FieldDef) bool {
	for _, o := range e.omit {
		if o == f {
			return true
		}
	}
	return false
}

// JournalOmittable are the connection fields a sensor may leave out of its journald entries
// (record.journald_omit) to make them smaller: each value is in the entry in another form.
// payload_hex: SPIP_PAYLOAD holds the same bytes exactly (journald is binary-safe; `journalctl
// -o json` prints a non-UTF-8 value as an array of bytes, `-o export` as length and bytes).
// time: SPIP_TIMESTAMP holds the accept time to the second, and journald's own
// __REALTIME_TIMESTAMP the time the record was written (at close, SPIP_DURATION_MS later),
// to the microsecond. The JSON mirror always carries both.
var JournalOmittable = []Key{KeyPayloadHex, KeyTime}

// OmitJournal leaves keys out of journald's connection entries; spip's event entries and the
// JSON mirror keep them. Only JournalOmittable keys may be left out.
func (e *Encoder) OmitJournal(keys ...Key) error {
	for _, k := range keys {
		if !slices.Contains(JournalOmittable, k) {
			return fmt.Errorf("record: %q cannot be left out of journald entries (only %v)", k, JournalOmittable)
		}
		e.omit = append(e.omit, fieldIndex[k])
	}
	return nil
}

// NewEncoder returns an encoder that stamps records with the sensor name.
func NewEncoder(sensor string) *Encoder { return &Encoder{sensor: sensor} }

// NewECSEncoder returns an encoder whose JSON is the ECS form (AppendECS); hostname is the
// machine's, for observer.hostname. Its journald entries are the same as NewEncoder's.
func NewECSEncoder(sensor, hostname string) *Encoder {
	return &Encoder{sensor: sensor, format: FormatECS, hostname: hostname}
}

// AppendJSON appends r as one JSON object and a newline. A connection record's keys come in
// the order of Fields.
func (e *Encoder) AppendJSON(b []byte, r *Record) []byte {
	if e.format == FormatECS {
		return e.AppendECS(b, r)
	}
	if r.Kind != KindConnection {
		return e.appendEventJSON(b, r)
	}
	b = append(b, '{')
	start := len(b)
	for _, f := range connRows {
		if f.On&(1<<r.Transport) == 0 || f.Presence != Always && !f.hasValue(r, e) {
			continue
		}
		if len(b) == start {
			b = append(b, f.jkey[1:]...)
		} else {
			b = append(b, f.jkey...)
		}
		b = appendJSONValue(b, f, r, e)
	}
	return append(b, "}\n"...)
}

func appendJSONKey(b []byte, k Key) []byte {
	b = append(b, '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

// appendJSONValue writes a connection field's value as its JSON type says.
func appendJSONValue(b []byte, f *FieldDef, r *Record, e *Encoder) []byte {
	switch {
	case f.safe != nil:
		if f.Type != JSONString {
			return f.safe(b, r)
		}
		b = append(b, '"')
		return append(f.safe(b, r), '"')
	case f.text != nil:
		return AppendJSONText(b, f.text(r, e))
	case f.raw != nil:
		return AppendJSONString(b, f.raw(r))
	case f.list != nil:
		b = append(b, '[')
		for i, v := range f.list(r) {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSONText(b, v)
		}
		return append(b, ']')
	}
	return append(b, "null"...)
}

// appendEventJSON writes spip's own events: the fields every record has, the message, then the
// event's own fields in the order they were given.
func (e *Encoder) appendEventJSON(b []byte, r *Record) []byte {
	b = append(b, '{')
	for i, k := range [...]Key{KeyTimestamp, KeyTime, KeyEvent} {
		if i > 0 {
			b = append(b, ',')
		}
		f := fieldIndex[k]
		b = appendJSONValue(appendJSONKey(b, k), f, r, e)
	}
	b = AppendJSONText(appendJSONKey(append(b, ','), KeyMessage), r.Message)
	for _, f := range r.Fields {
		b = appendJSONKey(append(b, ','), f.Key)
		if f.IsInt {
			b = strconv.AppendInt(b, f.Int, 10)
		} else {
			b = AppendJSONText(b, f.Str)
		}
	}
	b = appendJSONValue(appendJSONKey(append(b, ','), KeySensor), fieldIndex[KeySensor], r, e)
	return append(b, "}\n"...)
}

func appendUUID(b []byte, r *Record) []byte {
	var s [36]byte
	u := r.SessionID
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return append(b, s[:]...)
}

// appendTime writes RFC 3339 UTC with microseconds: sortable as text and exact enough to order a scan.
func appendTime(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z")
}

const hexDigits = "0123456789abcdef"

// AppendJSONText is AppendJSONString for a string.
func AppendJSONText(b []byte, s string) []byte { return AppendJSONString(b, bytesOf(s)) }

// bytesOf views s as bytes without a copy, for encoders that only read them: the hot path
// converts no strings.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// AppendJSONString appends s as a JSON string. Invalid UTF-8 bytes become U+FFFD each, as
// encoding/json does; control characters are escaped, so the line stays one line.
func AppendJSONString(b []byte, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but end lines in JavaScript; escape them as encoding/json does.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendJournal appends r in journald's native protocol: one datagram's worth of fields.
// Values holding a newline use the length-prefixed binary form, so payload bytes can never
// start a field of their own.
func (e *Encoder) AppendJournal(b []byte, r *Record) []byte {
	// MESSAGE is one line by construction (appendMessage writes no newline): built in place,
	// no allocation per record.
	b = append(b, "MESSAGE="...)
	b = appendMessage(b, r)
	b = append(b, "\nMESSAGE_ID="...)
	b = append(b, r.Kind.MessageID()...)
	b = append(b, "\nPRIORITY="...)
	b = strconv.AppendUint(b, uint64(r.Priority()), 10)
	b = append(b, "\nSYSLOG_IDENTIFIER=spip\n"...)
	for _, f := range journalHeadRows {
		if r.Kind == KindConnection && e.omits(f) {
			continue
		}
		b = appendJournalValue(b, f, r, e)
	}
	if r.Kind != KindConnection {
		for _, f := range r.Fields {
			if f.IsInt {
				b = append(b, journalName(f.Key)...)
				b = append(b, '=')
				b = strconv.AppendInt(b, f.Int, 10)
				b = append(b, '\n')
			} else {
				b = appendJournalField(b, journalName(f.Key), bytesOf(f.Str))
			}
		}
		return b
	}
	for _, f := range journalConnRows {
		if f.On&(1<<r.Transport) == 0 || f.Presence != Always && !f.hasValue(r, e) || e.omits(f) {
			continue
		}
		b = appendJournalValue(b, f, r, e)
	}
	return b
}

// journalName is SPIP_<KEY>, made once for the keys in Fields: the hot path builds no names.
func journalName(k Key) string {
	if f, ok := fieldIndex[k]; ok {
		return f.jname
	}
	return k.JournalName()
}

// appendJournalValue writes one field of r as NAME=value or in the binary form.
func appendJournalValue(b []byte, f *FieldDef, r *Record, e *Encoder) []byte {
	switch {
	case f.safe != nil:
		b = append(b, f.jname...)
		b = append(b, '=')
		return append(f.safe(b, r), '\n')
	case f.text != nil:
		return appendJournalField(b, f.jname, bytesOf(f.text(r, e)))
	case f.raw != nil:
		return appendJournalField(b, f.jname, f.raw(r))
	case f.list != nil:
		b = append(b, f.jname...)
		b = append(b, '=')
		start := len(b)
		b = AppendList(b, f.list(r))
		return toBinary(b, start)
	}
	return b
}

// toBinary ends a NAME=value field whose value starts at start, switching it to the binary form
// in place when the value holds a newline.
func toBinary(b []byte, start int) []byte {
	if !containsNewline(b[start:]) {
		return append(b, '\n')
	}
	n := len(b) - start
	b = append(b, make([]byte, 8)...)
	copy(b[start+8:], b[start:start+n])
	b[start-1] = '\n'
	binary.LittleEndian.PutUint64(b[start:], uint64(n))
	return append(b, '\n')
}

// appendJournalField writes NAME=value, or the binary form when value holds a newline.
func appendJournalField(b []byte, name string, value []byte) []byte {
	b = append(b, name...)
	if !containsNewline(value) {
		b = append(b, '=')
		b = append(b, value...)
		return append(b, '\n')
	}
	b = append(b, '\n')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(value)))
	b = append(b, value...)
	return append(b, '\n')
}

func containsNewline(v []byte) bool {
	for _, c := range v {
		if c == '\n' {
			return true
		}
	}
	return false
}

// appendMessage appends the one-line MESSAGE: addresses, size and close reason, never payload
// bytes; an event's message with its control characters blanked.
func appendMessage(m []byte, r *Record) []byte {
	if r.Kind != KindConnection {
		return appendSanitized(m, r.Message)
	}
	m = r.Source.Addr().Unmap().AppendTo(m)
	m = append(m, ':')
	m = strconv.AppendUint(m, uint64(r.Source.Port()), 10)
	m = append(m, " -> "...)
	if r.Destination.IsValid() {
		m = r.Destination.Addr().Unmap().AppendTo(m)
		m = append(m, ':')
		m = strconv.AppendUint(m, uint64(r.Destination.Port()), 10)
	} else {
		m = append(m, "unknown"...)
	}
	m = append(m, '/')
	m = append(m, r.Transport.String()...)
	m = append(m, ' ')
	if r.Transport == UDP {
		m = strconv.AppendUint(m, r.Datagrams, 10)
		m = append(m, " datagrams, "...)
	}
	m = strconv.AppendUint(m, r.BytesReceived, 10)
	m = append(m, " bytes, "...)
	m = append(m, r.Close.String()...)
	return appendFactsMessage(m, &r.Facts)
}

// maxMessageValue bounds each peer-chosen value in MESSAGE, escapes included.
const maxMessageValue = 80

// appendFactsMessage names the protocol and its most telling value: "; tls www.example.com",
// "; http GET example.com /.env", "; ssh SSH-2.0-Go". Values are the peer's bytes, so they are
// escaped to printable ASCII and cut (see appendMessageValue): nothing a peer sends can forge a
// line or reach a terminal raw.
func appendFactsMessage(m []byte, f *protocol.Facts) []byte {
	if f.Protocol == "" {
		return m
	}
	m = append(m, "; "...)
	m = append(m, f.Protocol...) // one of the dispatcher's constant names
	for _, v := range [...]string{f.TLSSNI, f.HTTPMethod, f.HTTPHost, f.HTTPPath, f.SSHBanner} {
		if v != "" {
			m = append(m, ' ')
			m = appendMessageValue(m, v)
		}
	}
	return m
}

// appendMessageValue writes v with bytes outside printable ASCII, and the backslash, as \xNN:
// whole when that takes at most maxMessageValue characters, else cut to fit with "...".
func appendMessageValue(m []byte, v string) []byte {
	width := func(c byte) int {
		if c < 0x20 || c > 0x7e || c == '\\' {
			return 4
		}
		return 1
	}
	total := 0
	for i := 0; i < len(v); i++ {
		total += width(v[i])
	}
	room := maxMessageValue
	if total > maxMessageValue {
		room -= 3
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if room -= width(c); room < 0 {
			break
		}
		if width(c) == 1 {
			m = append(m, c)
		} else {
			m = append(m, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		}
	}
	if total > maxMessageValue {
		m = append(m, "..."...)
	}
	return m
}

// appendSanitized appends an event message on one line: control characters become spaces.
func appendSanitized(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}
