package handover

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// seals a blob must carry: nobody, PID 1's store included, can change it after it is written.
const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// Limit is the largest blob that can describe n sessions: what ReadMemfd should allow.
func Limit(n int) int64 {
	n = min(max(n, 0), MaxSessions)
	return int64(headerSize+trailerSize) + int64(n)*int64(fixedPerEntry+MaxDestError+MaxPayload)
}

// Memfd returns a sealed memfd holding b.
func Memfd(b []byte) (int, error) {
	fd, err := unix.MemfdCreate("spip-handover", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("hand-over state: memfd_create: %w", err)
	}
	for p := b; len(p) > 0; {
		n, err := unix.Write(fd, p)
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("hand-over state: write: %w", err)
		}
		p = p[n:]
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("hand-over state: seal: %w", err)
	}
	return fd, nil
}

// ReadMemfd reads a blob from fd, which must be a memfd sealed as Memfd seals it and no larger
// than limit bytes.
func ReadMemfd(fd int, limit int64) ([]byte, error) {
	got, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: not a sealed memfd: %v", ErrFormat, err)
	}
	if got&seals != seals {
		return nil, fmt.Errorf("%w: memfd seals %#x, want %#x", ErrFormat, got, seals)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("hand-over state: fstat: %w", err)
	}
	if st.Size < 0 || st.Size > limit {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFormat, st.Size, limit)
	}
	b := make([]byte, st.Size)
	for off := 0; off < len(b); {
		n, err := unix.Pread(fd, b[off:], int64(off))
		if err != nil {
			return nil, fmt.Errorf("hand-over state: read: %w", err)
		}
		if n == 0 {
			return nil, fmt.Errorf("%w: %d of %d bytes", ErrFormat, off, len(b))
		}
		off += n
	}
	return b, nil
}
