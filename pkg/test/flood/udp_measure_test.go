//go:build measure

package flood

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// The UDP capture's figures for BENCHMARKS.md, measured, never asserted:
//
//	go test -tags measure -count=1 -timeout 30m -run 'TestUDPMeasure' -v ./pkg/test/flood
//
// Each step is a fresh network-namespace pair with the ruleset spip nft renders for
// udpFloodConfig and spip serve writing the JSON mirror (journald off: its own ceiling is
// measured elsewhere); the load is forged-source datagrams from the client namespace.

// pace sends rate datagrams/s for d, in 1 ms slices, and returns how many the kernel took.
func pace(sp *spoofer, rate int, d time.Duration) int {
	sent := 0
	start := time.Now()
	for el := time.Duration(0); el < d; el = time.Since(start) {
		want := int(float64(rate) * el.Seconds())
		for ; sent < want; sent++ {
			sp.send(netns.SensorV4)
		}
		time.Sleep(time.Millisecond)
	}
	return sent
}

// TestUDPMeasureLadder: datagrams/s recorded without loss. Each rung sends every datagram from
// its own forged source (one flow each: the costliest case, a record per datagram) for 5 s,
// with a flow table big enough for all of them; a rung is lossless when the records hold
// every datagram the capture handed to spip's socket and nothing was dropped.
func TestUDPMeasureLadder(t *testing.T) {
	for _, rate := range []int{2000, 5000, 10000, 20000, 40000} {
		s := startUDPSensor(t, fmt.Sprintf("udpm%d", rate/1000), 1<<20)
		sp := newSpoofer(t, s.p.Client, uint64(rate))
		cpu0 := procCPU(t, s.cmd.pid)
		sent := pace(sp, rate, 5*time.Second)
		time.Sleep(3 * time.Second) // the last flows' idle timeout (2 s)
		cpu := procCPU(t, s.cmd.pid) - cpu0
		captured := s.captured()
		s.stop()
		recs, dropped, _ := readUDPRecords(t, s.json)
		var got uint64
		for _, r := range recs {
			got += r.Datagrams
		}
		t.Logf("MEASURE udp ladder rate=%d/s sent=%d captured=%d recorded=%d dropped=%d lost_unaccounted=%d sensor_cpu=%.2fs (%.0f µs/datagram) lossless=%v",
			rate, sent, captured, got, dropped, int64(captured)-int64(got+dropped), cpu.Seconds(), cpu.Seconds()*1e6/float64(max(got, 1)), dropped == 0 && got == captured)
	}
}

// TestUDPMeasureMemory: spip's RSS with the flow table full (session.max_udp_flows = 16384,
// the default) of flows holding first payloads of 16 bytes (spoofed probes).
func TestUDPMeasureMemory(t *testing.T) {
	const flows = 16384
	s := startUDPSensor(t, "udpmem", flows)
	sp := newSpoofer(t, s.p.Client, 7)
	before := s.rss()
	// Enough datagrams that the table is full (random sources repeat now and then), sent within
	// the 2 s idle timeout so none has ended yet.
	pace(sp, 20000, 1500*time.Millisecond)
	full := s.rss()
	captured := s.captured()
	s.stop()
	recs, dropped, _ := readUDPRecords(t, s.json)
	t.Logf("MEASURE udp memory flows=%d (max %d) captured=%d dropped=%d rss_before=%d KiB rss_full=%d KiB per_flow=%.0f B",
		len(recs), flows, captured, dropped, before>>10, full>>10, float64(full-before)/float64(max(len(recs), 1)))
}

// TestUDPMeasureConntrack: a 60 s flood of 5,000 datagrams/s from random forged sources, the
// live conntrack entries (conntrack -L) and the kernel's count (which includes expired entries
// the garbage collector has not reaped) every 5 s, and 5 s after.
func TestUDPMeasureConntrack(t *testing.T) {
	s := startUDPSensor(t, "udpct", 16384)
	sp := newSpoofer(t, s.p.Client, 60)
	count := func() int {
		out, _ := netns.Exec(s.p.Sensor, "cat", "/proc/sys/net/netfilter/nf_conntrack_count")
		n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		return n
	}
	maxLive, maxCount := 0, 0
	for i := 0; i < 12; i++ {
		pace(sp, 5000, 5*time.Second)
		live, c := s.liveUDPEntries(), count()
		maxLive, maxCount = max(maxLive, live), max(maxCount, c)
		t.Logf("MEASURE udp conntrack t=%ds live_udp=%d nf_conntrack_count=%d", (i+1)*5, live, c)
	}
	time.Sleep(5 * time.Second)
	after, afterCount := s.liveUDPEntries(), count()
	captured := s.captured()
	s.stop()
	recs, dropped, _ := readUDPRecords(t, s.json)
	var got uint64
	for _, r := range recs {
		got += r.Datagrams
	}
	t.Logf("MEASURE udp conntrack 60s at 5000/s: captured=%d recorded=%d dropped=%d max_live=%d max_count=%d live_5s_after=%d count_5s_after=%d",
		captured, got, dropped, maxLive, maxCount, after, afterCount)
}

func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100
}
