// Package journald writes entries to journald's native protocol socket without ever blocking for long.
package journald

import (
	"encoding/binary"
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

// Writer sends one datagram per entry. Unlike go-systemd's journal.Send, its socket path is a
// parameter (tests read from their own socket) and every send has a deadline: a stalled journald
// costs the caller a bounded wait, never a hang.
type Writer struct {
	conn    *net.UnixConn
	addr    *net.UnixAddr
	timeout time.Duration
}

// ErrTimeout is returned when journald did not take an entry within the writer's timeout.
var ErrTimeout = errors.New("journald: send timed out")

// Dial prepares a writer for the socket at path. timeout bounds each Write.
func Dial(path string, timeout time.Duration) (*Writer, error) {
	// An unconnected socket: journald restarting (a new socket inode) needs no redial.
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("journald: socket: %w", err)
	}
	// A large send buffer lets short stalls queue in the kernel instead of in spip.
	_ = conn.SetWriteBuffer(8 << 20)
	return &Writer{conn: conn, addr: &net.UnixAddr{Name: path, Net: "unixgram"}, timeout: timeout}, nil
}

// Write sends one entry, already encoded in the native protocol.
func (w *Writer) Write(entry []byte) error {
	if w.timeout > 0 {
		_ = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	_, err := w.conn.WriteToUnix(entry, w.addr)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return ErrTimeout
		}
		return fmt.Errorf("journald: send: %w", err)
	}
	return nil
}

// Close releases the socket.
func (w *Writer) Close() error { return w.conn.Close() }

// Field is one decoded field of a native-protocol entry.
type Field struct {
	Name  string
	Value []byte
}

// Parse decodes one native-protocol datagram, as journald does: NAME=value lines, or NAME,
// a newline, a 64-bit little-endian length, the value and a newline.
func Parse(b []byte) ([]Field, error) {
	var out []Field
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '=' && b[i] != '\n' {
			i++
		}
		if i == len(b) {
			return out, errors.New("journald: field without end")
		}
		name := string(b[:i])
		if b[i] == '=' {
			rest := b[i+1:]
			j := 0
			for j < len(rest) && rest[j] != '\n' {
				j++
			}
			if j == len(rest) {
				return out, fmt.Errorf("journald: field %q without newline", name)
			}
			out = append(out, Field{name, append([]byte(nil), rest[:j]...)})
			b = rest[j+1:]
			continue
		}
		rest := b[i+1:]
		if len(rest) < 8 {
			return out, fmt.Errorf("journald: field %q: short length", name)
		}
		n := binary.LittleEndian.Uint64(rest)
		rest = rest[8:]
		if n > uint64(len(rest)) || uint64(len(rest))-n < 1 || rest[n] != '\n' {
			return out, fmt.Errorf("journald: field %q: bad binary length %d", name, n)
		}
		out = append(out, Field{name, append([]byte(nil), rest[:n]...)})
		b = rest[n+1:]
	}
	return out, nil
}

// ValidName reports whether journald accepts name from a client: 1-64 of [A-Z0-9_], not
// starting with a digit or an underscore.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 64 || name[0] == '_' || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
