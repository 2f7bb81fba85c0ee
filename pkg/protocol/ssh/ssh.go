// Package ssh reads an SSH client's identification string and, when its KEXINIT follows in the captured bytes, its HASSH.
package ssh

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
)

// MaxBanner is the longest banner kept: RFC 4253 allows 255 bytes with CR LF.
const MaxBanner = 253

// maxPacket bounds the KEXINIT packet (RFC 4253 §6.1 asks implementations to take 35000 bytes).
const maxPacket = 35000

const msgKexInit = 20

// Client is what an SSH client's first bytes say.
type Client struct {
	Banner    string // the identification string without CR LF, bounded
	BannerCut bool   // longer than MaxBanner, or its end was not in the bytes
	HASSH     string // MD5 of kex;enc;mac;cmp from the client's KEXINIT, when it was all there
}

// Match reports whether p begins like an SSH identification string.
func Match(p []byte) bool { return bytes.HasPrefix(p, []byte("SSH-")) }

// Parse reads the banner at the start of p and the KEXINIT after it, if there is one.
func Parse(p []byte) (Client, bool) {
	var c Client
	if !Match(p) {
		return c, false
	}
	i := bytes.IndexByte(p, '\n')
	line, rest := p, []byte(nil)
	if i >= 0 {
		line, rest = p[:i], p[i+1:]
		line = bytes.TrimSuffix(line, []byte("\r"))
	}
	c.BannerCut = i < 0
	if len(line) > MaxBanner {
		line, c.BannerCut = line[:MaxBanner], true
	}
	c.Banner = string(line)
	if i >= 0 {
		c.HASSH = hassh(rest)
	}
	return c, true
}

// hassh computes salesforce/hassh's client fingerprint from the binary packet at the start of
// p: MD5 of the client-to-server kex, encryption, MAC and compression name-lists joined by ";".
// Any inconsistency, or a packet not all there, gives "".
func hassh(p []byte) string {
	if len(p) < 6 {
		return ""
	}
	n := binary.BigEndian.Uint32(p)
	pad := int(p[4])
	if n > maxPacket || int(n) > len(p)-4 || int(n) < pad+2 {
		return ""
	}
	payload := p[5 : 4+int(n)-pad]
	if len(payload) < 17 || payload[0] != msgKexInit {
		return ""
	}
	r := payload[17:]   // the message number and the 16-byte cookie
	var lists [8][]byte // kex, hostkey, enc c2s, enc s2c, mac c2s, mac s2c, cmp c2s, cmp s2c
	for k := range lists {
		if len(r) < 4 {
			return ""
		}
		l := binary.BigEndian.Uint32(r)
		if uint64(l) > uint64(len(r)-4) {
			return ""
		}
		lists[k], r = r[4:4+l], r[4+l:]
	}
	h := md5.New()
	for k, i := range []int{0, 2, 4, 6} {
		if k > 0 {
			h.Write([]byte{';'})
		}
		h.Write(lists[i])
	}
	return hex.EncodeToString(h.Sum(nil))
}
