package record

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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
	KeyBytesReceived    Key = "bytes_received"
	KeyPayloadTruncated Key = "payload_truncated"
	KeyDurationMS       Key = "duration_ms"
	KeyCloseReason      Key = "close_reason"
	KeyDestinationError Key = "destination_error"
	KeySensor           Key = "sensor"
	KeyEvent            Key = "event"
	KeyMessage          Key = "message" // JSON only; journald has MESSAGE

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
	KeyActiveSessions   Key = "active_sessions"
	KeyListen           Key = "listen"
	KeyMode             Key = "mode"
	KeyVersion          Key = "version"
	KeyError            Key = "error"
	KeyIntervalSeconds  Key = "interval_s"
)

// AllKeys lists every key; tests check each is a valid journald field name.
var AllKeys = []Key{
	KeyTimestamp, KeyPayload, KeyPayloadHex, KeySourceIP, KeySourcePort, KeyDestinationIP,
	KeyDestinationPort, KeySessionID, KeyTime, KeyTransport, KeyBytesReceived, KeyPayloadTruncated,
	KeyDurationMS, KeyCloseReason, KeyDestinationError, KeySensor, KeyEvent, KeyMessage,
	KeySink, KeyReason, KeyDropped, KeyDroppedTotal, KeyOverloadTotal, KeyRateLimited,
	KeyRateLimitedTotal, KeyTopSources, KeyRecordedTotal, KeyActiveSessions, KeyListen, KeyMode,
	KeyVersion, KeyError, KeyIntervalSeconds,
}

// JournalName is the journald field name of k: SPIP_ and the key in upper case.
func (k Key) JournalName() string { return "SPIP_" + strings.ToUpper(string(k)) }

// Encoder turns records into bytes. It holds what is the same for every record of one sensor.
type Encoder struct {
	sensor string
}

// NewEncoder returns an encoder that stamps records with the sensor name.
func NewEncoder(sensor string) *Encoder { return &Encoder{sensor: sensor} }

// AppendJSON appends r as one JSON object and a newline.
func (e *Encoder) AppendJSON(b []byte, r *Record) []byte {
	if r.Kind != KindConnection {
		return e.appendEventJSON(b, r)
	}
	b = append(b, `{"timestamp":`...)
	b = strconv.AppendInt(b, r.Time.Unix(), 10)
	b = append(b, `,"payload":`...)
	b = AppendJSONString(b, r.Payload)
	b = append(b, `,"payload_hex":"`...)
	b = hex.AppendEncode(b, r.Payload)
	b = append(b, `","source_ip":"`...)
	b = r.Source.Addr().Unmap().AppendTo(b)
	b = append(b, `","source_port":`...)
	b = strconv.AppendUint(b, uint64(r.Source.Port()), 10)
	b = append(b, `,"destination_ip":"`...)
	if r.Destination.IsValid() {
		b = r.Destination.Addr().Unmap().AppendTo(b)
	}
	b = append(b, `","destination_port":`...)
	b = strconv.AppendUint(b, uint64(r.Destination.Port()), 10)
	b = append(b, `,"session_id":"`...)
	b = appendUUID(b, r)
	b = append(b, `","time":"`...)
	b = appendTime(b, r.Time)
	b = append(b, `","transport":"tcp","bytes_received":`...)
	b = strconv.AppendUint(b, r.BytesReceived, 10)
	b = append(b, `,"payload_truncated":`...)
	b = strconv.AppendBool(b, r.Truncated)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, r.Duration.Milliseconds(), 10)
	b = append(b, `,"close_reason":"`...)
	b = append(b, r.Close.String()...)
	b = append(b, '"')
	if r.DestError != "" {
		b = append(b, `,"destination_error":`...)
		b = AppendJSONString(b, []byte(r.DestError))
	}
	b = append(b, `,"sensor":`...)
	b = AppendJSONString(b, []byte(e.sensor))
	b = append(b, `,"event":"connection"}`+"\n"...)
	return b
}

func (e *Encoder) appendEventJSON(b []byte, r *Record) []byte {
	b = append(b, `{"timestamp":`...)
	b = strconv.AppendInt(b, r.Time.Unix(), 10)
	b = append(b, `,"time":"`...)
	b = appendTime(b, r.Time)
	b = append(b, `","event":"`...)
	b = append(b, r.Kind.String()...)
	b = append(b, `","message":`...)
	b = AppendJSONString(b, []byte(r.Message))
	for _, f := range r.Fields {
		b = append(b, `,"`...)
		b = append(b, f.Key...)
		b = append(b, `":`...)
		if f.IsInt {
			b = strconv.AppendInt(b, f.Int, 10)
		} else {
			b = AppendJSONString(b, []byte(f.Str))
		}
	}
	b = append(b, `,"sensor":`...)
	b = AppendJSONString(b, []byte(e.sensor))
	b = append(b, "}\n"...)
	return b
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
	b = appendJournalField(b, "MESSAGE", e.message(r))
	b = append(b, "MESSAGE_ID="...)
	b = append(b, r.Kind.MessageID()...)
	b = append(b, "\nPRIORITY="...)
	b = strconv.AppendUint(b, uint64(r.Priority()), 10)
	b = append(b, "\nSYSLOG_IDENTIFIER=spip\nSPIP_EVENT="...)
	b = append(b, r.Kind.String()...)
	b = append(b, "\nSPIP_TIMESTAMP="...)
	b = strconv.AppendInt(b, r.Time.Unix(), 10)
	b = append(b, "\nSPIP_TIME="...)
	b = appendTime(b, r.Time)
	b = append(b, '\n')
	b = appendJournalField(b, "SPIP_SENSOR", []byte(e.sensor))
	if r.Kind != KindConnection {
		for _, f := range r.Fields {
			if f.IsInt {
				b = append(b, f.Key.JournalName()...)
				b = append(b, '=')
				b = strconv.AppendInt(b, f.Int, 10)
				b = append(b, '\n')
			} else {
				b = appendJournalField(b, f.Key.JournalName(), []byte(f.Str))
			}
		}
		return b
	}
	b = appendJournalField(b, "SPIP_PAYLOAD", r.Payload)
	b = append(b, "SPIP_PAYLOAD_HEX="...)
	b = hex.AppendEncode(b, r.Payload)
	b = append(b, "\nSPIP_SOURCE_IP="...)
	b = r.Source.Addr().Unmap().AppendTo(b)
	b = append(b, "\nSPIP_SOURCE_PORT="...)
	b = strconv.AppendUint(b, uint64(r.Source.Port()), 10)
	b = append(b, "\nSPIP_DESTINATION_IP="...)
	if r.Destination.IsValid() {
		b = r.Destination.Addr().Unmap().AppendTo(b)
	}
	b = append(b, "\nSPIP_DESTINATION_PORT="...)
	b = strconv.AppendUint(b, uint64(r.Destination.Port()), 10)
	b = append(b, "\nSPIP_SESSION_ID="...)
	b = appendUUID(b, r)
	b = append(b, "\nSPIP_TRANSPORT=tcp\nSPIP_BYTES_RECEIVED="...)
	b = strconv.AppendUint(b, r.BytesReceived, 10)
	b = append(b, "\nSPIP_PAYLOAD_TRUNCATED="...)
	b = strconv.AppendBool(b, r.Truncated)
	b = append(b, "\nSPIP_DURATION_MS="...)
	b = strconv.AppendInt(b, r.Duration.Milliseconds(), 10)
	b = append(b, "\nSPIP_CLOSE_REASON="...)
	b = append(b, r.Close.String()...)
	b = append(b, '\n')
	if r.DestError != "" {
		b = appendJournalField(b, "SPIP_DESTINATION_ERROR", []byte(r.DestError))
	}
	return b
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

// message is the one-line MESSAGE: addresses, size and close reason, never payload bytes.
func (e *Encoder) message(r *Record) []byte {
	if r.Kind != KindConnection {
		return sanitizeLine([]byte(r.Message))
	}
	m := make([]byte, 0, 96)
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
	m = append(m, "/tcp "...)
	m = strconv.AppendUint(m, r.BytesReceived, 10)
	m = append(m, " bytes, "...)
	m = append(m, r.Close.String()...)
	return m
}

// sanitizeLine keeps event messages on one line.
func sanitizeLine(s []byte) []byte {
	out := s[:0:0]
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		out = append(out, c)
	}
	return out
}
