// Command spip-ceiling is the reference sensor of `make bench`: a deliberately naive accept loop
// (a goroutine and a 4 KiB buffer per connection, one read, json.Marshal, a mutex-guarded
// buffered writer) whose speed on a machine is the ceiling spip is measured against. With
// -journald it writes each record to journald instead, the naive way: go-systemd's journal.Send
// of a map of fields, blocking, under a mutex. With -native it writes each record itself as one
// native-protocol datagram, synchronously from the connection's goroutine: the naive native
// writer spip's journald sink is measured against.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/google/uuid"

	"spip/pkg/socket"
)

// rec has the original spip's fields and value types.
type rec struct {
	Timestamp       int64  `json:"timestamp"`
	Payload         string `json:"payload"`
	PayloadHex      string `json:"payload_hex"`
	SourceIP        string `json:"source_ip"`
	SourcePort      uint16 `json:"source_port"`
	DestinationIP   string `json:"destination_ip"`
	DestinationPort uint16 `json:"destination_port"`
	SessionID       string `json:"session_id"`
}

type out struct {
	mu sync.Mutex
	w  *bufio.Writer
}

// jout is the journald output: one journal.Send per record, serialized like the JSON writer.
type jout struct{ mu sync.Mutex }

func (j *jout) send(r rec) {
	vars := map[string]string{
		"SYSLOG_IDENTIFIER":     "spip-ceiling",
		"SPIP_TIMESTAMP":        strconv.FormatInt(r.Timestamp, 10),
		"SPIP_PAYLOAD":          r.Payload,
		"SPIP_PAYLOAD_HEX":      r.PayloadHex,
		"SPIP_SOURCE_IP":        r.SourceIP,
		"SPIP_SOURCE_PORT":      strconv.Itoa(int(r.SourcePort)),
		"SPIP_DESTINATION_IP":   r.DestinationIP,
		"SPIP_DESTINATION_PORT": strconv.Itoa(int(r.DestinationPort)),
		"SPIP_SESSION_ID":       r.SessionID,
	}
	msg := fmt.Sprintf("connection from %s port %d to %s port %d", r.SourceIP, r.SourcePort, r.DestinationIP, r.DestinationPort)
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := journal.Send(msg, journal.PriInfo, vars); err != nil {
		fmt.Fprintln(os.Stderr, "spip-ceiling: journal:", err)
	}
}

// nout is the naive native-protocol output: one shared datagram socket to journald, and per
// record one entry built with fmt and a bytes.Buffer and sent at once by the connection's own
// goroutine. Eleven fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and the original's eight, the
// payload both as its bytes (binary form when it holds a newline) and as hex.
type nout struct{ conn *net.UnixConn }

func dialNative(path string) (*nout, error) {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	return &nout{conn: c}, nil
}

func (n *nout) send(r rec) {
	var b bytes.Buffer
	field := func(name, value string) {
		if strings.IndexByte(value, '\n') < 0 {
			fmt.Fprintf(&b, "%s=%s\n", name, value)
			return
		}
		b.WriteString(name)
		b.WriteByte('\n')
		binary.Write(&b, binary.LittleEndian, uint64(len(value)))
		b.WriteString(value)
		b.WriteByte('\n')
	}
	field("MESSAGE", fmt.Sprintf("connection from %s port %d to %s port %d", r.SourceIP, r.SourcePort, r.DestinationIP, r.DestinationPort))
	field("PRIORITY", "6")
	field("SYSLOG_IDENTIFIER", "spip-ceiling")
	field("SPIP_TIMESTAMP", strconv.FormatInt(r.Timestamp, 10))
	field("SPIP_PAYLOAD", r.Payload)
	field("SPIP_PAYLOAD_HEX", r.PayloadHex)
	field("SPIP_SOURCE_IP", r.SourceIP)
	field("SPIP_SOURCE_PORT", strconv.Itoa(int(r.SourcePort)))
	field("SPIP_DESTINATION_IP", r.DestinationIP)
	field("SPIP_DESTINATION_PORT", strconv.Itoa(int(r.DestinationPort)))
	field("SPIP_SESSION_ID", r.SessionID)
	if _, err := n.conn.Write(b.Bytes()); err != nil {
		fmt.Fprintln(os.Stderr, "spip-ceiling: journal:", err)
	}
}

func (o *out) line(b []byte) {
	o.mu.Lock()
	o.w.Write(b)
	o.w.WriteByte('\n')
	o.mu.Unlock()
}

func (o *out) flush() {
	o.mu.Lock()
	o.w.Flush()
	o.mu.Unlock()
}

func main() {
	listen := flag.String("listen", "[::]:12345", "listen address (an IPv6 wildcard also takes IPv4)")
	path := flag.String("json", "-", "JSON lines output file, - for standard output")
	timeout := flag.Duration("timeout", 10*time.Second, "how long the one read waits for the first bytes")
	toJournal := flag.Bool("journald", false, "write each record to journald (journal.Send) instead of JSON lines")
	native := flag.Bool("native", false, "write each record to journald as one native-protocol datagram of its own instead of JSON lines")
	flag.Parse()
	var j *jout
	if *toJournal {
		j = &jout{}
	}
	var nat *nout
	if *native {
		var err error
		if nat, err = dialNative("/run/systemd/journal/socket"); err != nil {
			fmt.Fprintln(os.Stderr, "spip-ceiling:", err)
			os.Exit(1)
		}
	}

	f := os.Stdout
	if *path != "-" {
		var err error
		if f, err = os.OpenFile(*path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err != nil {
			fmt.Fprintln(os.Stderr, "spip-ceiling:", err)
			os.Exit(1)
		}
	}
	o := &out{w: bufio.NewWriterSize(f, 64<<10)}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "spip-ceiling:", err)
		os.Exit(1)
	}
	// A reader polling the file sees records within a tick, as it would with a line-buffered sink.
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			o.flush()
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		ln.Close()
		o.flush()
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if strings.Contains(err.Error(), "use of closed") {
				select {} // the signal handler flushes and exits
			}
			continue
		}
		go handle(c.(*net.TCPConn), o, j, nat, *timeout)
	}
}

func handle(c *net.TCPConn, o *out, j *jout, nat *nout, timeout time.Duration) {
	defer c.Close()
	now := time.Now()
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	var dst netip.AddrPort
	if raw, err := c.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { dst, _ = socket.Redirected(int(fd), peer.Addr()) })
	}
	buf := make([]byte, 4096)
	c.SetReadDeadline(now.Add(timeout))
	n, _ := c.Read(buf)
	id, _ := uuid.NewRandom()
	r := rec{
		Timestamp:       now.Unix(),
		Payload:         string(buf[:n]),
		PayloadHex:      hex.EncodeToString(buf[:n]),
		SourceIP:        peer.Addr().String(),
		SourcePort:      peer.Port(),
		DestinationIP:   dst.Addr().Unmap().String(),
		DestinationPort: dst.Port(),
		SessionID:       id.String(),
	}
	if j != nil {
		j.send(r)
		return
	}
	if nat != nil {
		nat.send(r)
		return
	}
	b, err := json.Marshal(r)
	if err == nil {
		o.line(b)
	}
}
