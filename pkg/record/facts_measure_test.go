//go:build measure

package record

import (
	"runtime"
	"syscall"
	"testing"
	"time"

	"spip/pkg/protocol"
	"spip/pkg/protocol/communityid"
)

// threadCPU is the calling thread's CPU time: unlike wall-clock ns/op it does not grow when a
// shared machine's other work takes the core away.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU is the whole process's CPU time, the garbage collector's included.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sink keeps each record reachable until the next, as a sink's queue does, so it is allocated
// on the heap as the sensor's are.
var sink *Record

// TestFactsCPU (make bench's companion, -tags measure) measures on one locked thread the CPU a
// record costs over make bench's payload mix: encoded to JSON without the facts, the facts alone
// (identify the bytes, hash the flow), and both. BENCHMARKS.md quotes it. GC work on other
// threads is not in these figures; make bench's process CPU is.
func TestFactsCPU(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
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
	payloads = append(payloads, []byte("\x8e\x11\x02\xf0\x00\x17\x99\x42"), []byte("\x00\x01\x02\x03random"))
	e := NewEncoder("bench")
	buf := make([]byte, 0, 16384)
	const n = 200000
	for round := 1; round <= 3; round++ {
		var us, ps [3]float64
		for mode := range 3 {
			runtime.GC()
			c0, p0 := threadCPU(), processCPU()
			for i := range n {
				r := benchRecord()
				sink = r
				r.Payload = payloads[i%len(payloads)]
				if mode >= 1 {
					protocol.Identify(protocol.TCP, r.Payload, &r.Facts)
					r.CommunityID = communityid.Hash(0, communityid.TCP, r.Source, r.Destination)
				}
				if mode != 1 {
					buf = e.AppendJSON(buf[:0], r)
				}
			}
			us[mode] = float64((threadCPU() - c0).Nanoseconds()) / 1000 / n
			ps[mode] = float64((processCPU() - p0).Nanoseconds()) / 1000 / n
		}
		t.Logf("round %d: CPU per record, this thread: JSON without facts %.2f µs, facts alone %.2f µs, facts and JSON %.2f µs (+%.2f µs); whole process (GC included): %.2f, %.2f, %.2f µs (+%.2f µs)",
			round, us[0], us[1], us[2], us[2]-us[0], ps[0], ps[1], ps[2], ps[2]-ps[0])
	}
}
