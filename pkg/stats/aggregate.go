package stats

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strconv"
	"time"
)

// Options choose the records and bound the memory of a report.
type Options struct {
	Since, Until time.Time // zero: open; records from Since up to, not including, Until (whole seconds)
	Sensor       string    // only this sensor's records
	Port         int       // only connections to this destination port (0: all)
	Top          int       // rows per table
	Counters     int       // Space-Saving counters per table: exact up to this many distinct values
	Distinct     int       // distinct values counted exactly before HyperLogLog takes over
	Now          time.Time // the end of a window left open after --since
}

// Defaults for Options.
const (
	DefaultTop      = 5
	DefaultCounters = 10000
	DefaultDistinct = 100000
	sampleBytes     = 48
)

// Aggregator folds records into a report in bounded memory: Counters entries per table,
// Distinct hashes per distinct count, a fixed-size timeline.
type Aggregator struct {
	opt Options

	conns, silent uint64
	first, last   int64
	transports    *TopK
	sensors       *TopK
	sources       *Distinct
	nets24        *Distinct
	nets64        *Distinct
	ports         [2][65536]uint64 // tcp, udp: exact always
	otherPorts    *TopK
	srcTop        *TopK
	netTop        *TopK
	protocols     *TopK
	snis          *TopK
	ja4s          *TopK
	paths         *TopK
	uas           *TopK
	banners       *TopK
	payloads      *TopK
	tl            timeline

	dropped     *TopK
	ratelimited uint64
	udpDropped  uint64
	overload    uint64
	warnings    *TopK
	starts      uint64
	unreadable  uint64

	scratch []byte
	ch      *chQuery // set when the counts came from ClickHouse
}

// NewAggregator returns an empty aggregator.
func NewAggregator(opt Options) *Aggregator {
	if opt.Top <= 0 {
		opt.Top = DefaultTop
	}
	if opt.Counters <= 0 {
		opt.Counters = DefaultCounters
	}
	if opt.Distinct <= 0 {
		opt.Distinct = DefaultDistinct
	}
	c := opt.Counters
	return &Aggregator{
		opt:        opt,
		transports: NewTopK(64), sensors: NewTopK(c),
		sources: NewDistinct(opt.Distinct), nets24: NewDistinct(opt.Distinct), nets64: NewDistinct(opt.Distinct),
		otherPorts: NewTopK(c), srcTop: NewTopK(c), netTop: NewTopK(c),
		protocols: NewTopK(c), snis: NewTopK(c), ja4s: NewTopK(c), paths: NewTopK(c), uas: NewTopK(c),
		banners: NewTopK(c), payloads: NewTopK(c),
		dropped: NewTopK(64), warnings: NewTopK(c),
	}
}

// Unreadable counts n lines or entries that could not be read.
func (a *Aggregator) Unreadable(n uint64) { a.unreadable += n }

// Add folds one record in. It keeps nothing that points into r.
func (a *Aggregator) Add(r *raw) {
	t, ok := recordTime(r)
	if !ok {
		a.unreadable++
		return
	}
	if !a.opt.Since.IsZero() && t < a.opt.Since.Unix() || !a.opt.Until.IsZero() && t >= a.opt.Until.Unix() {
		return
	}
	if a.opt.Sensor != "" && string(r[sSensor]) != a.opt.Sensor {
		return
	}
	switch string(r[sEvent]) {
	case "connection", "": // the original spip's records have no event field
		a.connection(r, t)
	case "summary":
		if n, ok := parseUint(r[sDropped]); ok && n > 0 {
			sink := r[sSink]
			if len(sink) == 0 {
				sink = []byte("?")
			}
			a.dropped.Add(sink, n)
		}
		if n, ok := parseUint(r[sRateLimited]); ok {
			a.ratelimited += n
		}
		if n, ok := parseUint(r[sUDPDropped]); ok {
			a.udpDropped += n
		}
	case "warning":
		a.warnings.Add(r[sMessage], 1)
	case "started":
		a.starts++
	}
}

func recordTime(r *raw) (int64, bool) {
	if v := r[sTimestamp]; v != nil {
		n, err := strconv.ParseInt(string(v), 10, 64)
		return n, err == nil
	}
	if v := r[sRealtime]; v != nil {
		n, err := strconv.ParseInt(string(v), 10, 64)
		return n / 1e6, err == nil
	}
	return 0, false
}

func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

func (a *Aggregator) connection(r *raw, t int64) {
	port, okPort := parseUint(r[sDestinationPort])
	if a.opt.Port != 0 && (!okPort || port != uint64(a.opt.Port)) {
		return
	}
	src, ok := parseAddr(r[sSourceIP])
	if !ok {
		a.unreadable++
		return
	}
	a.conns++
	if a.conns == 1 || t < a.first {
		a.first = t
	}
	if t > a.last {
		a.last = t
	}
	a.tl.add(t, 1)

	transport := r[sTransport]
	if len(transport) == 0 {
		transport = []byte("tcp")
	}
	a.transports.Add(transport, 1)
	if s := r[sSensor]; s != nil {
		a.sensors.Add(s, 1)
	}

	// Sources: the address (4 or 16 bytes as the key), and its /24 or /64.
	src = src.Unmap()
	b16 := src.As16()
	a.sources.Add(hash2(binary.BigEndian.Uint64(b16[:8]), binary.BigEndian.Uint64(b16[8:])))
	if src.Is4() {
		b4 := src.As4()
		a.srcTop.Add(b4[:], 1)
		a.netTop.Add(b4[:3], 1)
		a.nets24.Add(mix64(uint64(b4[0])<<16 | uint64(b4[1])<<8 | uint64(b4[2])))
	} else {
		a.srcTop.Add(b16[:], 1)
		a.netTop.Add(b16[:8], 1)
		a.nets64.Add(mix64(binary.BigEndian.Uint64(b16[:8])))
	}

	switch {
	case okPort && port < 65536 && bytes.Equal(transport, []byte("tcp")):
		a.ports[0][port]++
	case okPort && port < 65536 && bytes.Equal(transport, []byte("udp")):
		a.ports[1][port]++
	default:
		k := strconv.AppendUint(a.scratch[:0], port, 10)
		k = append(k, '/')
		k = append(k, transport...)
		a.otherPorts.Add(k, 1)
		a.scratch = k
	}

	if bytes.Equal(r[sCloseReason], []byte("overload")) {
		a.overload++
	}
	payload := r[sPayload]
	if h := r[sPayloadHex]; h != nil {
		// The hex form is exact where the JSON text is lossy: decode it.
		n := len(a.scratch)
		buf := append(a.scratch, make([]byte, len(h)/2)...)
		if m, err := hex.Decode(buf[n:], h); err == nil {
			payload = buf[n : n+m]
		}
		a.scratch = buf[:0]
	}
	if len(payload) == 0 {
		a.silent++
	} else {
		sum := sha256.Sum256(payload)
		if i, fresh := a.payloads.Add(sum[:8], 1); fresh {
			a.payloads.SetSample(i, payload, sampleBytes, uint64(len(payload)))
		}
	}
	for _, f := range [...]struct {
		s slot
		t *TopK
	}{{sProtocol, a.protocols}, {sTLSSNI, a.snis}, {sJA4, a.ja4s}, {sHTTPPath, a.paths}, {sHTTPUserAgent, a.uas}, {sSSHBanner, a.banners}} {
		if v := r[f.s]; len(v) > 0 {
			f.t.Add(v, 1)
		}
	}
}

// parseAddr reads an IP address; IPv4 without allocating.
func parseAddr(b []byte) (netip.Addr, bool) {
	var v4 [4]byte
	part, n, digits := 0, 0, 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n*10 + int(c-'0')
			digits++
			if n > 255 || digits > 3 {
				goto slow
			}
		case c == '.' && digits > 0 && part < 3:
			v4[part] = byte(n)
			part, n, digits = part+1, 0, 0
		default:
			goto slow
		}
	}
	if part == 3 && digits > 0 {
		v4[3] = byte(n)
		return netip.AddrFrom4(v4), true
	}
slow:
	a, err := netip.ParseAddr(string(b))
	return a, err == nil && a.Zone() == ""
}
