// Command spip-loadgen offers connections to a sensor for `make bench` and then checks, from
// the sensor's JSON lines, that each one was recorded exactly once with its original port.
//
// Run it in the client network namespace. Each connection goes to a random destination port of
// the sensor's IPv4 or IPv6 address (alternately), sends a unique payload naming its sequence
// number and port (nothing with -silent) and closes. With -idle N it instead holds N open,
// silent connections until standard input closes; with -journal N it writes N of spip's journald
// entries straight to journald (its ingest rate). It prints one JSON object with the counts.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Result is what one run reports; pkg/test/bench reads it.
type Result struct {
	Mode          string  `json:"mode"` // rate, burst, silent or idle
	TargetRate    float64 `json:"target_rate,omitempty"`
	Attempted     int     `json:"attempted"`
	Connected     int     `json:"connected"`
	ConnectFailed int     `json:"connect_failed"`
	SendSeconds   float64 `json:"send_seconds"`
	OfferedRate   float64 `json:"offered_rate"` // connected per second of sending
	Recorded      int     `json:"recorded"`
	Lost          int     `json:"lost"`
	Duplicated    int     `json:"duplicated"`
	WrongPort     int     `json:"wrong_port"`
	// WrongSourcePort counts records whose source port is not the one the client connected
	// from: NAT rewrote it (redirect mode, a client port that returns while conntrack remembers it).
	WrongSourcePort int     `json:"wrong_source_port"`
	WaitSeconds     float64 `json:"wait_seconds"` // from the last connection to the last record
	FirstError      string  `json:"first_error,omitempty"`
	// GenCPU is this process's CPU seconds while sending: near SendSeconds means the generator's
	// core, not the sensor, set the pace.
	GenCPU float64 `json:"gen_cpu_seconds"`
}

type options struct {
	v4, v6      netip.Addr
	rate        float64
	duration    time.Duration
	count       int
	concurrency int
	silent      bool
	idle        int
	records     string
	wait        time.Duration
	tag         string
	// mix: the first bytes of a real client's payload (a TLS ClientHello, an HTTP request, an
	// SSH banner, random bytes), one per connection in turn, before the unique marker line.
	mix [][]byte
}

// prefix is what connection i sends before its marker.
func (o *options) prefix(i int) []byte {
	if len(o.mix) == 0 {
		return nil
	}
	return o.mix[i%len(o.mix)]
}

func main() {
	var o options
	var v4, v6 string
	flag.StringVar(&v4, "v4", "198.51.100.2", "the sensor's IPv4 address (empty: none)")
	flag.StringVar(&v6, "v6", "fd00:5be::2", "the sensor's IPv6 address (empty: none)")
	flag.Float64Var(&o.rate, "rate", 0, "connections per second, paced; 0 is as fast as possible")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long to offer connections at -rate")
	flag.IntVar(&o.count, "count", 0, "connections to make (default rate × duration; required with -rate 0)")
	flag.IntVar(&o.concurrency, "concurrency", 2048, "connections in flight at most")
	flag.BoolVar(&o.silent, "silent", false, "send nothing: connect and close")
	flag.IntVar(&o.idle, "idle", 0, "hold this many silent connections open until standard input closes")
	flag.StringVar(&o.records, "records", "", "the sensor's JSON lines file to check (read from its size at start)")
	flag.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait at most for the records")
	flag.StringVar(&o.tag, "tag", "", "a word in every payload that tells this run from others (default: random)")
	var mix string
	flag.StringVar(&mix, "mix", "", "comma-separated files whose bytes connections send in turn before their marker; \"random\" is 64 random bytes")
	journal := flag.Int("journal", 0, "instead of connections, write this many of spip's connection entries straight to journald, as fast as it takes them")
	flag.Parse()
	for _, f := range strings.Split(mix, ",") {
		switch f {
		case "":
		case "random":
			b := make([]byte, 64)
			for i := range b {
				b[i] = byte(rand.Uint32())
			}
			o.mix = append(o.mix, b)
		default:
			b, err := os.ReadFile(f)
			if err != nil {
				fail(err)
			}
			o.mix = append(o.mix, b)
		}
	}
	var err error
	if v4 != "" {
		if o.v4, err = netip.ParseAddr(v4); err != nil {
			fail(err)
		}
	}
	if v6 != "" {
		if o.v6, err = netip.ParseAddr(v6); err != nil {
			fail(err)
		}
	}
	if o.tag == "" {
		o.tag = strconv.FormatUint(rand.Uint64(), 36)
	}
	var res Result
	if *journal > 0 {
		res, err = journalFlood(*journal, o.tag, "loadgen")
	} else if o.idle > 0 {
		res, err = idle(o)
	} else {
		res, err = offer(o)
	}
	if err != nil {
		fail(err)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "spip-loadgen:", err)
	os.Exit(1)
}

func (o options) target(i int) (netip.AddrPort, error) {
	addr := o.v4
	if !addr.IsValid() || (o.v6.IsValid() && i%2 == 1) {
		addr = o.v6
	}
	if !addr.IsValid() {
		return netip.AddrPort{}, errors.New("no sensor address (-v4, -v6)")
	}
	port := uint16(1 + rand.IntN(65535))
	for port == 22 { // the redirect leaves SSH alone
		port = uint16(1 + rand.IntN(65535))
	}
	return netip.AddrPortFrom(addr, port), nil
}

// Connection states, by sequence number.
const (
	stNone uint8 = iota
	stSent
	stFailed
)

func offer(o options) (Result, error) {
	res := Result{Mode: "burst", TargetRate: o.rate}
	n := o.count
	if o.rate > 0 {
		res.Mode = "rate"
		if n == 0 {
			n = int(o.rate * o.duration.Seconds())
		}
	}
	if o.silent {
		res.Mode = "silent"
	}
	if n <= 0 {
		return res, errors.New("nothing to do: give -count, or -rate and -duration")
	}
	offset := int64(-1)
	if o.records != "" {
		st, err := os.Stat(o.records)
		if err != nil {
			return res, err
		}
		offset = st.Size()
	}

	state := make([]uint8, n)
	ports := make([]uint16, n)
	e := &engine{o: o, state: state, ports: ports}
	start := time.Now()
	cpu0 := cpuSeconds()
	if err := e.run(n); err != nil {
		return res, err
	}
	res.GenCPU = cpuSeconds() - cpu0
	res.Attempted = n
	sent := time.Now()
	res.SendSeconds = sent.Sub(start).Seconds()
	for _, s := range state {
		if s == stSent {
			res.Connected++
		} else {
			res.ConnectFailed++
		}
	}
	res.OfferedRate = float64(res.Connected) / res.SendSeconds
	res.FirstError = e.errMsg
	if offset >= 0 {
		if err := check(o, offset, state, ports, &res, sent); err != nil {
			return res, err
		}
	}
	return res, nil
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func payloadTo(b []byte, tag string, i int, port uint16, sport int) []byte {
	return fmt.Appendf(b, "spipbench %s %d %d %d\r\n", tag, i, port, sport)
}

// line is what the check reads of a record: the fields of the original spip that both the
// sensor and the ceiling write.
type line struct {
	Payload         string `json:"payload"`
	SourceIP        string `json:"source_ip"`
	SourcePort      int    `json:"source_port"`
	DestinationPort uint16 `json:"destination_port"`
	Event           string `json:"event"`
}

// check reads the records written since offset until every sent connection is accounted for,
// no new one has come for a while, or o.wait has passed.
func check(o options, offset int64, state []uint8, ports []uint16, res *Result, sent time.Time) error {
	f, err := os.Open(o.records)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	seen := make([]uint8, len(state))
	portsLeft := map[uint16]int{} // silent runs: which destination ports are still owed a record
	if o.silent {
		for i, s := range state {
			if s == stSent {
				portsLeft[ports[i]]++
			}
		}
	}
	want := res.Connected
	prefix := "spipbench " + o.tag + " "
	clients := map[string]bool{}
	for _, c := range []string{"198.51.100.1", "fd00:5be::1"} {
		clients[c] = true
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var partial []byte
	last := time.Now()
	deadline := sent.Add(o.wait)
	for res.Recorded < want && time.Now().Before(deadline) && time.Since(last) < 5*time.Second {
		chunk, err := r.ReadBytes('\n')
		if err == io.EOF || (err == nil && len(chunk) == 0) {
			partial = append(partial, chunk...)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			return err
		}
		if len(partial) > 0 {
			chunk = append(partial, chunk...)
			partial = nil
		}
		var l line
		if json.Unmarshal(chunk, &l) != nil || (l.Event != "" && l.Event != "connection") {
			continue
		}
		if o.silent {
			if l.Payload != "" || !clients[l.SourceIP] {
				continue
			}
			res.Recorded++
			last = time.Now()
			if portsLeft[l.DestinationPort] > 0 {
				portsLeft[l.DestinationPort]--
			} else {
				res.WrongPort++ // or a duplicate: a silent connection carries no sequence number
			}
			continue
		}
		i := strings.Index(l.Payload, prefix) // after the mix's bytes, if any
		if i < 0 {
			continue
		}
		rest := l.Payload[i+len(prefix):]
		var seq, sport int
		var port uint16
		if _, err := fmt.Sscanf(rest, "%d %d %d", &seq, &port, &sport); err != nil || seq < 0 || seq >= len(state) {
			continue
		}
		last = time.Now()
		if seen[seq] > 0 {
			res.Duplicated++
			continue
		}
		seen[seq] = 1
		res.Recorded++
		if l.DestinationPort != port || port != ports[seq] {
			res.WrongPort++
		}
		if l.SourcePort != sport {
			res.WrongSourcePort++
		}
	}
	res.WaitSeconds = last.Sub(sent).Seconds()
	if res.WaitSeconds < 0 {
		res.WaitSeconds = 0
	}
	res.Lost = max(want-res.Recorded, 0)
	return nil
}

// idle holds n silent connections open, says "ready" on standard error, and closes them all
// when standard input reaches its end.
func idle(o options) (Result, error) {
	res := Result{Mode: "idle", Attempted: o.idle}
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
	conns := make([]net.Conn, 0, o.idle)
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i := 0; i < o.idle; i++ {
		dst, err := o.target(i)
		if err != nil {
			return res, err
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := d.Dial("tcp", dst.String())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.ConnectFailed++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	res.Connected = len(conns)
	res.SendSeconds = time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "ready %d\n", len(conns))
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return res, nil
}
