// Command spip-ceiling is the reference sensor of `make bench`: a deliberately naive accept loop
// (a goroutine and a 4 KiB buffer per connection, one read, json.Marshal, a mutex-guarded
// buffered writer) whose speed on a machine is the ceiling spip is measured against.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"spip/pkg/origdst"
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
	flag.Parse()

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
		go handle(c.(*net.TCPConn), o, *timeout)
	}
}

func handle(c *net.TCPConn, o *out, timeout time.Duration) {
	defer c.Close()
	now := time.Now()
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	var dst netip.AddrPort
	if raw, err := c.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { dst, _ = origdst.Redirected(int(fd), peer.Addr()) })
	}
	buf := make([]byte, 4096)
	c.SetReadDeadline(now.Add(timeout))
	n, _ := c.Read(buf)
	id, _ := uuid.NewRandom()
	b, err := json.Marshal(rec{
		Timestamp:       now.Unix(),
		Payload:         string(buf[:n]),
		PayloadHex:      hex.EncodeToString(buf[:n]),
		SourceIP:        peer.Addr().String(),
		SourcePort:      peer.Port(),
		DestinationIP:   dst.Addr().Unmap().String(),
		DestinationPort: dst.Port(),
		SessionID:       id.String(),
	})
	if err == nil {
		o.line(b)
	}
}
