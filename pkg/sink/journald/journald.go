// Package journald writes entries to journald's native protocol socket without ever blocking for long.
package journald

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// SocketPath is journald's native protocol socket.
const SocketPath = "/run/systemd/journal/socket"

// Available reports whether journald's socket exists at path.
func Available(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// Writer sends one datagram per entry, a batch of them per system call. Unlike go-systemd's
// journal.Send, its socket path is a parameter (tests read from their own socket) and every send
// has a deadline: a stalled journald costs the caller a bounded wait, never a hang. The socket
// is connected to journald's and connects again when that socket is made anew (a new inode).
type Writer struct {
	conn    *net.UnixConn
	timeout time.Duration
	batch   *batcher
}

// ErrTimeout is returned when journald did not take an entry within the writer's timeout.
var ErrTimeout = errors.New("journald: send timed out")

// Dial prepares a writer for the socket at path. timeout bounds each Write.
func Dial(path string, timeout time.Duration) (*Writer, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("journald: socket: %w", err)
	}
	// A large send buffer lets short stalls queue in the kernel instead of in spip.
	_ = conn.SetWriteBuffer(8 << 20)
	b, err := newBatcher(conn, path)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &Writer{conn: conn, timeout: timeout, batch: b}, nil
}

// Write sends one entry, already encoded in the native protocol.
func (w *Writer) Write(entry []byte) error {
	_, err := w.WriteBatch([][]byte{entry})
	return err
}

// Close releases the socket.
func (w *Writer) Close() error { return w.conn.Close() }
