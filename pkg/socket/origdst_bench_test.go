package socket_test

import (
	"net"
	"testing"

	"spip/pkg/socket"
)

// BenchmarkDestination is the per-connection cost of asking the kernel for the original
// destination, which the sensor now does in every mode, on its slow path: SO_ORIGINAL_DST on a
// connection conntrack has no entry for (a direct one; in tproxy mode the first SYN's entry
// answers), then the local address. TestAB's tproxy A/B in BENCHMARKS.md measures the path
// the packaged set-up takes.
func BenchmarkDestination(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Skip(err)
	}
	defer ln.Close()
	fd, c := accepted(b, ln, func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) })
	peer := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr()
	b.Run("SO_ORIGINAL_DST", func(b *testing.B) {
		for b.Loop() {
			_, _ = socket.Redirected(fd, peer)
		}
	})
	b.Run("getsockname", func(b *testing.B) {
		for b.Loop() {
			_, _ = socket.Local(fd)
		}
	})
}
