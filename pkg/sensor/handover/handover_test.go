package handover

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sample() *State {
	return &State{
		Mono: 123456789 * time.Microsecond,
		Wall: time.Unix(1764576000, 123456789),
		Sessions: []Session{
			{
				ID:       [16]byte{0x01, 0x93, 0xd1, 0xe2, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 1},
				Accepted: time.Unix(1764575990, 5),
				Peer:     netip.MustParseAddrPort("198.51.100.7:40001"),
				Local:    netip.MustParseAddrPort("203.0.113.1:23"),
				Dst:      netip.MustParseAddrPort("203.0.113.1:23"),
				Payload:  []byte("SSH-2.0-slow\r\n\x00\xff"),
				Bytes:    16,
				Due:      3 * time.Second,
				End:      50 * time.Second,
			},
			{
				ID:       [16]byte{2},
				Accepted: time.Unix(1764575999, 0),
				Peer:     netip.MustParseAddrPort("[fd00::2]:40002"),
				Local:    netip.MustParseAddrPort("[fd00::1]:12345"),
				DestErr:  "conntrack: no entry",
				Bytes:    9000,
				Payload:  bytes.Repeat([]byte{'A'}, 300),
				Due:      0,
				End:      0,
			},
			{ // silent so far: no payload
				ID:       [16]byte{3},
				Accepted: time.Unix(1764575999, 999),
				Peer:     netip.MustParseAddrPort("198.51.100.9:1"),
				Local:    netip.MustParseAddrPort("[::ffff:203.0.113.1]:12345"),
				Dst:      netip.MustParseAddrPort("203.0.113.1:65535"),
				Due:      10 * time.Second,
				End:      time.Minute,
			},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	want := sample()
	got, err := Decode(Encode(want), 3)
	if err != nil {
		t.Fatal(err)
	}
	// The v4-mapped local address comes back unmapped: addresses are compared unmapped.
	want.Sessions[2].Local = netip.MustParseAddrPort("203.0.113.1:12345")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip differs")
	}
	empty, err := Decode(Encode(&State{Wall: time.Unix(0, 0)}), 0)
	if err != nil || len(empty.Sessions) != 0 {
		t.Errorf("empty state: %+v, %v", empty, err)
	}
}

// testdata/v1.blob was written by the first release with a hand-over (sample(), version 1).
// Every later version must still read it: that is the hand-over of an upgrade from it.
func TestReadsVersion1(t *testing.T) {
	path := filepath.Join("testdata", "v1.blob")
	if os.Getenv("SPIP_UPDATE_GOLDEN") != "" && Version == 1 {
		if err := os.WriteFile(path, Encode(sample()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b, 10)
	if err != nil {
		t.Fatalf("a version 1 blob: %v", err)
	}
	want := sample()
	want.Sessions[2].Local = netip.MustParseAddrPort("203.0.113.1:12345")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("version 1 blob decodes to something else than it was written from")
	}
}

func TestRefused(t *testing.T) {
	good := Encode(sample())
	// fix recomputes the checksum, so each case tests its own check and not the checksum.
	fix := func(mut func(b []byte) []byte) []byte {
		b := mut(append([]byte(nil), good[:len(good)-4]...))
		return append(b, crcOf(b)...)
	}
	cases := []struct {
		name string
		blob []byte
		max  int
	}{
		{"empty", nil, 10},
		{"short", good[:10], 10},
		{"bad magic", fix(func(b []byte) []byte { b[0] = 'X'; return b }), 10},
		{"bad checksum", append(append([]byte(nil), good[:len(good)-1]...), good[len(good)-1]^1), 10},
		{"flipped byte", func() []byte { b := append([]byte(nil), good...); b[60] ^= 0x40; return b }(), 10},
		{"version 0", fix(func(b []byte) []byte { b[4], b[5] = 0, 0; return b }), 10},
		{"future version", fix(func(b []byte) []byte { b[4] = Version + 1; return b }), 10},
		{"flags", fix(func(b []byte) []byte { b[6] = 1; return b }), 10},
		{"more sessions than fds", good, 2},
		{"count over the data", fix(func(b []byte) []byte { b[24] = 200; return b }), 1000},
		{"trailing bytes", fix(func(b []byte) []byte { return append(b, 0) }), 10},
		{"cut short", fix(func(b []byte) []byte { return b[:len(b)-3] }), 10},
		{"bad family", fix(func(b []byte) []byte { b[headerSize+16+8+18] = 5; return b }), 10},
		{"no peer", fix(func(b []byte) []byte { b[headerSize+16+8+18] = 0; return b }), 10},
		{"due after end", fix(func(b []byte) []byte {
			off := headerSize + 16 + 8 + 3*19
			b[off+7] = 0x7f
			return b
		}), 10},
		{"duplicate session", Encode(&State{Sessions: []Session{sample().Sessions[0], sample().Sessions[0]}}), 10},
		{"bytes below payload", Encode(&State{Sessions: []Session{func() Session { s := sample().Sessions[0]; s.Bytes = 1; return s }()}}), 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := Decode(c.blob, c.max)
			if err == nil {
				t.Fatalf("accepted: %+v", st)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error %v does not wrap ErrFormat", err)
			}
		})
	}
}

func crcOf(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(nil, crc32.Checksum(b, castagnoli))
}

func TestMemfd(t *testing.T) {
	blob := Encode(sample())
	fd, err := Memfd(blob)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte("x")); err == nil {
		t.Errorf("a sealed memfd took a write")
	}
	got, err := ReadMemfd(fd, Limit(3))
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("ReadMemfd: %d bytes, %v", len(got), err)
	}
	if _, err := ReadMemfd(fd, 10); !errors.Is(err, ErrFormat) {
		t.Errorf("over the limit: %v, want ErrFormat", err)
	}
	// An unsealed memfd, which someone could still change, is refused.
	u, err := unix.MemfdCreate("x", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(u)
	_, _ = unix.Write(u, blob)
	if _, err := ReadMemfd(u, Limit(3)); !errors.Is(err, ErrFormat) {
		t.Errorf("unsealed memfd: %v, want ErrFormat", err)
	}
	// Neither is a pipe.
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := ReadMemfd(p[0], Limit(3)); !errors.Is(err, ErrFormat) {
		t.Errorf("pipe: %v, want ErrFormat", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(sample()), 10)
	f.Add(Encode(&State{}), 0)
	f.Add([]byte("SPHO\x01\x00\x00\x00"), 1)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		st, err := Decode(b, max)
		if err != nil {
			return
		}
		// What Decode accepts, Encode writes back byte for byte (addresses aside, which it
		// normalizes), and decodes to the same.
		again, err := Decode(Encode(st), max)
		if err != nil {
			t.Fatalf("re-encoded blob refused: %v", err)
		}
		if !reflect.DeepEqual(again, st) {
			t.Fatalf("re-encoded blob differs")
		}
	})
}

// A carrier holds connections in flight after every other copy is closed, and gives them back.
func TestCarrier(t *testing.T) {
	const n = 700 // three messages
	var mine, theirs []int
	for range n {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		mine, theirs = append(mine, p[0]), append(theirs, p[1])
	}
	defer func() {
		for _, fd := range theirs {
			unix.Close(fd)
		}
	}()
	carrier, got, err := Pack(mine)
	if err != nil || got != n {
		t.Fatalf("Pack: %d of %d, %v", got, n, err)
	}
	for _, fd := range mine {
		unix.Close(fd)
	}
	back, err := Unpack(carrier, n+10)
	unix.Close(carrier)
	if err != nil || len(back) != n {
		t.Fatalf("Unpack: %d of %d, %v", len(back), n, err)
	}
	// In order: the i-th read end reads what the i-th write end wrote.
	for i, fd := range back {
		if _, err := unix.Write(theirs[i], []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if k, err := unix.Read(fd, b[:]); k != 1 || b[0] != byte(i) {
			t.Fatalf("descriptor %d came back as another: %v", i, err)
		}
		unix.Close(fd)
	}
}
