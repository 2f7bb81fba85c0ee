// Package protocol names what a peer's first bytes are and fills in the facts a record carries about them.
package protocol

import (
	"bytes"

	"spip/pkg/protocol/http"
	"spip/pkg/protocol/ssh"
	"spip/pkg/protocol/tls"
)

// Transport is the IP protocol the bytes came over: each has its own detectors.
type Transport uint8

// Transports, by IP protocol number.
const (
	TCP Transport = 6
	UDP Transport = 17
)

// Cut is the set of Facts values that were cut to their bound (or whose end was not in the
// captured bytes); a record lists them by field name.
type Cut uint16

// Cut bits, one per bounded value.
const (
	CutTLSSNI Cut = 1 << iota
	CutTLSALPN
	CutHTTPPath
	CutHTTPHost
	CutHTTPUserAgent
	CutSSHBanner
	CutSSDPTarget
)

// Facts is what the first bytes say. The zero value means nothing is known; an empty string or
// nil slice means the fact does not apply and the record leaves the field out. String values
// are bytes as the peer sent them, bounded by each parser: encoders escape them.
type Facts struct {
	Protocol string // "tls", "http", "ssh", …; "" when unknown

	TLSSNI     string
	TLSALPN    []string
	TLSVersion string
	JA4        string

	HTTPMethod    string
	HTTPPath      string
	HTTPVersion   string
	HTTPHost      string
	HTTPUserAgent string

	SSHBanner string
	HASSH     string

	// UDP (udp.go).
	DNSQueryName string
	DNSQueryType string
	NTPVersion   uint8 // 0: not NTP
	NTPMode      uint8
	SSDPTarget   string

	Cut Cut
}

// Detector recognises one protocol from the first bytes. Match must be cheap and claim only
// bytes that can be nothing else; Fill, if set, adds the protocol's facts.
type Detector struct {
	Name  string
	Match func(p []byte) bool
	Fill  func(p []byte, f *Facts)
}

// detectors are tried in order per transport; the first match names the bytes. Order matters
// where signatures overlap (SIP's OPTIONS before HTTP's).
var detectors = map[Transport][]Detector{
	TCP: {
		{Name: "tls", Match: tls.IsRecord, Fill: fillTLS},
		{Name: "ssh", Match: ssh.Match, Fill: fillSSH},
		{Name: "sip", Match: isSIP},
		{Name: "http", Match: http.Match, Fill: fillHTTP},
		{Name: "rdp", Match: isRDP},
		{Name: "tpkt", Match: isTPKT},
		{Name: "smb", Match: isSMB},
		{Name: "redis", Match: isRESP},
		{Name: "mqtt", Match: isMQTT},
		{Name: "telnet", Match: isTelnet},
	},
}

// Identify fills f from the first bytes p that came over t. It never reads past p and keeps
// nothing of p: every string it stores is a copy.
func Identify(t Transport, p []byte, f *Facts) {
	if len(p) == 0 {
		return
	}
	for _, d := range detectors[t] {
		if d.Match(p) {
			f.Protocol = d.Name
			if d.Fill != nil {
				d.Fill(p, f)
			}
			return
		}
	}
}

func fillTLS(p []byte, f *Facts) {
	h := tls.Parse(p)
	if !h.Complete {
		return // protocol tls from the record header, and nothing a part could get wrong
	}
	f.TLSSNI = h.SNI
	f.TLSALPN = h.ALPN
	f.TLSVersion = tls.VersionName(h.Version)
	f.JA4 = h.JA4
	if h.SNICut {
		f.Cut |= CutTLSSNI
	}
	if h.ALPNCut {
		f.Cut |= CutTLSALPN
	}
}

func fillHTTP(p []byte, f *Facts) {
	r, ok := http.Parse(p)
	if !ok {
		return
	}
	f.HTTPMethod, f.HTTPPath, f.HTTPVersion = r.Method, r.Path, r.Version
	f.HTTPHost, f.HTTPUserAgent = r.Host, r.UserAgent
	if r.Cut&http.CutPath != 0 {
		f.Cut |= CutHTTPPath
	}
	if r.Cut&http.CutHost != 0 {
		f.Cut |= CutHTTPHost
	}
	if r.Cut&http.CutUserAgent != 0 {
		f.Cut |= CutHTTPUserAgent
	}
}

func fillSSH(p []byte, f *Facts) {
	c, ok := ssh.Parse(p)
	if !ok {
		return
	}
	f.SSHBanner, f.HASSH = c.Banner, c.HASSH
	if c.BannerCut {
		f.Cut |= CutSSHBanner
	}
}

var sipMethods = []string{
	"INVITE", "REGISTER", "OPTIONS", "ACK", "BYE", "CANCEL", "SUBSCRIBE", "NOTIFY", "MESSAGE",
	"INFO", "PRACK", "UPDATE", "REFER", "PUBLISH",
}

// isSIP: a SIP method, a space and a sip: or sips: URI (RFC 3261 §7.1).
func isSIP(p []byte) bool {
	sp := bytes.IndexByte(p[:min(len(p), 10)], ' ')
	if sp <= 0 {
		return false
	}
	for _, m := range sipMethods {
		if string(p[:sp]) == m {
			rest := p[sp+1:]
			return hasPrefixFold(rest, "sip:") || hasPrefixFold(rest, "sips:")
		}
	}
	return false
}

func hasPrefixFold(p []byte, s string) bool {
	return len(p) >= len(s) && bytes.EqualFold(p[:len(s)], []byte(s))
}

// isTPKT: an RFC 1006 TPKT header (version 3, its length covering at least an X.224 header)
// holding an X.224 Connection Request. RDP, ISO-TSAP and S7 all begin so.
func isTPKT(p []byte) bool {
	if len(p) < 7 || p[0] != 3 || p[1] != 0 {
		return false
	}
	n := int(p[2])<<8 | int(p[3])
	li := int(p[4])
	return n >= 11 && li >= 6 && li+5 <= n && p[5]&0xf0 == 0xe0
}

// isRDP: a TPKT Connection Request whose variable part is RDP's: a routing cookie
// ("Cookie: mstshash=…"), a load-balancer token, or an RDP negotiation request (type 1), or nothing.
func isRDP(p []byte) bool {
	if !isTPKT(p) || len(p) < 11 {
		return false
	}
	v := p[11:]
	li := int(p[4])
	return li == 6 || bytes.HasPrefix(v, []byte("Cookie: ")) || bytes.HasPrefix(v, []byte("tsv://")) ||
		len(v) >= 4 && v[0] == 1 && v[2] == 8 && v[3] == 0
}

// isSMB: a NetBIOS session message (type 0) holding an SMB1 or SMB2/3 header.
func isSMB(p []byte) bool {
	return len(p) >= 8 && p[0] == 0 && p[1]&0xfe == 0 && (p[4] == 0xff || p[4] == 0xfe) &&
		string(p[5:8]) == "SMB"
}

// isRESP: a Redis RESP array of bulk strings ("*N\r\n$M\r\n"), what every Redis client sends.
func isRESP(p []byte) bool {
	if len(p) < 6 || p[0] != '*' {
		return false
	}
	i := 1
	for i < len(p) && i < 8 && p[i] >= '0' && p[i] <= '9' {
		i++
	}
	return i > 1 && bytes.HasPrefix(p[i:], []byte("\r\n$"))
}

// isMQTT: an MQTT CONNECT packet naming its protocol "MQTT" (3.1.1, 5) or "MQIsdp" (3.1).
func isMQTT(p []byte) bool {
	if len(p) < 2 || p[0] != 0x10 {
		return false
	}
	i := 1
	for ; i < len(p) && i < 5 && p[i]&0x80 != 0; i++ {
	}
	i++ // the last byte of the remaining length
	if i > len(p) {
		return false
	}
	rest := p[i:]
	return bytes.HasPrefix(rest, []byte("\x00\x04MQTT")) || bytes.HasPrefix(rest, []byte("\x00\x06MQIsdp"))
}

// isTelnet: telnet option negotiation (IAC, then WILL, WONT, DO or DONT) first.
func isTelnet(p []byte) bool {
	return len(p) >= 3 && p[0] == 0xff && p[1] >= 0xfb && p[1] <= 0xfe
}
