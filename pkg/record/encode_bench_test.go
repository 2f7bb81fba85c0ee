package record

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"

	"spip/pkg/protocol"
	"spip/pkg/protocol/communityid"
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

// BenchmarkFacts is the whole per-record cost of the protocol facts over make bench's payload
// mix: identify the bytes, hash the flow, and encode the extra fields in both encodings
// ("with"), against encoding the same records without them ("without"). Run both in one
// process: their ratio is what a shared machine can still measure.
func BenchmarkFacts(b *testing.B) {
	var payloads [][]byte
	for _, p := range []string{
		"../protocol/tls/testdata/clienthello/curl_http2_sni.bin",
		"../protocol/tls/testdata/clienthello/openssl_servername.bin",
		"../protocol/tls/testdata/clienthello/python_alpn.bin",
		"../protocol/tls/testdata/clienthello/go_crypto_tls.bin",
		"../protocol/http/testdata/curl_http_ua.bin",
		"../protocol/ssh/testdata/ssh_banner_only.bin",
		"../protocol/ssh/testdata/ssh_openssh.bin",
	} {
		payloads = append(payloads, readFile(p))
	}
	payloads = append(payloads, []byte("\x8e\x11\x02\xf0\x00\x17\x99\x42 random bytes, nothing to recognise"))
	e := NewEncoder("bench")
	buf := make([]byte, 0, 16384)
	for _, with := range []bool{false, true} {
		name := map[bool]string{false: "without", true: "with"}[with]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := benchRecord()
				r.Payload = payloads[i%len(payloads)]
				i++
				if with {
					protocol.Identify(protocol.TCP, r.Payload, &r.Facts)
					r.CommunityID = communityid.Hash(0, communityid.TCP, r.Source, r.Destination)
				}
				buf = e.AppendJSON(buf[:0], r)
				buf = e.AppendJournal(buf[:0], r)
			}
		})
	}
}
