// Package tls reads a TLS ClientHello from captured bytes: SNI, ALPN, the highest version offered and FoxIO's JA4.
package tls

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sync"
)

// Bounds on what a Hello holds: a peer decides how much it sends, spip decides how much it keeps.
const (
	MaxSNI       = 255 // bytes of server name kept (a DNS name is at most 253)
	MaxALPN      = 16  // ALPN values kept
	MaxALPNValue = 64  // bytes kept of each ALPN value (registered ones are at most 17)
	maxRecord    = 1<<14 + 2048
)

// Hello is what a ClientHello says about the client. Strings are raw bytes as sent (bounded);
// encoders escape them.
type Hello struct {
	SNI          string
	SNICut       bool // the server name was longer than MaxSNI
	ALPN         []string
	ALPNCut      bool   // more values than MaxALPN, or a value longer than MaxALPNValue
	Version      uint16 // the highest version offered, GREASE aside; 0 when none is known
	JA4          string // empty unless the whole ClientHello was read and well formed
	Complete     bool   // the whole ClientHello was in the bytes and parsed cleanly
	HandshakeRec bool   // the bytes begin with a TLS handshake record header
}

// IsRecord reports whether p begins with a TLS handshake record header: content type 22, a
// version 3.x (x ≤ 4) and a length a TLS record may have.
func IsRecord(p []byte) bool {
	if len(p) < 5 || p[0] != 0x16 || p[1] != 3 || p[2] > 4 {
		return false
	}
	n := int(p[3])<<8 | int(p[4])
	return n > 0 && n <= maxRecord
}

// Parse reads the ClientHello at the start of p, which may span several TLS records. When p is
// not a TLS handshake, HandshakeRec is false. When the ClientHello is cut short or malformed,
// Complete is false and the Hello holds nothing else: a JA4 is never computed from a part.
func Parse(p []byte) Hello {
	var h Hello
	if !IsRecord(p) {
		return h
	}
	h.HandshakeRec = true
	msg, ok := handshake(p)
	if !ok {
		return h
	}
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	c := clientHello{ciphers: sc.ciphers[:0], exts: sc.exts[:0], sigAlgs: sc.sigAlgs[:0], versions: sc.versions[:0], alpn: sc.alpn[:0]}
	if !c.parse(msg) {
		return h
	}
	c.fill(&h)
	return h
}

// handshake joins the fragments of the first handshake message from consecutive handshake
// records and returns its body when it is a whole ClientHello.
func handshake(p []byte) ([]byte, bool) {
	var msg []byte
	need := -1
	for len(p) > 0 {
		if !IsRecord(p) {
			return nil, false
		}
		n := int(p[3])<<8 | int(p[4])
		if len(p) < 5+n {
			return nil, false // cut short
		}
		frag := p[5 : 5+n]
		p = p[5+n:]
		if need < 0 && len(msg) == 0 && len(frag) >= 4 {
			// The common case, one record holding the whole message: no copy.
			if frag[0] != 1 {
				return nil, false
			}
			need = int(frag[1])<<16 | int(frag[2])<<8 | int(frag[3])
			if len(frag)-4 >= need {
				return frag[4 : 4+need], true
			}
		}
		msg = append(msg, frag...)
		if need < 0 && len(msg) >= 4 {
			if msg[0] != 1 {
				return nil, false
			}
			need = int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
		}
		if need >= 0 && len(msg)-4 >= need {
			return msg[4 : 4+need], true
		}
	}
	return nil, false
}

// scratch is the room a parse needs for what real clients send; a hello with longer lists
// grows past it on the heap. Pooled: the sensor parses one hello per record.
type scratch struct {
	ciphers  [128]uint16
	exts     [64]uint16
	sigAlgs  [64]uint16
	versions [16]uint16
	alpn     [8][]byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// release returns sc to the pool without keeping any peer bytes reachable from it.
func (sc *scratch) release() {
	sc.alpn = [8][]byte{}
	scratchPool.Put(sc)
}

// clientHello is the parsed message, GREASE values removed.
type clientHello struct {
	legacyVersion uint16
	ciphers       []uint16
	exts          []uint16
	sigAlgs       []uint16
	versions      []uint16
	hasVersions   bool
	hasSNI        bool
	hasSigAlgs    bool
	hasALPN       bool
	sni           []byte
	alpn          [][]byte
}

// IsGREASE reports whether v is one of RFC 8701's reserved values (0x0a0a, 0x1a1a, … 0xfafa).
func IsGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// parse reads the ClientHello body b into c, whose slices come with room to append to.
func (c *clientHello) parse(b []byte) bool {
	r := reader(b)
	var sid, cs, comp reader
	if !r.u16(&c.legacyVersion) || !r.skip(32) || !r.vec8(&sid) || !r.vec16(&cs) || !r.vec8(&comp) {
		return false
	}
	if len(cs)%2 != 0 || len(sid) > 32 || len(comp) == 0 {
		return false
	}
	for len(cs) > 0 {
		var v uint16
		cs.u16(&v)
		if !IsGREASE(v) {
			c.ciphers = append(c.ciphers, v)
		}
	}
	if len(r) == 0 {
		return true // no extensions: an SSL 3.0 / early TLS hello
	}
	var exts reader
	if !r.vec16(&exts) || len(r) != 0 {
		return false
	}
	for len(exts) > 0 {
		var typ uint16
		var data reader
		if !exts.u16(&typ) || !exts.vec16(&data) {
			return false
		}
		if IsGREASE(typ) {
			continue
		}
		c.exts = append(c.exts, typ)
		var ok bool
		switch typ {
		case 0x0000:
			ok = c.parseSNI(data)
		case 0x0010:
			ok = c.parseALPN(data)
		case 0x000d:
			ok = c.parseSigAlgs(data)
		case 0x002b:
			ok = c.parseVersions(data)
		default:
			ok = true
		}
		if !ok {
			return false
		}
	}
	return true
}

// parseSNI keeps the first host_name of the first server_name extension. The extension's mere
// presence is what JA4 counts ("d"), so an empty one is well formed here.
func (c *clientHello) parseSNI(d reader) bool {
	if c.hasSNI {
		return true // a duplicate: the first one counts
	}
	c.hasSNI = true
	if len(d) == 0 {
		return true
	}
	var list reader
	if !d.vec16(&list) || len(d) != 0 {
		return false
	}
	for len(list) > 0 {
		var typ uint8
		var name reader
		if !list.u8(&typ) || !list.vec16(&name) {
			return false
		}
		if typ == 0 && c.sni == nil {
			c.sni = name
		}
	}
	return true
}

func (c *clientHello) parseALPN(d reader) bool {
	if c.hasALPN {
		return true
	}
	var list reader
	if !d.vec16(&list) || len(d) != 0 {
		return false
	}
	c.hasALPN = true
	for len(list) > 0 {
		var v reader
		if !list.vec8(&v) {
			return false
		}
		c.alpn = append(c.alpn, v)
	}
	return true
}

func (c *clientHello) parseSigAlgs(d reader) bool {
	if c.hasSigAlgs {
		return true
	}
	var list reader
	if !d.vec16(&list) || len(d) != 0 || len(list)%2 != 0 {
		return false
	}
	c.hasSigAlgs = true
	for len(list) > 0 {
		var v uint16
		list.u16(&v)
		if !IsGREASE(v) {
			c.sigAlgs = append(c.sigAlgs, v)
		}
	}
	return true
}

func (c *clientHello) parseVersions(d reader) bool {
	if c.hasVersions {
		return true
	}
	var list reader
	if !d.vec8(&list) || len(d) != 0 || len(list)%2 != 0 {
		return false
	}
	c.hasVersions = true
	for len(list) > 0 {
		var v uint16
		list.u16(&v)
		if !IsGREASE(v) {
			c.versions = append(c.versions, v)
		}
	}
	return true
}

// version is the highest version offered: supported_versions when present, else the hello's
// own (the record layer's version is ignored, as JA4 says).
func (c *clientHello) version() uint16 {
	if !c.hasVersions {
		return c.legacyVersion
	}
	var best uint16
	for _, v := range c.versions {
		if versionRank(v) > versionRank(best) {
			best = v
		}
	}
	return best
}

// versionRank orders versions by age; DTLS counts down, and unknown values rank below all.
func versionRank(v uint16) int {
	switch v {
	case 0x0002:
		return 1
	case 0x0300, 0x0301, 0x0302, 0x0303, 0x0304:
		return 2 + int(v-0x0300)
	case 0xfeff:
		return 3 // DTLS 1.0 ~ TLS 1.1
	case 0xfefd:
		return 5 // DTLS 1.2
	case 0xfefc:
		return 6 // DTLS 1.3
	}
	return 0
}

func (c *clientHello) fill(h *Hello) {
	h.Complete = true
	h.Version = c.version()
	if len(c.sni) > 0 {
		s := c.sni
		if len(s) > MaxSNI {
			s, h.SNICut = s[:MaxSNI], true
		}
		h.SNI = string(s)
	}
	if len(c.alpn) > 0 {
		n := min(len(c.alpn), MaxALPN)
		h.ALPNCut = len(c.alpn) > MaxALPN
		h.ALPN = make([]string, n)
		for i, v := range c.alpn[:n] {
			if len(v) > MaxALPNValue {
				v, h.ALPNCut = v[:MaxALPNValue], true
			}
			h.ALPN[i] = string(v)
		}
	}
	h.JA4 = c.ja4()
}

// VersionName is a version as tls_version shows it: "1.3", "ssl3.0", "dtls1.2", or the hex value.
func VersionName(v uint16) string {
	switch v {
	case 0x0002:
		return "ssl2.0"
	case 0x0300:
		return "ssl3.0"
	case 0x0301:
		return "1.0"
	case 0x0302:
		return "1.1"
	case 0x0303:
		return "1.2"
	case 0x0304:
		return "1.3"
	case 0xfeff:
		return "dtls1.0"
	case 0xfefd:
		return "dtls1.2"
	case 0xfefc:
		return "dtls1.3"
	case 0:
		return ""
	}
	return "0x" + hex.EncodeToString([]byte{byte(v >> 8), byte(v)})
}

// ja4Version is JA4's two-character version.
func ja4Version(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

// ja4 builds the fingerprint as FoxIO's technical_details/JA4.md (BSD-3-Clause) defines it.
func (c *clientHello) ja4() string {
	var buf [36]byte
	b := append(buf[:0], 't')
	b = append(b, ja4Version(c.version())...)
	if c.hasSNI {
		b = append(b, 'd')
	} else {
		b = append(b, 'i')
	}
	b = appendCount(b, len(c.ciphers))
	b = appendCount(b, len(c.exts))
	var first []byte
	if len(c.alpn) > 0 {
		first = c.alpn[0]
	}
	b = append(b, ALPNChars(first)...)
	b = append(b, '_')
	var sorted [64]uint16
	b = appendHash(b, sortedHex(sorted[:0], c.ciphers, false), nil)
	b = append(b, '_')
	b = appendHash(b, sortedHex(sorted[:0], c.exts, true), c.sigAlgs)
	return string(b)
}

func appendCount(b []byte, n int) []byte {
	n = min(n, 99)
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// ALPNChars is JA4's ALPN part for the first ALPN value v, following the text of JA4.md: "00"
// when there is none or it is empty; its first and last character when both are ASCII letters
// or digits (a one-character value gives that character twice); otherwise the first and last
// character of v's hex form. (FoxIO's python implementation prints "99" for a first byte
// above 127 instead; spip follows the specification's text and examples.)
func ALPNChars(v []byte) string {
	if len(v) == 0 {
		return "00"
	}
	first, last := v[0], v[len(v)-1]
	if isAlnum(first) && isAlnum(last) {
		return string([]byte{first, last})
	}
	const digits = "0123456789abcdef"
	return string([]byte{digits[first>>4], digits[last&0xf]})
}

// sortedHex appends the values to out and sorts them; without SNI and ALPN when dropNames is set.
func sortedHex(out, vs []uint16, dropNames bool) []uint16 {
	for _, v := range vs {
		if dropNames && (v == 0x0000 || v == 0x0010) {
			continue
		}
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// appendHash appends the first 12 hex digits of sha256("list" or "list_tail"), or twelve
// zeros when list is empty.
func appendHash(b []byte, list, tail []uint16) []byte {
	if len(list) == 0 {
		return append(b, "000000000000"...)
	}
	var stack [1024]byte
	s := stack[:0]
	s = appendHexList(s, list)
	if len(tail) > 0 {
		s = append(s, '_')
		s = appendHexList(s, tail)
	}
	sum := sha256.Sum256(s)
	var out [64]byte
	hex.Encode(out[:], sum[:])
	return append(b, out[:12]...)
}

func appendHexList(b []byte, vs []uint16) []byte {
	const digits = "0123456789abcdef"
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, digits[v>>12], digits[v>>8&0xf], digits[v>>4&0xf], digits[v&0xf])
	}
	return b
}
