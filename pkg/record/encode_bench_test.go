package record

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"
)

// benchRecord is a typical scanner connection: a short HTTP probe to a redirected port.
func benchRecord() *Record {
	return &Record{
		Kind:          KindConnection,
		Time:          time.Unix(1764115200, 123456000),
		SessionID:     uuid.MustParse("0193a5c4-7e2b-7c3d-9f1e-2a3b4c5d6e7f"),
		Source:        netip.MustParseAddrPort("198.51.100.1:40312"),
		Destination:   netip.MustParseAddrPort("198.51.100.2:8080"),
		Payload:       []byte("GET / HTTP/1.1\r\nHost: 198.51.100.2:8080\r\nUser-Agent: Mozilla/5.0 zgrab/0.x\r\nAccept: */*\r\n\r\n"),
		BytesReceived: 92,
		Duration:      3 * time.Millisecond,
		Close:         CloseEOF,
	}
}

// The hot path of every sink: one record into a reused buffer. make bench's profile section
// in BENCHMARKS.md quotes these.
func BenchmarkAppendJSON(b *testing.B) {
	e, r := NewEncoder("bench"), benchRecord()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0], r)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendJournal(b *testing.B) {
	e, r := NewEncoder("bench"), benchRecord()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJournal(buf[:0], r)
	}
	b.SetBytes(int64(len(buf)))
}
