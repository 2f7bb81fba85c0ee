package systest

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"spip/pkg/nettest"
)

// Sent is one connection the client made: what spip must record for it.
type Sent struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// Client opens connections from the client namespace. Every connection gets its own source port,
// never reused in a run, so a record is matched to its connection by source address alone.
type Client struct {
	ns   string
	port atomic.Uint32
}

// NewClient returns a client sending from namespace ns.
func NewClient(ns string) *Client {
	c := &Client{ns: ns}
	// Below the ephemeral range (32768+), so no port the kernel picks can collide with ours.
	c.port.Store(10000)
	return c
}

// Dial connects from the client namespace to dst from a fresh source port.
func (c *Client) Dial(dst netip.AddrPort) (*net.TCPConn, netip.AddrPort, error) {
	local := nettest.ClientV4
	if dst.Addr().Is6() {
		local = nettest.ClientV6
	}
	port := c.port.Add(1)
	if port > 32000 {
		return nil, netip.AddrPort{}, fmt.Errorf("client: out of source ports")
	}
	src := netip.AddrPortFrom(local, uint16(port))
	var conn net.Conn
	err := nettest.In(c.ns, func() error {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(src), Timeout: 5 * time.Second}
		var err error
		conn, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, src, fmt.Errorf("dial %s from %s: %w", dst, src, err)
	}
	return conn.(*net.TCPConn), src, nil
}

// Send connects to dst, writes payload, waits hold and closes. It does not wait for the sensor:
// the data and the FIN wait in the socket (or in the listen backlog while spip restarts).
func (c *Client) Send(dst netip.AddrPort, payload []byte, hold time.Duration) (Sent, error) {
	conn, src, err := c.Dial(dst)
	if err != nil {
		return Sent{Src: src, Dst: dst}, err
	}
	defer conn.Close()
	s := Sent{Src: src, Dst: dst, Payload: payload}
	if len(payload) > 0 {
		if _, err := conn.Write(payload); err != nil {
			return s, fmt.Errorf("write to %s: %w", dst, err)
		}
	}
	time.Sleep(hold)
	return s, nil
}
