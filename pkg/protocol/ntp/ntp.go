// Package ntp recognises NTP requests: client packets (mode 3), and the control (mode 6) and
// private (mode 7, "monlist") queries that reflection attacks are built on.
package ntp

// Packet is what an NTP request's first byte says.
type Packet struct {
	Version uint8 // 1-4
	Mode    uint8 // 1 symmetric active, 3 client, 6 control, 7 private
}

// Parse reads p as an NTP request. Each mode must have its own shape, so random bytes seldom
// pass: a client or symmetric packet is the 48-byte header plus whole 32-bit words (extension
// fields, a MAC) and a stratum of at most 16; a control message a request (no response bit)
// with a known opcode and a count that fits; a private message a request of a known
// implementation.
func Parse(p []byte) (Packet, bool) {
	if len(p) < 8 {
		return Packet{}, false
	}
	pk := Packet{Version: p[0] >> 3 & 7, Mode: p[0] & 7}
	if pk.Version < 1 || pk.Version > 4 {
		return Packet{}, false
	}
	var ok bool
	switch pk.Mode {
	case 1, 3:
		ok = len(p) >= 48 && len(p)%4 == 0 && len(p) <= 1024 && p[1] <= 16
	case 6:
		// RFC 9327: LI/VN/mode, R|E|M|opcode, sequence, status, association id, offset, count.
		count := int(p[10%len(p)])<<8 | int(p[11%len(p)])
		ok = len(p) >= 12 && p[1]&0x80 == 0 && p[1]&0x1f != 0 && count <= len(p)-12
	case 7:
		// ntpd's private mode: R|M|VN|mode, A|sequence, implementation (0 univ, 2 xntpd old,
		// 3 xntpd), request code. R (response) and M (more) are clear in a request.
		impl := p[2]
		ok = p[0]&0xc0 == 0 && (impl == 0 || impl == 2 || impl == 3)
	}
	if !ok {
		return Packet{}, false
	}
	return pk, true
}
