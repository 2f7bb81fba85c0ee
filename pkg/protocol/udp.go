package protocol

import (
	"bytes"
	"encoding/binary"

	"spip/pkg/protocol/dns"
	"spip/pkg/protocol/ntp"
	"spip/pkg/protocol/quic"
	"spip/pkg/protocol/ssdp"
	"spip/pkg/protocol/tls"
)

// The UDP detectors look at a flow's first datagram. The protocols are the ones probed most and
// the ones reflection attacks are built from; each match needs a whole, well-formed request.
func init() {
	detectors[UDP] = []Detector{
		{Name: "dns", Match: isDNS, Fill: fillDNS},
		{Name: "ssdp", Match: ssdp.Match, Fill: fillSSDP},
		{Name: "sip", Match: isSIP},
		{Name: "memcached", Match: isMemcachedUDP},
		{Name: "snmp", Match: isSNMP},
		{Name: "quic", Match: isQUICInitial, Fill: fillQUIC},
		{Name: "ntp", Match: isNTP, Fill: fillNTP},
	}
}

func isDNS(p []byte) bool { _, ok := dns.Parse(p); return ok }

func fillDNS(p []byte, f *Facts) {
	if q, ok := dns.Parse(p); ok {
		f.DNSQueryName, f.DNSQueryType = q.Name, q.Type
	}
}

func fillSSDP(p []byte, f *Facts) {
	if s, ok := ssdp.Parse(p); ok {
		f.SSDPTarget = s.Target
		if s.Cut {
			f.Cut |= CutSSDPTarget
		}
	}
}

func isNTP(p []byte) bool { _, ok := ntp.Parse(p); return ok }

func fillNTP(p []byte, f *Facts) {
	if pk, ok := ntp.Parse(p); ok {
		f.NTPVersion, f.NTPMode = pk.Version, pk.Mode
	}
}

var memcachedCommands = [][]byte{
	[]byte("stats"), []byte("get "), []byte("gets "), []byte("version"), []byte("set "),
	[]byte("add "), []byte("delete "), []byte("flush_all"), []byte("incr "), []byte("decr "),
}

// isMemcachedUDP: memcached's UDP frame header (request id, sequence number, datagram count,
// reserved zero) and a text command, the "stats" of a reflection probe most of all.
func isMemcachedUDP(p []byte) bool {
	if len(p) < 8+3 || p[6] != 0 || p[7] != 0 || binary.BigEndian.Uint16(p[4:6]) == 0 {
		return false
	}
	for _, c := range memcachedCommands {
		if bytes.HasPrefix(p[8:], c) {
			return true
		}
	}
	return false
}

// isSNMP: a BER SEQUENCE holding version 1, 2c or 3 (INTEGER 0, 1 or 3) and, for 1 and 2c, the
// community OCTET STRING, or for 3 the header SEQUENCE.
func isSNMP(p []byte) bool {
	if len(p) < 7 || p[0] != 0x30 {
		return false
	}
	i := 2
	switch l := p[1]; {
	case l < 0x80:
	case l == 0x81:
		i = 3
	case l == 0x82:
		i = 4
	default:
		return false
	}
	if len(p) < i+5 || p[i] != 0x02 || p[i+1] != 0x01 {
		return false
	}
	switch p[i+2] {
	case 0, 1:
		return p[i+3] == 0x04
	case 3:
		return p[i+3] == 0x30
	}
	return false
}

// isQUICInitial: a long-header QUIC packet (form and fixed bits set) of a known version (1, 2,
// the drafts, or a greased version-negotiation probe) with connection ids of legal length, in a
// datagram padded to 1200 bytes as a client's first flight must be (RFC 9000 §14.1).
func isQUICInitial(p []byte) bool {
	if len(p) < 1200 || p[0]&0xc0 != 0xc0 {
		return false
	}
	v := binary.BigEndian.Uint32(p[1:5])
	known := v == 1 || v == 0x6b3343cf || v&0xffffff00 == 0xff000000 || v&0x0f0f0f0f == 0x0a0a0a0a
	if !known {
		return false
	}
	dcid := int(p[5])
	if dcid > 20 || 6+dcid >= len(p) {
		return false
	}
	scid := int(p[6+dcid])
	return scid <= 20 && 7+dcid+scid <= len(p)
}

// fillQUIC decrypts the client's Initial packets (the first datagram, and the next ones when the
// ClientHello spans them) and takes the same facts as from a TLS ClientHello, JA4 with QUIC's "q".
func fillQUIC(p []byte, f *Facts) { IdentifyQUIC([][]byte{p}, f) }

// IdentifyQUIC fills f's TLS facts from a QUIC flow's first datagrams, when they hold a whole
// ClientHello. f.Protocol must already say quic.
func IdentifyQUIC(datagrams [][]byte, f *Facts) {
	h, ok := quic.Parse(datagrams...)
	if !ok || !h.TLS.Complete {
		return
	}
	f.TLSSNI, f.TLSALPN, f.JA4 = h.TLS.SNI, h.TLS.ALPN, h.JA4
	f.TLSVersion = tls.VersionName(h.TLS.Version)
	if h.TLS.SNICut {
		f.Cut |= CutTLSSNI
	}
	if h.TLS.ALPNCut {
		f.Cut |= CutTLSALPN
	}
}
