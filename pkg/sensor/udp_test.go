package sensor_test

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/record"
	"spip/pkg/sensor"
	"spip/pkg/socket"
)

// udpHarness runs a sensor over a TCP listener and a UDP socket on loopback. Without TPROXY the
// original destination the kernel reports is the socket's own address.
type udpHarness struct {
	*harness
	udp netip.AddrPort
}

func startUDP(t *testing.T, c sensor.Config) *udpHarness {
	t.Helper()
	ufd, err := socket.ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	if !socket.IsDatagram(ufd) {
		t.Fatal("IsDatagram = false for a UDP socket")
	}
	if err := socket.PrepareUDP(ufd); err != nil {
		t.Fatal(err)
	}
	port, err := socket.LocalPort(ufd)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := socket.Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	tport, _ := socket.LocalPort(fd)
	h := &harness{addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), tport), col: newCollector(), done: make(chan error, 1)}
	h.sens = sensor.New(c, fd, h.col.emit, nil, nil)
	h.sens.SetUDP(ufd)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.sens.Run(ctx) }()
	t.Cleanup(func() {
		h.stop(t)
		unix.Close(fd)
		unix.Close(ufd)
	})
	return &udpHarness{harness: h, udp: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}
}

// sendFrom sends each datagram from one unconnected socket and returns its address.
func sendFrom(t *testing.T, to netip.AddrPort, datagrams ...[]byte) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, d := range datagrams {
		if _, err := c.WriteToUDPAddrPort(d, to); err != nil {
			t.Fatal(err)
		}
	}
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestUDPFlows(t *testing.T) {
	c := cfg()
	c.PayloadCap = 8
	c.UDPIdleTimeout = 300 * time.Millisecond
	c.MaxUDPFlows = 100
	h := startUDP(t, c)

	a := sendFrom(t, h.udp, []byte("first datagram"), []byte("second"), []byte("3"))
	b := sendFrom(t, h.udp, []byte{})
	recs := h.col.wait(t, 2)
	byAddr := map[netip.AddrPort]*record.Record{}
	for _, r := range recs {
		byAddr[r.Source] = r
	}
	ra, rb := byAddr[a], byAddr[b]
	if ra == nil || rb == nil {
		t.Fatalf("records %v, want one from %s and one from %s", recs, a, b)
	}
	if ra.Transport != record.UDP || ra.Datagrams != 3 || ra.BytesReceived != 21 || !bytes.Equal(ra.Payload, []byte("first da")) ||
		!ra.Truncated || ra.Destination != h.udp || ra.Close != record.CloseTimeout {
		t.Errorf("flow a: %+v", ra)
	}
	if rb.Datagrams != 1 || rb.BytesReceived != 0 || len(rb.Payload) != 0 || rb.Truncated {
		t.Errorf("empty datagram's flow: %+v", rb)
	}
	// TCP on the same loop is unaffected.
	conn := h.dial(t)
	conn.Write([]byte("tcp"))
	conn.Close()
	h.col.wait(t, 3)
	st := &h.sens.Stats
	if st.Datagrams.Load() != 4 || st.UDPFlows.Load() != 2 || st.ActiveUDP.Load() != 0 {
		t.Errorf("stats: datagrams %d flows %d active %d", st.Datagrams.Load(), st.UDPFlows.Load(), st.ActiveUDP.Load())
	}
}

// TestUDPFlowLimit: past max_udp_flows, datagrams of new flows are counted, not kept, and the
// flows already open still gather theirs; every flow open at shutdown is recorded as such.
func TestUDPFlowLimit(t *testing.T) {
	c := cfg()
	c.UDPIdleTimeout = long
	c.MaxUDPFlows = 10
	h := startUDP(t, c)
	var first netip.AddrPort
	for i := 0; i < 30; i++ {
		src := sendFrom(t, h.udp, []byte{byte(i)})
		if i == 0 {
			first = src
		}
	}
	deadline := time.Now().Add(bound)
	for h.sens.Stats.Datagrams.Load() < 30 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.sens.Stats.UDPOverLimit.Load(); got != 20 {
		t.Errorf("over-limit datagrams = %d, want 20", got)
	}
	if got := h.sens.Stats.ActiveUDP.Load(); got != 10 {
		t.Errorf("active flows = %d, want 10", got)
	}
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	recs := h.col.snapshot()
	if len(recs) != 10 {
		t.Fatalf("%d records, want 10", len(recs))
	}
	for _, r := range recs {
		if r.Close != record.CloseShutdown {
			t.Errorf("flow open at shutdown closed as %s", r.Close)
		}
		if r.Source == first && r.Payload[0] != 0 {
			t.Errorf("first flow's payload %x", r.Payload)
		}
	}
}

func TestParseControlIgnoresJunk(t *testing.T) {
	for _, oob := range [][]byte{nil, {1, 2, 3}, bytes.Repeat([]byte{0xff}, 64), make([]byte, 64)} {
		if dst, _, ok := socket.ParseControl(oob); dst.IsValid() || ok {
			t.Errorf("ParseControl(%x) = %v, %v", oob, dst, ok)
		}
	}
}

// TestUDPFlowLimitDuration: a flow that keeps sending is recorded at max_duration (close reason
// limit), and its next datagram starts a new flow.
func TestUDPFlowLimitDuration(t *testing.T) {
	c := cfg()
	c.UDPIdleTimeout = long
	c.MaxDuration = 300 * time.Millisecond
	c.MaxUDPFlows = 10
	h := startUDP(t, c)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 8; i++ {
		if _, err := conn.WriteToUDPAddrPort([]byte{byte(i)}, h.udp); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	recs := h.col.wait(t, 1)
	if r := recs[0]; r.Close != record.CloseLimit || r.Datagrams < 2 || r.Payload[0] != 0 || r.Duration > c.MaxDuration {
		t.Errorf("first flow: close %s, %d datagrams, payload %x, duration %s", r.Close, r.Datagrams, r.Payload, r.Duration)
	}
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, r := range h.col.snapshot() {
		total += r.Datagrams
	}
	if total != 8 {
		t.Errorf("records hold %d datagrams, want all 8", total)
	}
}

// TestUDPQUICSpanning: a QUIC client whose ClientHello spans two datagrams (quic-go with a
// post-quantum key share) is one flow whose record has the first datagram as payload and the
// ClientHello's facts from both.
func TestUDPQUICSpanning(t *testing.T) {
	c := cfg()
	c.UDPIdleTimeout = 200 * time.Millisecond
	c.MaxUDPFlows = 10
	h := startUDP(t, c)
	var ds [][]byte
	for _, name := range []string{"quicgo_mlkem_0.bin", "quicgo_mlkem_1.bin"} {
		b, err := os.ReadFile("../protocol/quic/testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, b)
	}
	sendFrom(t, h.udp, ds...)
	r := h.col.wait(t, 1)[0]
	if r.Datagrams != 2 || !bytes.Equal(r.Payload, ds[0]) || r.Facts.Protocol != "quic" || r.Facts.TLSSNI != "quic.example" ||
		len(r.Facts.JA4) < 4 || r.Facts.JA4[:4] != "q13d" {
		t.Errorf("QUIC flow: %d datagrams, protocol %q, SNI %q, JA4 %q", r.Datagrams, r.Facts.Protocol, r.Facts.TLSSNI, r.Facts.JA4)
	}
}
