package journald_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"spip/pkg/export"
	"spip/pkg/record"
	"spip/pkg/sink/journald"
)

// listen binds a unixgram socket standing in for journald's and returns it with its path.
func listen(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "socket")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

func receive(t *testing.T, c *net.UnixConn) []byte {
	t.Helper()
	buf := make([]byte, 1<<20)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := c.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("read the datagram: %v", err)
	}
	return buf[:n]
}

func connection(payload []byte) *record.Record {
	return &record.Record{
		Kind:          record.KindConnection,
		Time:          time.Unix(1700000000, 123456000),
		SessionID:     uuid.MustParse("0190e0f6-7d3c-7a5e-9e4b-6f1c2d3e4f50"),
		Source:        netip.MustParseAddrPort("198.51.100.1:40000"),
		Destination:   netip.MustParseAddrPort("198.51.100.2:23"),
		Payload:       payload,
		BytesReceived: uint64(len(payload)),
		Close:         record.CloseEOF,
	}
}

// TestSendAndDecode sends hostile payloads through a real Writer and socket and checks, on the
// decoded datagram, that each byte stays inside SPIP_PAYLOAD and no field can be forged.
func TestSendAndDecode(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"text", []byte("GET / HTTP/1.1")},
		{"crlf", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"nul", []byte("a\x00b\x00")},
		{"high bytes", []byte{0xff, 0xfe, 0x00, 0x80, '\r'}},
		{"cr only", []byte("a\rMESSAGE_ID=0000")},
		{"message id injection", []byte("x\nMESSAGE_ID=fc2e22bc6ee647b6b90729ab34a250b1\n")},
		{"priority injection", []byte("\nPRIORITY=0\n")},
		{"trusted field injection", []byte("_SYSTEMD_UNIT=x\n_PID=1")},
		{"leading newline field", []byte("\nSYSLOG_IDENTIFIER=sshd")},
		{"fake binary frame", append([]byte("SPIP_PAYLOAD\n"), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '\n')},
		{"only newlines", []byte("\n\n\n")},
		{"payload field name", []byte("SPIP_PAYLOAD=x\nSPIP_SOURCE_IP=203.0.113.9")},
	}
	c, path := listen(t)
	w, err := journald.Dial(path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	enc := record.NewEncoder("sensor\nMESSAGE_ID=forged")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := connection(tt.payload)
			if err := w.Write(enc.AppendJournal(nil, r)); err != nil {
				t.Fatal(err)
			}
			fields, err := export.ParseDatagram(receive(t, c))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			count := map[string]int{}
			values := map[string][]byte{}
			for _, f := range fields {
				if !export.ValidName(string(f.Name)) {
					t.Errorf("field name %q is not valid: journald would drop it", f.Name)
				}
				count[string(f.Name)]++
				values[string(f.Name)] = f.Value
			}
			for name, n := range count {
				if n != 1 {
					t.Errorf("field %s sent %d times", name, n)
				}
			}
			want := map[string]string{
				"MESSAGE_ID":            record.KindConnection.MessageID(),
				"PRIORITY":              "6",
				"SYSLOG_IDENTIFIER":     "spip",
				"SPIP_EVENT":            "connection",
				"SPIP_PAYLOAD":          string(tt.payload),
				"SPIP_SOURCE_IP":        "198.51.100.1",
				"SPIP_SOURCE_PORT":      "40000",
				"SPIP_DESTINATION_IP":   "198.51.100.2",
				"SPIP_DESTINATION_PORT": "23",
				"SPIP_SESSION_ID":       "0190e0f6-7d3c-7a5e-9e4b-6f1c2d3e4f50",
				"SPIP_SENSOR":           "sensor\nMESSAGE_ID=forged",
				"SPIP_TRANSPORT":        "tcp",
				"SPIP_CLOSE_REASON":     "eof",
				"SPIP_TIMESTAMP":        "1700000000",
			}
			for name, v := range want {
				if got, ok := values[name]; !ok || string(got) != v {
					t.Errorf("%s = %q (present %v), want %q", name, got, ok, v)
				}
			}
			if got := string(values["SPIP_PAYLOAD_HEX"]); got != hexOf(tt.payload) {
				t.Errorf("SPIP_PAYLOAD_HEX = %q", got)
			}
			msg := values["MESSAGE"]
			if bytes.ContainsAny(msg, "\n\r\x00") {
				t.Errorf("MESSAGE %q is not one clean line", msg)
			}
			if want := "198.51.100.1:40000 -> 198.51.100.2:23/tcp"; !strings.HasPrefix(string(msg), want) {
				t.Errorf("MESSAGE %q does not start with %q", msg, want)
			}
			if len(tt.payload) > 3 && bytes.Contains(msg, tt.payload) {
				t.Errorf("MESSAGE %q holds payload bytes", msg)
			}
		})
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

// TestEventFields checks an event record: its fields come from the Key list, a message with
// control characters stays on one line, and the kind's MESSAGE_ID and PRIORITY go out.
func TestEventFields(t *testing.T) {
	c, path := listen(t)
	w, err := journald.Dial(path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r := &record.Record{
		Kind: record.KindSummary, Time: time.Unix(1700000000, 0),
		Message: "journald sink lost 3\nMESSAGE_ID=x",
		Fields: []record.Field{
			record.Str(record.KeySink, "journald"),
			record.Int(record.KeyDropped, 3),
			record.Str(record.KeyReason, "queue full\nPRIORITY=0"),
		},
	}
	if err := w.Write(record.NewEncoder("s").AppendJournal(nil, r)); err != nil {
		t.Fatal(err)
	}
	fields, err := export.ParseDatagram(receive(t, c))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range fields {
		if !export.ValidName(string(f.Name)) {
			t.Errorf("invalid field name %q", f.Name)
		}
		if _, dup := got[string(f.Name)]; dup {
			t.Errorf("field %s twice", f.Name)
		}
		got[string(f.Name)] = string(f.Value)
	}
	want := map[string]string{
		"MESSAGE":      "journald sink lost 3 MESSAGE_ID=x",
		"MESSAGE_ID":   record.KindSummary.MessageID(),
		"PRIORITY":     "4",
		"SPIP_EVENT":   "summary",
		"SPIP_SINK":    "journald",
		"SPIP_DROPPED": "3",
		"SPIP_REASON":  "queue full\nPRIORITY=0",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// TestEveryKeyIsValid: no record key may become a field journald silently drops.
func TestEveryKeyIsValid(t *testing.T) {
	for _, f := range record.Fields {
		k := f.Key
		if !export.ValidName(k.JournalName()) {
			t.Errorf("key %q → %q is not a valid journald field name", k, k.JournalName())
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"MESSAGE", true},
		{"SPIP_PAYLOAD_HEX", true},
		{"A1_", true},
		{strings.Repeat("A", 64), true},
		{strings.Repeat("A", 65), false},
		{"", false},
		{"_SYSTEMD_UNIT", false},
		{"1BAD", false},
		{"bad_name", false},
		{"SPIP-X", false},
		{"SPIP X", false},
		{"SPIP\n", false},
	}
	for _, tt := range tests {
		if got := export.ValidName(tt.name); got != tt.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"no end", "MESSAGE"},
		{"no newline", "MESSAGE=x"},
		{"short length", "A\n\x01\x00"},
		{"length past end", "A\n\xff\x00\x00\x00\x00\x00\x00\x00x\n"},
		{"no newline after binary", "A\n\x01\x00\x00\x00\x00\x00\x00\x00xy"},
		{"huge length", "A\n\xff\xff\xff\xff\xff\xff\xff\xffx\n"},
	}
	for _, tt := range tests {
		if _, err := export.ParseDatagram([]byte(tt.in)); err == nil {
			t.Errorf("%s: Parse(%q) succeeded", tt.name, tt.in)
		}
	}
}

// TestWriteTimeout: a journald that stops reading costs the writer a bounded wait and an
// ErrTimeout, never a hang; once it reads again, writes go through.
func TestWriteTimeout(t *testing.T) {
	c, path := listen(t)
	_ = c.SetReadBuffer(4096)
	w, err := journald.Dial(path, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	entry := record.NewEncoder("s").AppendJournal(nil, connection(bytes.Repeat([]byte("x"), 1024)))
	sent := 0
	for ; sent < 100000; sent++ {
		err = w.Write(entry)
		if err != nil {
			break
		}
	}
	if !errors.Is(err, journald.ErrTimeout) {
		t.Fatalf("after %d entries to a reader that does not read: err %v, want ErrTimeout", sent, err)
	}
	t.Logf("the stalled socket took %d entries before the writer timed out", sent)
	for i := 0; i < sent; i++ {
		receive(t, c)
	}
	if err := w.Write(entry); err != nil {
		t.Fatalf("after the reader drained: %v", err)
	}
	if _, err := export.ParseDatagram(receive(t, c)); err != nil {
		t.Fatal(err)
	}
}

// TestNoSocket: a journald that is not there is an error, not a timeout and not a hang.
func TestNoSocket(t *testing.T) {
	w, err := journald.Dial(filepath.Join(t.TempDir(), "none"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	err = w.Write([]byte("MESSAGE=x\n"))
	if err == nil || errors.Is(err, journald.ErrTimeout) {
		t.Fatalf("write to a missing socket: %v", err)
	}
	if journald.Available(filepath.Join(t.TempDir(), "none")) {
		t.Error("Available says yes for a missing socket")
	}
}

// TestWriteBatch: a batch longer than one system call's worth arrives as one datagram per entry,
// in order, byte for byte, hostile payloads included.
func TestWriteBatch(t *testing.T) {
	c, path := listen(t)
	w, err := journald.Dial(path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	enc := record.NewEncoder("s")
	n := 2*journald.MaxBatch + 7
	var entries [][]byte
	for i := 0; i < n; i++ {
		p := []byte(strings.Repeat("\nSPIP_FORGED=1\x00\xff", i%5) + string(rune('a'+i%26)))
		entries = append(entries, enc.AppendJournal(nil, connection(p)))
	}
	got := make(chan [][]byte)
	go func() {
		var out [][]byte
		buf := make([]byte, 1<<20)
		for len(out) < n {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			m, _, err := c.ReadFromUnix(buf)
			if err != nil {
				break
			}
			out = append(out, bytes.Clone(buf[:m]))
		}
		got <- out
	}()
	sent, err := w.WriteBatch(entries)
	if err != nil || sent != n {
		t.Fatalf("WriteBatch: %d sent, %v", sent, err)
	}
	out := <-got
	if len(out) != n {
		t.Fatalf("%d datagrams, want %d", len(out), n)
	}
	for i := range out {
		if !bytes.Equal(out[i], entries[i]) {
			t.Fatalf("datagram %d differs from its entry", i)
		}
		if _, err := export.ParseDatagram(out[i]); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
}

// TestWriteBatchTimeout: a batch to a journald that stops reading returns within the timeout
// with ErrTimeout and the count of entries the socket took; the rest go through once it reads.
func TestWriteBatchTimeout(t *testing.T) {
	c, path := listen(t)
	_ = c.SetReadBuffer(4096)
	w, err := journald.Dial(path, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	entry := record.NewEncoder("s").AppendJournal(nil, connection(bytes.Repeat([]byte("x"), 1024)))
	entries := make([][]byte, 100000)
	for i := range entries {
		entries[i] = entry
	}
	start := time.Now()
	sent, err := w.WriteBatch(entries)
	if !errors.Is(err, journald.ErrTimeout) || sent >= len(entries) {
		t.Fatalf("to a reader that does not read: %d sent, err %v, want ErrTimeout", sent, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the batch took %v with a 50ms timeout", d)
	}
	t.Logf("the stalled socket took %d entries before the batch timed out", sent)
	for i := 0; i < sent; i++ {
		receive(t, c)
	}
	if n, err := w.WriteBatch(entries[:3]); n != 3 || err != nil {
		t.Fatalf("after the reader drained: %d sent, %v", n, err)
	}
	if _, err := export.ParseDatagram(receive(t, c)); err != nil {
		t.Fatal(err)
	}
}

// TestWriteBatchNoSocket: a journald that is not there fails the first entry with an error that
// is not a timeout.
func TestWriteBatchNoSocket(t *testing.T) {
	w, err := journald.Dial(filepath.Join(t.TempDir(), "none"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	n, err := w.WriteBatch([][]byte{[]byte("MESSAGE=x\n"), []byte("MESSAGE=y\n")})
	if n != 0 || err == nil || errors.Is(err, journald.ErrTimeout) {
		t.Fatalf("batch to a missing socket: %d sent, %v", n, err)
	}
}

// TestJournaldRestart: journald restarting (its socket removed and bound anew: another inode)
// costs no entry: the writer connects to the new socket and sends the entry there.
func TestJournaldRestart(t *testing.T) {
	c, path := listen(t)
	w, err := journald.Dial(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write([]byte("MESSAGE=before\n")); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, c); string(got) != "MESSAGE=before\n" {
		t.Fatalf("got %q", got)
	}
	c.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c2, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := w.Write([]byte("MESSAGE=after\n")); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if got := receive(t, c2); string(got) != "MESSAGE=after\n" {
		t.Fatalf("after the restart got %q", got)
	}
}
