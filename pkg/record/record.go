// Package record defines spip's record schema and its two encodings: JSON lines and journald fields.
package record

import (
	"net/netip"
	"time"

	"github.com/google/uuid"

	"spip/pkg/protocol"
)

// Kind is what a record reports. Each kind has its own journald MESSAGE_ID.
type Kind uint8

// Record kinds.
const (
	KindConnection Kind = iota // one inbound connection, written when it ends
	KindStarted                // the sensor is ready
	KindStopping               // the sensor is stopping
	KindSummary                // records dropped or suppressed since the last summary
	KindWarning                // an operational fault: a sink failing, fds exhausted
)

// kindInfo is the per-kind constant data; the MESSAGE_IDs are documented in packaging/spip.catalog.
var kindInfo = [...]struct {
	name      string
	messageID string
	priority  Priority
}{
	KindConnection: {"connection", "0ac47f5aa9004466bb382a7164e382ab", PriInfo},
	KindStarted:    {"started", "818aa029afa34f408c30dc3443c35129", PriNotice},
	KindStopping:   {"stopping", "06492bfe2268472dbaa2f5c48d56bd01", PriNotice},
	KindSummary:    {"summary", "87cddb7d282c49c7bcd0a732159362c0", PriWarning},
	KindWarning:    {"warning", "b864c8202a3e44f9ae6aea08b471d701", PriWarning},
}

// String is the kind's name, the value of the event field.
func (k Kind) String() string {
	if int(k) < len(kindInfo) {
		return kindInfo[k].name
	}
	return "unknown"
}

// MessageID is the kind's journald MESSAGE_ID ("" for a kind that does not exist).
func (k Kind) MessageID() string {
	if int(k) < len(kindInfo) {
		return kindInfo[k].messageID
	}
	return ""
}

// Kinds is the number of record kinds: they are 0 to Kinds-1.
const Kinds = len(kindInfo)

// Priority is a syslog priority as journald stores it.
type Priority uint8

// Priorities used by spip.
const (
	PriWarning Priority = 4
	PriNotice  Priority = 5
	PriInfo    Priority = 6
)

// CloseReason says why a connection's session ended.
type CloseReason uint8

// Close reasons.
const (
	CloseEOF      CloseReason = iota // the peer closed its side
	CloseTimeout                     // silent past the first-byte timeout, or idle past the idle timeout
	CloseReset                       // the peer reset the connection, or the socket failed
	CloseLimit                       // the session reached its maximum length
	CloseOverload                    // too many sessions at once: recorded, not read
	CloseShutdown                    // the sensor stopped while the session was open
)

var closeNames = [...]string{"eof", "timeout", "reset", "limit", "overload", "shutdown"}

func (c CloseReason) String() string {
	if int(c) < len(closeNames) {
		return closeNames[c]
	}
	return "unknown"
}

// Record is one thing spip reports. Connection records fill the connection fields;
// other kinds carry a Message and Fields. A Record is immutable once handed to a sink.
type Record struct {
	Kind Kind
	// Time is when the connection was accepted, or when the event happened.
	Time time.Time

	SessionID     uuid.UUID
	Transport     Transport // TCP unless set
	Source        netip.AddrPort
	Destination   netip.AddrPort // the original destination, before any redirect
	DestError     string         // why Destination could not be read, if it could not
	Payload       []byte         // at most the payload cap
	BytesReceived uint64         // everything the peer sent, also past the cap
	Truncated     bool
	Duration      time.Duration
	Close         CloseReason
	// Datagrams counts a UDP flow's datagrams; its Payload is the first one's, Duration runs from
	// the first to the last.
	Datagrams uint64

	// Facts is what the payload's first bytes are (protocol and its key facts); CommunityID
	// names the flow (Community ID v1). Both are empty when they do not apply.
	Facts       protocol.Facts
	CommunityID string

	// Message is the human summary of an event record; connection records derive theirs.
	Message string
	Fields  []Field
}

// Field is one extra key of an event record. Keys come only from the Key constants.
type Field struct {
	Key   Key
	Str   string
	Int   int64
	IsInt bool
}

// Int returns an integer field.
func Int(k Key, v int64) Field { return Field{Key: k, Int: v, IsInt: true} }

// Str returns a text field.
func Str(k Key, v string) Field { return Field{Key: k, Str: v} }

// Priority is the record's syslog priority.
func (r *Record) Priority() Priority {
	if int(r.Kind) < len(kindInfo) {
		return kindInfo[r.Kind].priority
	}
	return PriWarning
}
