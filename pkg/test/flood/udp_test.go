package flood

import (
	"encoding/binary"
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

	"spip/pkg/test/netns"
)

// udpFloodConfig captures UDP with a small flow table, so a flood from many sources runs past it.
const udpFloodConfig = `[listen]
address = "[::]:12345"
[capture]
mode = "tproxy"
exclude_ports = ["22"]
exclude_sshd = false
udp = true
[session]
udp_idle_timeout = "2s"
max_udp_flows = %d
`

// udpSensor is spip serve in the sensor namespace of a pair, with the ruleset loaded.
type udpSensor struct {
	t    *testing.T
	p    *netns.Pair
	cmd  *netnsCmd
	json string
}

type netnsCmd struct {
	pid  int
	done chan error
	kill func()
}

// startUDPSensor loads `spip nft` for udpFloodConfig in a fresh pair and starts spip serve there.
func startUDPSensor(t *testing.T, name string, maxFlows int) *udpSensor {
	t.Helper()
	netns.Require(t, "nft", "ip", "conntrack")
	p := netns.NewPair(t, name)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "spip.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(udpFloodConfig, maxFlows)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := netns.Binary(t)
	if out, err := netns.Exec(p.Sensor, bin, "nft", "--config", cfg, "--load"); err != nil {
		t.Fatalf("spip nft --load: %v\n%s", err, out)
	}
	// Spoofed sources have no route back: strict reverse-path filtering would drop them before
	// the capture sees them, as it would on a host that has it on.
	if out, err := netns.Exec(p.Sensor, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.s0.rp_filter=0"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s := &udpSensor{t: t, p: p, json: filepath.Join(dir, "records.json")}
	cmd := netns.Command(p.Sensor, bin, "serve", "--config", cfg, "--json", s.json, "--journald", "off")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPIP_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") && !strings.HasPrefix(kv, "LISTEN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = &netnsCmd{pid: cmd.Process.Pid, done: make(chan error, 1), kill: func() { _ = cmd.Process.Kill() }}
	go func() { s.cmd.done <- cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.kill()
		if t.Failed() {
			t.Logf("spip's standard error:\n%s", stderr.String())
		}
	})
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(readFile(s.json), `"event":"started"`) {
		if time.Now().After(deadline) {
			t.Fatalf("spip did not start: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func readFile(path string) string { b, _ := os.ReadFile(path); return string(b) }

// stop ends spip with SIGTERM and waits for it.
func (s *udpSensor) stop() {
	s.t.Helper()
	_ = syscall.Kill(s.cmd.pid, syscall.SIGTERM)
	select {
	case err := <-s.cmd.done:
		if err != nil {
			s.t.Errorf("spip: %v", err)
		}
	case <-time.After(time.Minute):
		s.t.Fatal("spip did not stop")
	}
}

// rss is spip's resident set in bytes.
func (s *udpSensor) rss() uint64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.pid))
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		s.t.Fatalf("no VmRSS for %d", s.cmd.pid)
	}
	kb, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return kb << 10
}

// captured is how many datagrams the UDP capture rule handed to spip's socket (its counter).
func (s *udpSensor) captured() uint64 {
	s.t.Helper()
	out, err := netns.Exec(s.p.Sensor, "nft", "list", "chain", "inet", "spip", "capture_udp")
	if err != nil {
		s.t.Fatalf("%v\n%s", err, out)
	}
	m := regexp.MustCompile(`ct timeout set "spip_udp" counter packets (\d+)`).FindSubmatch(out)
	if m == nil {
		s.t.Fatalf("no counter in the UDP capture chain:\n%s", out)
	}
	n, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return n
}

// liveUDPEntries counts the UDP entries conntrack -L lists (live ones: expired entries awaiting
// the garbage collector are not listed) in the sensor namespace.
func (s *udpSensor) liveUDPEntries() int {
	s.t.Helper()
	out, err := netns.Exec(s.p.Sensor, "conntrack", "-L", "-p", "udp")
	if err != nil && !strings.Contains(string(out), "0 flow entries") {
		s.t.Fatalf("conntrack -L: %v\n%s", err, out)
	}
	return strings.Count(string(out), "\nudp ") + map[bool]int{true: 1}[strings.HasPrefix(string(out), "udp ")]
}

// spoofer sends UDP datagrams with forged IPv4 source addresses and ports from the client
// namespace through a raw socket: what a reflection attacker aims at a host.
type spoofer struct {
	fd  int
	rng *rand.Rand
	buf []byte
}

func newSpoofer(t *testing.T, ns string, seed uint64) *spoofer {
	t.Helper()
	var fd int
	if err := netns.In(ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &spoofer{fd: fd, rng: rand.New(rand.NewPCG(seed, 17)), buf: make([]byte, 20+8+16)}
}

// send sends one datagram to dst:random port from a random 203.0.113.x address and port, and
// returns whether the kernel took it.
func (s *spoofer) send(dst netip.Addr) bool {
	b := s.buf
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint32(b[4:], 0) // id and fragment: the kernel fills an id
	b[8], b[9] = 64, unix.IPPROTO_UDP
	b[10], b[11] = 0, 0 // the kernel computes the header checksum
	copy(b[12:16], []byte{203, 0, 113, byte(1 + s.rng.IntN(254))})
	d := dst.As4()
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[20:], uint16(1024+s.rng.IntN(64000)))
	// Destination ports 1000-11999: none excluded by default (DHCP, DHCPv6, WireGuard are not
	// spip's, and their conntrack entries keep the host's timeouts).
	binary.BigEndian.PutUint16(b[22:], uint16(1000+s.rng.IntN(11000)))
	binary.BigEndian.PutUint16(b[24:], uint16(len(b)-20))
	b[26], b[27] = 0, 0 // no UDP checksum (allowed over IPv4)
	copy(b[28:], "spoofed probe!!!")
	err := unix.Sendto(s.fd, b, 0, &unix.SockaddrInet4{Addr: d})
	return err == nil
}

type udpRec struct {
	Event       string `json:"event"`
	Transport   string `json:"transport"`
	Datagrams   uint64 `json:"datagrams"`
	SourceIP    string `json:"source_ip"`
	Payload     string `json:"payload"`
	UDPDropTot  uint64 `json:"udp_dropped_total"`
	CloseReason string `json:"close_reason"`
}

func readUDPRecords(t *testing.T, path string) (recs []udpRec, dropped uint64, tcp map[string]bool) {
	t.Helper()
	tcp = map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(readFile(path)), "\n") {
		var r udpRec
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		switch {
		case r.Event == "connection" && r.Transport == "udp":
			recs = append(recs, r)
		case r.Event == "connection":
			tcp[r.Payload] = true
		case r.Event == "summary" && r.UDPDropTot > dropped:
			dropped = r.UDPDropTot
		}
	}
	return recs, dropped, tcp
}

// TestUDPSpoofedFlood: 60,000 datagrams from forged sources (random 203.0.113.x addresses and
// ports) against a flow table of 500. Every datagram the capture handed to spip's socket is
// accounted for, in a flow record's datagram count or in the summary's udp_dropped_total (over
// the table, or dropped by the kernel for a full buffer, both counted); spip's memory stays
// bounded; TCP connections made during the flood are all recorded; and seconds after the flood
// conntrack holds no live UDP entry of it (each lapsed 2 s after its datagram).
func TestUDPSpoofedFlood(t *testing.T) {
	const maxFlows, datagrams, tcpConns = 500, 60000, 30
	s := startUDPSensor(t, "udpfl", maxFlows)
	rssBefore := s.rss()
	sp := newSpoofer(t, s.p.Client, uint64(time.Now().UnixNano()))

	tcpDone := make(chan []string)
	go func() {
		var sent []string
		for i := 0; i < tcpConns; i++ {
			payload := fmt.Sprintf("tcp during the flood #%d", i)
			err := netns.In(s.p.Client, func() error {
				c, err := net.DialTimeout("tcp", netip.AddrPortFrom(netns.SensorV4, uint16(20000+i)).String(), 10*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write([]byte(payload))
				return err
			})
			if err == nil {
				sent = append(sent, payload)
			} else {
				t.Errorf("TCP connection %d during the flood: %v", i, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		tcpDone <- sent
	}()
	sentOK := 0
	var peak uint64
	for i := 0; i < datagrams; i++ {
		if sp.send(netns.SensorV4) {
			sentOK++
		}
		if i%5000 == 0 {
			peak = max(peak, s.rss())
		}
	}
	tcpSent := <-tcpDone
	peak = max(peak, s.rss())
	captured := s.captured()
	t.Logf("sent %d spoofed datagrams, %d handed to spip's socket; spip RSS %d KiB before, peak %d KiB", sentOK, captured, rssBefore>>10, peak>>10)

	time.Sleep(5 * time.Second) // past the 2 s conntrack timeout and the 2 s idle timeout
	live := s.liveUDPEntries()
	if out, _ := netns.Exec(s.p.Sensor, "conntrack", "-L", "-p", "udp"); live > 5 {
		t.Logf("conntrack -L -p udp:\n%.3000s", out)
	}
	s.stop()
	recs, dropped, tcp := readUDPRecords(t, s.json)
	var got uint64
	for _, r := range recs {
		got += r.Datagrams
	}
	t.Logf("%d UDP flow records holding %d datagrams, %d datagrams dropped and summarised; %d live UDP conntrack entries 5 s after the flood",
		len(recs), got, dropped, live)
	if got+dropped != captured {
		t.Errorf("accounting: %d datagrams in records + %d dropped = %d, but the capture handed spip %d", got, dropped, got+dropped, captured)
	}
	if dropped == 0 {
		t.Errorf("a flood over the flow table dropped nothing: the table is not bounded")
	}
	// Memory: bounded by the table, not by the flood. The table's share is small (500 flows);
	// 64 MiB is far above spip's working set and far below what 60,000 flows would cost if
	// nothing bounded them only in payload buffers of 4 KiB (234 MiB).
	if peak > rssBefore+64<<20 {
		t.Errorf("spip's RSS grew from %d KiB to %d KiB during the flood", rssBefore>>10, peak>>10)
	}
	for _, p := range tcpSent {
		if !tcp[p] {
			t.Errorf("TCP connection %q made during the flood was not recorded", p)
		}
	}
	if live > 5 {
		t.Errorf("%d live UDP conntrack entries 5 s after the flood, want none (2 s timeout policy)", live)
	}
}
