package tls

// reader is a bounds-checked cursor over peer bytes: every read checks the length first and
// fails instead of reading past the end.
type reader []byte

func (r *reader) u8(v *uint8) bool {
	if len(*r) < 1 {
		return false
	}
	*v = (*r)[0]
	*r = (*r)[1:]
	return true
}

func (r *reader) u16(v *uint16) bool {
	if len(*r) < 2 {
		return false
	}
	*v = uint16((*r)[0])<<8 | uint16((*r)[1])
	*r = (*r)[2:]
	return true
}

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

// vec8 and vec16 read a vector with a one- or two-byte length prefix.
func (r *reader) vec8(out *reader) bool {
	var n uint8
	if !r.u8(&n) || len(*r) < int(n) {
		return false
	}
	*out = (*r)[:n:n]
	*r = (*r)[n:]
	return true
}

func (r *reader) vec16(out *reader) bool {
	var n uint16
	if !r.u16(&n) || len(*r) < int(n) {
		return false
	}
	*out = (*r)[:n:n]
	*r = (*r)[n:]
	return true
}
