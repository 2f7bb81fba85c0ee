package system

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Rec is one connection record as read back from journald or from the JSON mirror.
type Rec struct {
	Src, Dst    netip.AddrPort
	Payload     []byte // SPIP_PAYLOAD (journald: exact bytes; JSON: lossy UTF-8)
	PayloadHex  []byte // SPIP_PAYLOAD_HEX, decoded
	CloseReason string
	SessionID   string
	ByteArray   bool // journalctl printed SPIP_PAYLOAD as an array of byte values (not UTF-8)
	Raw         map[string]any
}

// Records reads spip's connection records with `journalctl -o json --all` (without --all,
// values over 4096 bytes print as null).
func (m *Machine) Records(t testing.TB) []Rec {
	t.Helper()
	return m.records(t, []string{"journalctl", "-o", "json", "--all", "--no-pager", "-t", "spip", "SPIP_EVENT=connection"})
}

func (m *Machine) records(t testing.TB, cmd []string) []Rec {
	t.Helper()
	out, err := m.RunTimeout(time.Minute, cmd...)
	if err != nil {
		t.Fatalf("journalctl: %v\n%s", err, tail([]byte(out), 10))
	}
	var recs []Rec
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" || line == "-- No entries --" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("journalctl -o json printed a line that is not JSON: %v\n%.300s", err, line)
		}
		r, err := journalRec(e)
		if err != nil {
			t.Fatalf("record %.500s: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func journalRec(e map[string]any) (Rec, error) {
	r := Rec{Raw: e}
	get := func(name string) string {
		b, err := journalValue(e[name])
		if err != nil {
			return ""
		}
		return string(b)
	}
	var err error
	if r.Src, err = addrPort(get("SPIP_SOURCE_IP"), get("SPIP_SOURCE_PORT")); err != nil {
		return r, fmt.Errorf("source: %w", err)
	}
	if r.Dst, err = addrPort(get("SPIP_DESTINATION_IP"), get("SPIP_DESTINATION_PORT")); err != nil {
		return r, fmt.Errorf("destination: %w", err)
	}
	_, r.ByteArray = e["SPIP_PAYLOAD"].([]any)
	if r.Payload, err = journalValue(e["SPIP_PAYLOAD"]); err != nil {
		return r, fmt.Errorf("SPIP_PAYLOAD: %w", err)
	}
	if r.PayloadHex, err = hex.DecodeString(get("SPIP_PAYLOAD_HEX")); err != nil {
		return r, fmt.Errorf("SPIP_PAYLOAD_HEX: %w", err)
	}
	if _, isString := e["SPIP_PAYLOAD_HEX"].(string); !isString {
		return r, fmt.Errorf("SPIP_PAYLOAD_HEX is %T, not text", e["SPIP_PAYLOAD_HEX"])
	}
	r.CloseReason, r.SessionID = get("SPIP_CLOSE_REASON"), get("SPIP_SESSION_ID")
	return r, nil
}

// journalValue decodes one field of `journalctl -o json`: text prints as a string, anything that
// is not UTF-8 as an array of byte values; a missing field (nil) is empty. A field that appears
// twice in one entry prints as an array of values, which a record must never have.
func journalValue(v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []byte(v), nil
	case []any:
		b := make([]byte, 0, len(v))
		for _, x := range v {
			n, ok := x.(float64)
			if !ok || n < 0 || n > 255 || n != float64(int(n)) {
				return nil, fmt.Errorf("array element %v is not a byte (a repeated field?)", x)
			}
			b = append(b, byte(n))
		}
		return b, nil
	}
	return nil, fmt.Errorf("unexpected JSON %T", v)
}

func addrPort(ip, port string) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// JSONRecords reads the connection records of the JSON lines mirror at path in the container.
func (m *Machine) JSONRecords(t testing.TB, path string) []Rec {
	t.Helper()
	out := m.Exec(t, "cat", path)
	var recs []Rec
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		// The mirror follows the original's value types: ports and timestamp are JSON numbers.
		var e struct {
			Event      string `json:"event"`
			SrcIP      string `json:"source_ip"`
			SrcPort    *int   `json:"source_port"`
			DstIP      string `json:"destination_ip"`
			DstPort    *int   `json:"destination_port"`
			Payload    string `json:"payload"`
			PayloadHex string `json:"payload_hex"`
			Close      string `json:"close_reason"`
			SessionID  string `json:"session_id"`
			Timestamp  *int64 `json:"timestamp"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%s: a line that is not a record: %v\n%.300s", path, err, line)
		}
		if e.Event != "connection" {
			continue
		}
		if e.SrcPort == nil || e.DstPort == nil || e.Timestamp == nil {
			t.Fatalf("%s: source_port, destination_port and timestamp must be JSON numbers:\n%.300s", path, line)
		}
		var raw map[string]any
		_ = json.Unmarshal([]byte(line), &raw)
		r := Rec{Payload: []byte(e.Payload), CloseReason: e.Close, SessionID: e.SessionID, Raw: raw}
		var err error
		if r.Src, err = addrPort(e.SrcIP, strconv.Itoa(*e.SrcPort)); err != nil {
			t.Fatalf("%s: source: %v", path, err)
		}
		if r.Dst, err = addrPort(e.DstIP, strconv.Itoa(*e.DstPort)); err != nil {
			t.Fatalf("%s: destination: %v", path, err)
		}
		if r.PayloadHex, err = hex.DecodeString(e.PayloadHex); err != nil {
			t.Fatalf("%s: payload_hex: %v", path, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// WaitRecorded polls read until every sent connection has a record (or a minute passes), then
// checks each was recorded exactly once with its source, original destination and payload.
// It returns the records by source.
func WaitRecorded(t testing.TB, what string, lossy bool, read func() []Rec, sent []Sent) map[netip.AddrPort]Rec {
	t.Helper()
	want := map[netip.AddrPort]Sent{}
	for _, s := range sent {
		want[s.Src] = s
	}
	var got map[netip.AddrPort][]Rec
	deadline := time.Now().Add(time.Minute)
	for {
		got = map[netip.AddrPort][]Rec{}
		for _, r := range read() {
			if _, ok := want[r.Src]; ok {
				got[r.Src] = append(got[r.Src], r)
			}
		}
		if len(got) == len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	byKey := map[netip.AddrPort]Rec{}
	var missing, problems []string
	for _, s := range sent {
		rs := got[s.Src]
		switch {
		case len(rs) == 0:
			missing = append(missing, s.Src.String()+"→"+s.Dst.String())
			continue
		case len(rs) > 1:
			problems = append(problems, fmt.Sprintf("%s→%s recorded %d times", s.Src, s.Dst, len(rs)))
		}
		r := rs[0]
		byKey[s.Src] = r
		if r.Dst != s.Dst {
			problems = append(problems, fmt.Sprintf("%s: destination %s, want the original %s", s.Src, r.Dst, s.Dst))
		}
		if !bytes.Equal(r.PayloadHex, s.Payload) {
			problems = append(problems, fmt.Sprintf("%s→%s: payload_hex holds %d bytes %.40x…, want %d bytes %.40x…",
				s.Src, s.Dst, len(r.PayloadHex), r.PayloadHex, len(s.Payload), s.Payload))
		}
		if want := payloadText(s.Payload, lossy); !bytes.Equal(r.Payload, want) {
			problems = append(problems, fmt.Sprintf("%s→%s: payload %q…, want %q…", s.Src, s.Dst, trunc(r.Payload), trunc(want)))
		}
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d connections not recorded: %s", len(missing), len(sent), strings.Join(first(missing, 10), ", ")))
	}
	if len(problems) > 0 {
		t.Fatalf("%s records:\n%s", what, strings.Join(first(problems, 20), "\n"))
	}
	t.Logf("%s: %d of %d connections recorded exactly once, with source, original destination and payload", what, len(byKey), len(sent))
	return byKey
}

// payloadText is what the payload field must hold: the exact bytes in journald; in the JSON
// mirror (lossy) UTF-8 with each invalid byte replaced by U+FFFD, as encoding/json does.
func payloadText(p []byte, lossy bool) []byte {
	if !lossy {
		return p
	}
	var b []byte
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, p[:size]...)
		}
		p = p[size:]
	}
	return b
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("(%d more)", len(s)-n))
	}
	return s
}
