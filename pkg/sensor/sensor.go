// Package sensor accepts connections, reads what each peer sends under bounds, and emits one record per connection.
package sensor

import (
	"net/netip"
	"sync/atomic"
	"time"

	"spip/pkg/record"
	"spip/pkg/sensor/handover"
)

// Config bounds the sessions. It mirrors the session section of spip.toml.
type Config struct {
	PayloadCap       int
	FirstByteTimeout time.Duration
	IdleTimeout      time.Duration
	MaxDuration      time.Duration
	MaxSessions      int
	ShutdownGrace    time.Duration
	CloseWithReset   bool
	// RedirectMode says capture.mode is redirect. It does not change how the destination is
	// found (the kernel is asked per connection in every mode); it says that a connection to the
	// listener's own port without a NAT entry was redirected and lost its entry before it was
	// accepted, so its destination is unknown. In tproxy mode that is a real probe of the port.
	RedirectMode bool
	// UDPIdleTimeout ends a UDP flow after its last datagram; MaxUDPFlows bounds the flow table.
	UDPIdleTimeout time.Duration
	MaxUDPFlows    int
	// CommunityIDSeed is record.community_id_seed: the seed of every record's Community ID.
	CommunityIDSeed uint16
}

// Admitter decides whether a new connection from src may be read. It runs on the event loop and
// must not block. mono is the loop's monotonic clock: it never steps back with the wall clock. A refused connection is closed unread and not recorded one by one: the
// admitter counts it for the summary record.
type Admitter interface {
	Admit(src netip.Addr, mono time.Duration) bool
}

// Stats are the sensor's counters; every field is safe to read while the sensor runs.
type Stats struct {
	Accepted     atomic.Uint64 // connections accepted
	Recorded     atomic.Uint64 // connection records emitted
	Active       atomic.Int64  // sessions being read now
	Overload     atomic.Uint64 // recorded without reading: too many sessions
	RateLimited  atomic.Uint64 // closed unread: over the per-source budget
	DestErrors   atomic.Uint64 // original destination could not be read
	AcceptErrors atomic.Uint64 // accept failures other than "try again"
	FDExhausted  atomic.Uint64 // accept failed for lack of file descriptors
	Loops        atomic.Uint64 // event loop iterations: the watchdog's proof of life

	// UDP (SetUDP).
	Datagrams      atomic.Uint64 // datagrams received
	UDPFlows       atomic.Uint64 // UDP flows started (each is recorded when it ends)
	ActiveUDP      atomic.Int64  // UDP flows open now
	UDPOverLimit   atomic.Uint64 // datagrams dropped: the flow table was full (session.max_udp_flows)
	UDPKernelDrops atomic.Uint64 // datagrams the kernel dropped for a full receive buffer (SO_RXQ_OVFL)
	UDPErrors      atomic.Uint64 // receive failures other than "try again"

	// Restarts (HandOverOnStop, Adopt).
	HandedOver   atomic.Uint64 // open sessions handed to the next process at stop
	Restored     atomic.Uint64 // open sessions taken over from the previous process at start
	HandOverTime atomic.Int64  // how long the hand-over at stop took, in nanoseconds
}

// Sensor owns the event loop over one listening socket.
type Sensor struct {
	cfg   Config
	ln    int // listening socket, non-blocking; owned by the caller
	udpFD int // UDP socket or -1 (SetUDP); owned by the caller
	emit  func(*record.Record)
	admit Admitter
	warn  func(msg string)
	Stats Stats

	handOff    atomic.Pointer[HandOff]
	adoptState *handover.State
	adoptFDs   []int
}

// New returns a sensor reading connections from the listening socket fd. emit receives every
// record and must not block. warn, if not nil, receives operational warnings (rate-limited by
// the sensor). admit may be nil.
func New(cfg Config, listenFD int, emit func(*record.Record), admit Admitter, warn func(string)) *Sensor {
	if warn == nil {
		warn = func(string) {}
	}
	if cfg.MaxUDPFlows <= 0 {
		cfg.MaxUDPFlows = 1
	}
	return &Sensor{cfg: cfg, ln: listenFD, udpFD: -1, emit: emit, admit: admit, warn: warn}
}
