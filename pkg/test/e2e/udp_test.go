package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/socket"
	"spip/pkg/test/netns"
)

// udpConfig turns the UDP capture on with two excluded ports: 5353 (a real service on the
// sensor) and 51820 (a WireGuard-like peer-to-peer exchange).
const udpConfig = `[listen]
address = "[::]:12345"
[capture]
mode = "%s"
exclude_ports = ["22"]
exclude_sshd = false
udp = true
exclude_udp_ports = ["5353", "51820"]
[session]
udp_idle_timeout = "1s"
`

// pySender sends the flows described by the JSON on its standard input: for each, a socket
// bound to the flow's source port sends the flow's datagrams, in order, to its destination.
// Python, not Go, so the datagrams come from a client that is not spip's own code.
const pySender = `
import json, socket, sys
for f in json.load(sys.stdin):
    fam = socket.AF_INET6 if ":" in f["dst"] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", f["sport"]))
    for d in f["datagrams"]:
        s.sendto(bytes.fromhex(d), (f["dst"], f["dport"]))
    s.close()
`

// udpFlow is one flow the Python sender sends.
type udpFlow struct {
	Dst       string   `json:"dst"`
	DPort     uint16   `json:"dport"`
	SPort     uint16   `json:"sport"`
	Datagrams []string `json:"datagrams"` // hex
}

func TestUDPCapture(t *testing.T) {
	for _, mode := range []string{"tproxy", "redirect"} {
		t.Run(mode, func(t *testing.T) { udpScenario(t, mode) })
	}
}

// udpScenario loads the ruleset `spip nft` renders for mode with capture.udp on, runs spip serve
// with its own transparent UDP socket, and proves: every flow (Python sender over IPv4 and IPv6
// to random ports, binary payloads, several datagrams each; dig; nmap -sU on a port range; a
// datagram of 0 bytes and one of 65,507 that travels in fragments) is recorded once with its
// original destination, datagram count, byte count and first payload; not one packet goes back
// to the client (counted in the client's namespace: no UDP, no ICMP port unreachable); the
// sensor host's own DNS lookups (dig's connected socket, and an unconnected resolver-style
// socket that uses sendto) get their answers and are not recorded; the excluded ports are
// untouched (a service on 5353, a WireGuard-like exchange on 51820 started from either side);
// flows open at shutdown are recorded as such.
func udpScenario(t *testing.T, mode string) {
	netns.Require(t, "nft", "ip", "dig", "nmap", "python3")
	p := netns.NewPair(t, "udp"+mode[:2])
	cfgPath := filepath.Join(t.TempDir(), "spip.toml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(udpConfig, mode)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := netns.Exec(p.Sensor, netns.Binary(t), "nft", "--config", cfgPath, "--load"); err != nil {
		t.Fatalf("spip nft --load: %v\n%s", err, out)
	}
	// Count everything the sensor sends the client that is not neighbour discovery.
	const counters = `table inet count {
	counter from_sensor {}
	chain in {
		type filter hook input priority filter; policy accept;
		ip saddr 198.51.100.2 counter name from_sensor
		ip6 saddr fd00:5be::2 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } return
		ip6 saddr fd00:5be::2 counter name from_sensor
	}
}`
	nftIn(t, p.Client, counters)

	// Real UDP services: one on the sensor's excluded port 5353, WireGuard-like peers on 51820 on
	// both sides, a DNS server on the client that the sensor host uses as its resolver.
	udpEcho(t, p.Sensor, "[::]:5353", "sensor-5353")
	udpEcho(t, p.Sensor, "[::]:51820", "sensor-wg")
	udpEcho(t, p.Client, "[::]:51820", "client-wg")
	dnsServer(t, p.Client, "[::]:53")
	// A UDP service on a port that is not excluded: spip check names it, and the capture leaves
	// its datagrams to it; so for another program's transparent socket (a TPROXY proxy's).
	udpEcho(t, p.Sensor, "0.0.0.0:6000", "sensor-6000")
	serveUDPTransparent(t, p.Sensor, "[::]:6001", "sensor-6001")
	check, _ := netns.Exec(p.Sensor, netns.Binary(t), "check", "--config", cfgPath)
	if !strings.Contains(string(check), "udp port 6000 is not excluded") || strings.Contains(string(check), "udp port 5353") {
		t.Errorf("spip check does not list exactly the UDP listener on 6000:\n%s", check)
	}

	jsonPath := filepath.Join(t.TempDir(), "records.jsonl")
	spip := startSpip(t, p.Sensor, "", []string{netns.Binary(t), "serve", "--config", cfgPath, "--journald", "off", "--json", jsonPath})
	waitFor(t, spip, jsonPath, "the started record", func(rs []map[string]any) bool { return countEvent(rs, "started") == 1 })

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 14))
	var flows []udpFlow
	used := map[uint16]bool{5353: true, 51820: true, 12345: true}
	for i := 0; i < 40; i++ {
		dst := netns.SensorV4.String()
		if i%3 == 0 {
			dst = netns.SensorV6.String()
		}
		port := uint16(1 + rng.IntN(65535))
		for used[port] {
			port = uint16(1 + rng.IntN(65535))
		}
		used[port] = true
		f := udpFlow{Dst: dst, DPort: port, SPort: uint16(20000 + i)}
		for j := 0; j <= i%4; j++ {
			b := make([]byte, 1+rng.IntN(300))
			for k := range b {
				b[k] = byte(rng.IntN(256))
			}
			b[0] = byte(j) // the first datagram differs from the others
			f.Datagrams = append(f.Datagrams, hex.EncodeToString(b))
		}
		flows = append(flows, f)
	}
	// Edge cases: an empty datagram, the largest IPv4 datagram (65,507 bytes, sent in fragments),
	// and a large IPv6 one.
	big := bytes.Repeat([]byte{0xAB, 0x00, 0x0A}, 65507/3+1)[:65507]
	flows = append(flows,
		udpFlow{Dst: netns.SensorV4.String(), DPort: 7, SPort: 30001, Datagrams: []string{""}},
		udpFlow{Dst: netns.SensorV4.String(), DPort: 9999, SPort: 30002, Datagrams: []string{hex.EncodeToString(big)}},
		udpFlow{Dst: netns.SensorV6.String(), DPort: 9999, SPort: 30003, Datagrams: []string{hex.EncodeToString(big[:65000]), "00"}},
	)
	plan, _ := json.Marshal(flows)
	py := netns.Command(p.Client, "python3", "-c", pySender)
	py.Stdin = bytes.NewReader(plan)
	if out, err := py.CombinedOutput(); err != nil {
		t.Fatalf("python sender: %v\n%s", err, out)
	}

	// dig from the client to the sensor: a DNS probe, never answered.
	digOut, _ := netns.Exec(p.Client, "dig", "@"+netns.SensorV4.String(), "-b", netns.ClientV4.String()+"#31053", "+tries=1", "+time=1", "probe.example.", "TXT")
	if strings.Contains(string(digOut), "status:") {
		t.Errorf("dig got an answer from the sensor:\n%s", digOut)
	}
	// nmap -sU over a range: with no answer and no ICMP port unreachable every port looks
	// open|filtered; "closed" would mean the kernel answered.
	nmapOut, err := netns.Exec(p.Client, "nmap", "-n", "-Pn", "-sU", "-p", "40000-40009", "--max-retries", "0", "-g", "31054", netns.SensorV4.String())
	if err != nil {
		t.Fatalf("nmap: %v\n%s", err, nmapOut)
	}
	if strings.Contains(string(nmapOut), "closed") || !strings.Contains(string(nmapOut), "open|filtered") {
		t.Errorf("nmap saw an answer from the sensor:\n%s", nmapOut)
	}

	// Nothing went back to the client while it probed.
	if n := counter(t, p.Client); n != 0 {
		t.Errorf("the sensor sent %d packets to the client in response to probes", n)
	}

	// The sensor host's own UDP traffic, with the capture on.
	for _, srv := range []netip.Addr{netns.ClientV4, netns.ClientV6} {
		out, err := netns.Exec(p.Sensor, "dig", "@"+srv.String(), "+tries=1", "+time=2", "host.example.", "A")
		if err != nil || !strings.Contains(string(out), "status: NXDOMAIN") {
			t.Errorf("the sensor's own dig @%s got no answer: %v\n%s", srv, err, out)
		}
		if got := resolverQuery(t, p.Sensor, netip.AddrPortFrom(srv, 53)); !got {
			t.Errorf("the sensor's unconnected resolver socket got no answer from %s", srv)
		}
		// WireGuard-like: the sensor starts the exchange, and the client does.
		if got := udpAsk(t, p.Sensor, netip.AddrPortFrom(srv, 51820)); got != "client-wg" {
			t.Errorf("sensor → client:51820: %q", got)
		}
	}
	for _, dst := range []netip.Addr{netns.SensorV4, netns.SensorV6} {
		if got := udpAsk(t, p.Client, netip.AddrPortFrom(dst, 51820)); got != "sensor-wg" {
			t.Errorf("client → %s:51820 (excluded): %q", dst, got)
		}
		if got := udpAsk(t, p.Client, netip.AddrPortFrom(dst, 5353)); got != "sensor-5353" {
			t.Errorf("client → %s:5353 (excluded): %q", dst, got)
		}
		if got := udpAsk(t, p.Client, netip.AddrPortFrom(dst, 6000)); got != "sensor-6000" {
			t.Errorf("client → %s:6000 (a bound socket, not excluded): %q", dst, got)
		}
		if got := udpAsk(t, p.Client, netip.AddrPortFrom(dst, 6001)); got != "sensor-6001" {
			t.Errorf("client → %s:6001 (another program's transparent socket): %q", dst, got)
		}
	}

	// Every flow is recorded once the idle timeout passed.
	wantUDP := len(flows) + 1 + 10
	udpRecords := func(rs []map[string]any) []map[string]any {
		var out []map[string]any
		for _, r := range rs {
			if r["event"] == "connection" && r["transport"] == "udp" {
				out = append(out, r)
			}
		}
		return out
	}
	waitFor(t, spip, jsonPath, "every UDP flow's record", func(rs []map[string]any) bool { return len(udpRecords(rs)) >= wantUDP })

	// A flow still open when spip stops is recorded as cut by the shutdown: its source keeps
	// sending every 100 ms while spip stops.
	keep := netns.Command(p.Client, "python3", "-c", "import socket, time\n"+
		"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 30004))\n"+
		"for i in range(100):\n    s.sendto(b'open', ('198.51.100.2', 4444))\n    print('sent', flush=True)\n    time.sleep(0.1)\n")
	keepOut := &syncBuffer{}
	keep.Stdout, keep.Stderr = keepOut, keepOut
	if err := keep.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(bound); strings.Count(keepOut.String(), "sent") < 5; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the keep-alive sender sent nothing: %s", keepOut.String())
		}
	}
	_ = spip.cmd.Process.Signal(syscall.SIGTERM)
	if err := spip.wait(); err != nil {
		t.Fatalf("spip: %v\n%s", err, spip.out.String())
	}
	_ = keep.Process.Kill()
	_ = keep.Wait()
	recs := udpRecords(readRecords(t, jsonPath))
	if len(recs) != wantUDP+1 {
		t.Errorf("%d UDP records, want %d (one per flow)", len(recs), wantUDP+1)
	}
	bySource := map[string][]map[string]any{}
	for _, r := range recs {
		src, _ := addrPort(r, "source_ip", "source_port")
		bySource[src.String()] = append(bySource[src.String()], r)
		if dst, _ := addrPort(r, "destination_ip", "destination_port"); dst.Port() == 5353 || dst.Port() == 51820 || dst.Port() == 6000 || dst.Port() == 6001 || dst.Port() == 53 && src.Port() == 53 {
			t.Errorf("recorded traffic it must leave alone: %v", r)
		}
		if src.Port() == 53 || src.Port() == 51820 {
			t.Errorf("recorded a reply to the host's own traffic: %v", r)
		}
	}
	for _, f := range flows {
		client := netns.ClientV4
		if strings.Contains(f.Dst, ":") {
			client = netns.ClientV6
		}
		src := netip.AddrPortFrom(client, f.SPort).String()
		rs := bySource[src]
		if len(rs) != 1 {
			t.Errorf("flow from %s to port %d: %d records, want 1", src, f.DPort, len(rs))
			continue
		}
		r := rs[0]
		dst, _ := addrPort(r, "destination_ip", "destination_port")
		if want := netip.AddrPortFrom(netip.MustParseAddr(f.Dst), f.DPort); dst != want {
			t.Errorf("flow from %s: destination %s, want %s", src, dst, want)
		}
		var total int
		for _, d := range f.Datagrams {
			total += len(d) / 2
		}
		first, _ := hex.DecodeString(f.Datagrams[0])
		if len(first) > 4096 {
			first = first[:4096]
		}
		checks := []struct {
			key  string
			want string
		}{
			{"datagrams", strconv.Itoa(len(f.Datagrams))},
			{"bytes_received", strconv.Itoa(total)},
			{"payload_hex", hex.EncodeToString(first)},
			{"close_reason", "timeout"},
			{"payload_truncated", strconv.FormatBool(total > len(first))},
		}
		for _, c := range checks {
			if got := fmt.Sprint(r[c.key]); got != c.want {
				t.Errorf("flow from %s to %d: %s = %.80s, want %.80s", src, f.DPort, c.key, got, c.want)
			}
		}
	}
	// dig's probe: one flow from its fixed source port, its payload a DNS query for the name.
	if rs := bySource[netip.AddrPortFrom(netns.ClientV4, 31053).String()]; len(rs) != 1 {
		t.Errorf("dig's probe: %d records, want 1", len(rs))
	} else if p, _ := hex.DecodeString(fmt.Sprint(rs[0]["payload_hex"])); !bytes.Contains(p, []byte("\x05probe\x07example\x00")) {
		t.Errorf("dig's probe payload is not its query: %x", p)
	} else if r := rs[0]; r["protocol"] != "dns" || r["dns_query_name"] != "probe.example" || r["dns_query_type"] != "TXT" ||
		!strings.HasPrefix(fmt.Sprint(r["community_id"]), "1:") {
		t.Errorf("dig's probe: protocol %v, name %v, type %v, community_id %v", r["protocol"], r["dns_query_name"], r["dns_query_type"], r["community_id"])
	}
	// nmap: one flow per port of the range.
	ports := map[string]bool{}
	for _, r := range bySource[netip.AddrPortFrom(netns.ClientV4, 31054).String()] {
		ports[fmt.Sprint(r["destination_port"])] = true
	}
	if len(ports) != 10 {
		t.Errorf("nmap -sU over 10 ports: records for %d ports (%v)", len(ports), ports)
	}
	if rs := bySource[netip.AddrPortFrom(netns.ClientV4, 30004).String()]; len(rs) != 1 || rs[0]["close_reason"] != "shutdown" {
		t.Errorf("the flow open at shutdown: %v\n%s", rs, spip.out.String())
	}
	if n := counter(t, p.Client); n == 0 {
		t.Errorf("the client counted no packet from the sensor at all: the counter does not count")
	}
}

// nftIn loads ruleset text into namespace ns.
func nftIn(t *testing.T, ns, rules string) {
	t.Helper()
	cmd := netns.Command(ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
}

var packetsRe = regexp.MustCompile(`packets (\d+)`)

// counter reads the client's count of packets from the sensor.
func counter(t *testing.T, ns string) int {
	t.Helper()
	out, err := netns.Exec(ns, "nft", "list", "counter", "inet", "count", "from_sensor")
	m := packetsRe.FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("nft list counter: %v\n%s", err, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// udpEcho answers every datagram on addr in namespace ns with reply.
func udpEcho(t *testing.T, ns, addr, reply string) {
	t.Helper()
	serveUDP(t, ns, addr, func([]byte) []byte { return []byte(reply) })
}

// dnsServer answers every query with NXDOMAIN: enough for dig to print a status.
func dnsServer(t *testing.T, ns, addr string) {
	t.Helper()
	serveUDP(t, ns, addr, func(q []byte) []byte {
		if len(q) < 12 {
			return nil
		}
		r := append([]byte{}, q...)
		flags := binary.BigEndian.Uint16(r[2:4])
		binary.BigEndian.PutUint16(r[2:4], flags|0x8000|0x0080|3) // QR, RA, NXDOMAIN
		return r
	})
}

// serveUDPTransparent is udpEcho on a socket with IP_TRANSPARENT, as a TPROXY proxy has.
func serveUDPTransparent(t *testing.T, ns, addr, reply string) {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	serveUDPWith(t, ns, addr, lc, func([]byte) []byte { return []byte(reply) })
}

func serveUDP(t *testing.T, ns, addr string, answer func([]byte) []byte) {
	t.Helper()
	serveUDPWith(t, ns, addr, net.ListenConfig{}, answer)
}

func serveUDPWith(t *testing.T, ns, addr string, lc net.ListenConfig, answer func([]byte) []byte) {
	t.Helper()
	var c net.PacketConn
	if err := netns.In(ns, func() (err error) { c, err = lc.ListenPacket(context.Background(), "udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := answer(buf[:n]); r != nil {
				_, _ = c.WriteTo(r, from)
			}
		}
	}()
}

// udpAsk sends one datagram from a connected socket in ns and returns the answer.
func udpAsk(t *testing.T, ns string, to netip.AddrPort) string {
	t.Helper()
	var got string
	err := netns.In(ns, func() error {
		c, err := net.Dial("udp", to.String())
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 512)
		for try := 0; try < 3; try++ {
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, err := c.Read(buf)
			if err == nil {
				got = string(buf[:n])
				return nil
			}
		}
		return fmt.Errorf("no answer")
	})
	if err != nil {
		return err.Error()
	}
	return got
}

// resolverQuery sends a DNS query from an unconnected socket with sendto, as a stub resolver
// does, and reports whether an answer came back to it.
func resolverQuery(t *testing.T, ns string, to netip.AddrPort) bool {
	t.Helper()
	query := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1}
	err := netns.In(ns, func() error {
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 512)
		for try := 0; try < 3; try++ {
			if _, err := c.WriteToUDPAddrPort(query, to); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err == nil && n >= 2 && buf[0] == 0x12 && buf[1] == 0x34 && from.Port() == 53 {
				return nil
			}
		}
		return fmt.Errorf("no answer")
	})
	return err == nil
}

// TestServeUDPSockets: the sockets as systemd passes them. With LISTEN_FDNAMES=spip:spip-udp
// (spip.socket and spip-udp.socket), spip records datagrams from the UDP one; with only the TCP
// socket passed and capture.udp on, it records TCP and warns that the UDP socket is missing.
func TestServeUDPSockets(t *testing.T) {
	netns.Require(t, "ip", "systemd-socket-activate")
	p := netns.NewPair(t, "e2e-udpfd")
	var tcpFD, udpFD int
	if err := netns.In(p.Sensor, func() (err error) {
		if tcpFD, err = socket.Listen(netip.MustParseAddrPort("[::]:12345")); err != nil {
			return err
		}
		if udpFD, err = socket.ListenUDP(netip.MustParseAddrPort("[::]:12345")); err != nil {
			return err
		}
		return socket.SetTransparent(udpFD)
	}); err != nil {
		t.Fatal(err)
	}
	tcpF, udpF := os.NewFile(uintptr(tcpFD), "tcp"), os.NewFile(uintptr(udpFD), "udp")
	t.Cleanup(func() { tcpF.Close(); udpF.Close() })

	jsonPath := filepath.Join(t.TempDir(), "records.jsonl")
	// sh's pid is spip's after exec: what LISTEN_PID must name.
	spip := startSpip(t, p.Sensor, "", []string{"sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=spip:spip-udp exec "$0" "$@"`,
		netns.Binary(t), "serve", "--config", "/dev/null", "--journald", "off", "--json", jsonPath}, tcpF, udpF)
	waitFor(t, spip, jsonPath, "the started record", func(rs []map[string]any) bool { return countEvent(rs, "started") == 1 })
	if got := udpAsk(t, p.Client, netip.AddrPortFrom(netns.SensorV4, 12345)); !strings.Contains(got, "no answer") {
		t.Errorf("spip answered a datagram: %q", got)
	}
	waitFor(t, spip, jsonPath, "the UDP record", func(rs []map[string]any) bool {
		for _, r := range rs {
			if r["transport"] == "udp" && r["payload"] == "ping" {
				return true
			}
		}
		return false
	})
	_ = spip.cmd.Process.Signal(syscall.SIGTERM)
	if err := spip.wait(); err != nil {
		t.Fatalf("spip: %v\n%s", err, spip.out.String())
	}

	// Only the TCP socket, capture.udp on: TCP recorded, a warning says what is missing.
	jsonPath = filepath.Join(t.TempDir(), "records.jsonl")
	cfg := filepath.Join(t.TempDir(), "spip.toml")
	if err := os.WriteFile(cfg, []byte("[capture]\nudp = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spip = startSpip(t, p.Sensor, "", []string{"systemd-socket-activate", "-l", "[::]:12346", "--fdname=spip",
		netns.Binary(t), "serve", "--config", cfg, "--journald", "off", "--json", jsonPath})
	c := &sent{kind: sendAndClose, dst: netip.AddrPortFrom(netns.SensorV4, 12346), payload: []byte("tcp without udp")}
	dialRetry(t, p.Client, c, &sourcePorts{rng: rand.New(rand.NewPCG(3, 4)), used: map[uint16]bool{}})
	waitFor(t, spip, jsonPath, "the connection record", func(rs []map[string]any) bool { return countEvent(rs, "connection") == 1 })
	_ = spip.cmd.Process.Signal(syscall.SIGTERM)
	if err := spip.wait(); err != nil {
		t.Fatalf("spip: %v\n%s", err, spip.out.String())
	}
	warned := false
	for _, r := range readRecords(t, jsonPath) {
		if msg, _ := r["message"].(string); r["event"] == "warning" && strings.Contains(msg, "systemd passed no UDP socket") && strings.Contains(msg, "spip-udp.socket") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning record about the missing UDP socket:\n%s", readFile(jsonPath))
	}
}

func readFile(path string) string { b, _ := os.ReadFile(path); return string(b) }
