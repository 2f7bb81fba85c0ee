// Package quic reads a QUIC client's Initial packets: it removes their protection with the keys
// every observer can derive (RFC 9001 §5.2, RFC 9369 §3.3) and returns the TLS ClientHello they
// carry, for the same facts as a TLS connection's (SNI, ALPN, JA4 with the "q" prefix).
package quic

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"

	"spip/pkg/protocol/tls"
)

// Versions whose Initial protection this package knows.
const (
	V1 uint32 = 1          // RFC 9000
	V2 uint32 = 0x6b3343cf // RFC 9369
)

// maxCrypto bounds the CRYPTO stream reassembled from a client's Initials: a ClientHello with a
// post-quantum key share is about 1.7 KB; more than this is not a real first flight.
const maxCrypto = 16 << 10

var (
	saltV1 = []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	saltV2 = []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
)

// Hello is what the first datagrams of a QUIC flow say.
type Hello struct {
	Version uint32
	TLS     tls.Hello // Complete only when the whole ClientHello was decrypted and parsed
	JA4     string    // JA4 with the "q" prefix (QUIC), "" unless TLS.Complete
}

// keys are one direction's Initial keys.
type keys struct {
	aead cipher.AEAD
	iv   [12]byte
	hp   cipher.Block
}

// expandLabel is TLS 1.3's HKDF-Expand-Label with an empty context.
func expandLabel(secret []byte, label string, n int) []byte {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, 0)
	out, err := hkdf.Expand(sha256.New, secret, string(info), n)
	if err != nil {
		return make([]byte, n)
	}
	return out
}

// clientKeys derives the client's Initial keys for version v from the Destination Connection ID
// of its first Initial.
func clientKeys(v uint32, dcid []byte) (*keys, error) {
	salt, prefix := saltV1, "quic "
	if v == V2 {
		salt, prefix = saltV2, "quicv2 "
	}
	initial, err := hkdf.Extract(sha256.New, dcid, salt)
	if err != nil {
		return nil, err
	}
	secret := expandLabel(initial, "client in", 32)
	block, err := aes.NewCipher(expandLabel(secret, prefix+"key", 16))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	hp, err := aes.NewCipher(expandLabel(secret, prefix+"hp", 16))
	if err != nil {
		return nil, err
	}
	k := &keys{aead: aead, hp: hp}
	copy(k.iv[:], expandLabel(secret, prefix+"iv", 12))
	return k, nil
}

// varint reads a QUIC variable-length integer.
func varint(p []byte) (v uint64, n int, ok bool) {
	if len(p) == 0 {
		return 0, 0, false
	}
	n = 1 << (p[0] >> 6)
	if len(p) < n {
		return 0, 0, false
	}
	v = uint64(p[0] & 0x3f)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(p[i])
	}
	return v, n, true
}

// skipVarints returns p after its first n variable-length integers.
func skipVarints(p []byte, n int) ([]byte, bool) {
	for range n {
		_, m, ok := varint(p)
		if !ok {
			return nil, false
		}
		p = p[m:]
	}
	return p, true
}

// bytesField reads a length-prefixed byte string and returns it and what follows it.
func bytesField(p []byte) (data, rest []byte, ok bool) {
	l, m, ok := varint(p)
	if !ok || l > uint64(len(p)-m) {
		return nil, nil, false
	}
	return p[m : m+int(l)], p[m+int(l):], true
}

// isInitial reports whether the long-header type bits of first byte b mean Initial in version v.
func isInitial(b byte, v uint32) bool {
	t := b >> 4 & 3
	if v == V2 {
		return t == 1
	}
	return t == 0
}

// Parse decrypts the client Initial packets in datagrams (a flow's first few, in order; an
// Initial may be coalesced with other packets) and reads the ClientHello from their CRYPTO
// frames. ok is false when the first datagram does not start with a client Initial of a version
// this package knows. A ClientHello that does not fit in the datagrams given, or does not
// decrypt, leaves Hello.TLS incomplete.
func Parse(datagrams ...[]byte) (h Hello, ok bool) {
	if len(datagrams) == 0 {
		return h, false
	}
	first := datagrams[0]
	if len(first) < 7 || first[0]&0xc0 != 0xc0 {
		return h, false
	}
	h.Version = binary.BigEndian.Uint32(first[1:5])
	if (h.Version != V1 && h.Version != V2) || !isInitial(first[0], h.Version) {
		return h, false
	}
	dl := int(first[5])
	if dl > 20 || 6+dl > len(first) {
		return h, false
	}
	k, err := clientKeys(h.Version, first[6:6+dl])
	if err != nil {
		return h, false
	}
	var s stream
	for _, d := range datagrams {
		for len(d) > 0 {
			n, payload := k.open(d, h.Version, first[6:6+dl])
			if n == 0 {
				break
			}
			if payload != nil && !s.frames(payload) {
				break
			}
			d = d[n:]
		}
	}
	if hello, done := s.clientHello(); done {
		// tls.Parse reads TLS records: give it the handshake message as one or more of them.
		var rec []byte
		for len(hello) > 0 {
			n := min(len(hello), 16384)
			rec = append(rec, 0x16, 3, 1, byte(n>>8), byte(n))
			rec = append(rec, hello[:n]...)
			hello = hello[n:]
		}
		h.TLS = tls.Parse(rec)
		if h.TLS.Complete && len(h.TLS.JA4) > 0 {
			h.JA4 = "q" + h.TLS.JA4[1:]
		}
	}
	return h, true
}

// open removes the protection of the packet at the start of d and returns its length and its
// plaintext payload (nil when it is not a client Initial of this connection, or does not
// decrypt). n is 0 when d does not start with a long-header packet whose length can be read.
func (k *keys) open(d []byte, v uint32, dcid []byte) (n int, payload []byte) {
	if len(d) < 7 || d[0]&0x80 == 0 || binary.BigEndian.Uint32(d[1:5]) != v {
		return 0, nil
	}
	i := 5
	dl := int(d[i])
	i++
	if dl > 20 || i+dl >= len(d) {
		return 0, nil
	}
	sameDCID := string(d[i:i+dl]) == string(dcid)
	i += dl
	sl := int(d[i])
	i++
	if sl > 20 || i+sl >= len(d) {
		return 0, nil
	}
	i += sl
	initial := isInitial(d[0], v)
	if initial {
		tl, m, ok := varint(d[i:])
		if !ok || tl > uint64(len(d)-i-m) {
			return 0, nil
		}
		i += m + int(tl)
	}
	length, m, ok := varint(d[i:])
	if !ok {
		return 0, nil
	}
	pnOff := i + m
	if length > uint64(len(d)-pnOff) || length < 20 {
		return 0, nil
	}
	end := pnOff + int(length)
	if !initial || !sameDCID {
		return end, nil
	}
	// Header protection: a mask from a sample of the ciphertext hides the packet number's
	// length (the first byte's low bits) and the packet number.
	var mask [16]byte
	k.hp.Encrypt(mask[:], d[pnOff+4:pnOff+20])
	hdr := make([]byte, pnOff+4)
	copy(hdr, d[:pnOff+4])
	hdr[0] ^= mask[0] & 0x0f
	pnLen := int(hdr[0]&3) + 1
	var pn uint64
	for j := 0; j < pnLen; j++ {
		hdr[pnOff+j] ^= mask[1+j]
		pn = pn<<8 | uint64(hdr[pnOff+j])
	}
	hdr = hdr[:pnOff+pnLen]
	nonce := k.iv
	for j := 0; j < 8; j++ {
		nonce[4+j] ^= byte(pn >> (56 - 8*j))
	}
	plain, err := k.aead.Open(nil, nonce[:], d[pnOff+pnLen:end], hdr)
	if err != nil {
		return end, nil
	}
	return end, plain
}

// stream reassembles the CRYPTO stream from frames that may come in any order.
type stream struct {
	buf  [maxCrypto]byte
	have [maxCrypto / 64]uint64 // one bit per byte received
	top  int
}

// frames reads an Initial packet's frames; false on a frame that cannot be in a client Initial.
func (s *stream) frames(p []byte) bool {
	for len(p) > 0 {
		t, n, ok := varint(p)
		if !ok {
			return false
		}
		p = p[n:]
		switch t {
		case 0x00, 0x01: // PADDING, PING
		case 0x02, 0x03: // ACK
			vals := 4
			for j := 0; j < vals; j++ {
				v, m, ok := varint(p)
				if !ok {
					return false
				}
				p = p[m:]
				if j == 2 { // ACK Range Count: a Gap and a Length each
					if v > 256 {
						return false
					}
					vals += 2 * int(v)
				}
			}
			if t == 0x03 { // ECN counts
				if p, ok = skipVarints(p, 3); !ok {
					return false
				}
			}
		case 0x06: // CRYPTO: offset, length, data
			off, m, ok := varint(p)
			if !ok {
				return false
			}
			var data []byte
			if data, p, ok = bytesField(p[m:]); !ok {
				return false
			}
			l := uint64(len(data))
			if off >= maxCrypto || off+l > maxCrypto {
				continue // past what spip reassembles
			}
			copy(s.buf[off:], data)
			for j := int(off); j < int(off)+len(data); j++ {
				s.have[j/64] |= 1 << (j % 64)
			}
			s.top = max(s.top, int(off)+len(data))
		case 0x1c: // CONNECTION_CLOSE: error code, frame type, reason phrase
			if p, ok = skipVarints(p, 2); !ok {
				return false
			}
			if _, p, ok = bytesField(p); !ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// clientHello returns the handshake message at the start of the stream once all of it is there.
func (s *stream) clientHello() ([]byte, bool) {
	if s.top < 4 || !s.got(0, 4) || s.buf[0] != 1 {
		return nil, false
	}
	n := 4 + (int(s.buf[1])<<16 | int(s.buf[2])<<8 | int(s.buf[3]))
	if n > maxCrypto || !s.got(0, n) {
		return nil, false
	}
	return s.buf[:n], true
}

func (s *stream) got(from, to int) bool {
	for j := from; j < to; j++ {
		if s.have[j/64]&(1<<(j%64)) == 0 {
			return false
		}
	}
	return true
}

func hkdfExtract(dcid []byte) ([]byte, error) { return hkdf.Extract(sha256.New, dcid, saltV1) }
