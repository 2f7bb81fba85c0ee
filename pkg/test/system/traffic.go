package system

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"spip/pkg/test/netns"
)

// Sent is one connection the client made: what spip must record for it.
type Sent struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// Client opens connections from the client namespace. Every connection gets its own source port,
// never reused in a run, so a record is matched to its connection by source address alone.
type Client struct {
	ns       string
	port     atomic.Uint32
	lowPorts atomic.Uint32
}

// NewClient returns a client sending from namespace ns.
func NewClient(ns string) *Client {
	c := &Client{ns: ns}
	// Below the ephemeral range (32768+), so no port the kernel picks can collide with ours.
	c.port.Store(10000)
	c.lowPorts.Store(900)
	return c
}

// Dial connects from the client namespace to dst from a fresh source port.
func (c *Client) Dial(dst netip.AddrPort) (*net.TCPConn, netip.AddrPort, error) {
	port, err := c.NewPort()
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return c.dialFrom(port, dst, false)
}

// NewPort hands out a source port no other connection of the run uses.
func (c *Client) NewPort() (uint16, error) {
	port := c.port.Add(1)
	if port > 32000 {
		return 0, fmt.Errorf("client: out of source ports")
	}
	return uint16(port), nil
}

// NewLowPort hands out a source port from 901-1023 for connections that reuse it. NAT keeps a
// port it rewrites in the same class (600-1023 for these), so the ports redirect mode gives
// their flows instead can never be a port NewPort hands out, and records stay matched by source.
func (c *Client) NewLowPort() (uint16, error) {
	port := c.lowPorts.Add(1)
	if port > 1023 {
		return 0, fmt.Errorf("client: out of low source ports")
	}
	return uint16(port), nil
}

// SendFrom is Send from a given source port, which earlier connections may have used (to
// other destinations), as scanners with a fixed source port do.
func (c *Client) SendFrom(port uint16, dst netip.AddrPort, payload []byte) (Sent, error) {
	conn, src, err := c.dialFrom(port, dst, true)
	if err != nil {
		return Sent{Src: src, Dst: dst}, err
	}
	defer conn.Close()
	if _, err := conn.Write(payload); err != nil {
		return Sent{Src: src, Dst: dst}, fmt.Errorf("write to %s: %w", dst, err)
	}
	return Sent{Src: src, Dst: dst, Payload: payload}, nil
}

// dialFrom connects to dst from source port port; reuse sets SO_REUSEADDR, since the port's
// previous connection may still be in TIME_WAIT.
func (c *Client) dialFrom(port uint16, dst netip.AddrPort, reuse bool) (*net.TCPConn, netip.AddrPort, error) {
	local := netns.ClientV4
	if dst.Addr().Is6() {
		local = netns.ClientV6
	}
	src := netip.AddrPortFrom(local, port)
	var conn net.Conn
	err := netns.In(c.ns, func() error {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(src), Timeout: 5 * time.Second}
		if reuse {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				}); err != nil {
					return err
				}
				return serr
			}
		}
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
