package record

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"spip/pkg/export"
	"spip/pkg/protocol"
	"spip/pkg/protocol/communityid"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the current encoders")

const testSensor = "sensor-1"

// testTime has microseconds, so the golden files show the time field's precision.
var testTime = time.Date(2024, 3, 1, 12, 34, 56, 789012345, time.UTC)

var testID = uuid.MustParse("0190f5c8-7a3b-7c4d-8e9f-0a1b2c3d4e5f")

func conn(payload []byte, src, dst string) *Record {
	r := &Record{
		Kind:          KindConnection,
		Time:          testTime,
		SessionID:     testID,
		Source:        netip.MustParseAddrPort(src),
		Payload:       payload,
		BytesReceived: uint64(len(payload)),
		Duration:      1234567 * time.Microsecond,
		Close:         CloseEOF,
	}
	if dst != "" {
		r.Destination = netip.MustParseAddrPort(dst)
	}
	return r
}

// maxPayload is a payload of the largest cap the configuration allows (64 KiB). Printable, so the
// golden files stay a readable size: the binary and escaping cases are covered by small payloads.
func maxPayload() []byte {
	p := make([]byte, 65536)
	for i := range p {
		p[i] = "spip-payload-cap/"[i%17]
	}
	return p
}

func readFile(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return b
}

// facts fills r as the sensor does: what the payload is and the Community ID (seed 0).
func facts(r *Record) *Record {
	protocol.Identify(protocol.TCP, r.Payload, &r.Facts)
	r.CommunityID = communityid.Hash(0, communityid.TCP, r.Source, r.Destination)
	return r
}

type golden struct {
	name string
	rec  *Record
}

func goldenCases() []golden {
	with := func(r *Record, f func(*Record)) *Record { f(r); return r }
	return []golden{
		{"http_crlf_ipv4", conn([]byte("GET / HTTP/1.1\r\nHost: 198.51.100.2\r\n\r\n"), "203.0.113.7:40000", "198.51.100.2:80")},
		{"binary_tls", conn([]byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0xff, 0xfe, 0x80, 0x0a, 0x0d}, "203.0.113.7:40001", "198.51.100.2:443")},
		{"invalid_utf8", conn([]byte("ok \xff\xfe bad \xc3\x28 cut \xe2\x82 end"), "203.0.113.7:40002", "198.51.100.2:8080")},
		{"nul_bytes", conn([]byte("a\x00b\x00\x00c"), "203.0.113.7:40003", "198.51.100.2:23")},
		{"cr_lf_only", conn([]byte("\r\n\r\n\n\r"), "203.0.113.7:40004", "198.51.100.2:25")},
		{"escapes", conn([]byte("quote\" backslash\\ tab\t del\x7f bell\x07 ls\u2028 ps\u2029 <&> é ☃"), "203.0.113.7:40005", "198.51.100.2:6379")},
		{"injection", conn([]byte("x\nMESSAGE_ID=0ac47f5aa9004466bb382a7164e382ab\n_SYSTEMD_UNIT=evil.service\nPRIORITY=0\n"), "203.0.113.7:40006", "198.51.100.2:2323")},
		{"injection_no_newline", conn([]byte("_SYSTEMD_UNIT=x"), "203.0.113.7:40007", "198.51.100.2:2324")},
		{"empty_timeout", with(conn(nil, "203.0.113.7:40008", "198.51.100.2:3389"), func(r *Record) { r.Close = CloseTimeout })},
		{"max_size_truncated", with(conn(maxPayload(), "203.0.113.7:40009", "198.51.100.2:9000"), func(r *Record) {
			r.BytesReceived = 1 << 20
			r.Truncated = true
			r.Close = CloseLimit
		})},
		{"ipv6", conn([]byte("SSH-2.0-Go\r\n"), "[2001:db8::7]:51000", "[fd00:5be::2]:2222")},
		{"v4_mapped", conn([]byte("hello"), "[::ffff:203.0.113.9]:41000", "[::ffff:198.51.100.2]:8443")},
		{"missing_destination", with(conn([]byte("x"), "203.0.113.7:40010", ""), func(r *Record) {
			r.DestError = "origdst: getsockopt: protocol not available"
			r.Close = CloseReset
		})},
		{"overload", with(conn(nil, "[2001:db8::8]:1", "[2001:db8::1]:65535"), func(r *Record) { r.Close = CloseOverload; r.Duration = 0 })},
		{"shutdown", with(conn([]byte("partial"), "203.0.113.7:40011", "198.51.100.2:21"), func(r *Record) { r.Close = CloseShutdown })},
		{"facts_tls_curl", facts(conn(readFile("../protocol/tls/testdata/clienthello/curl_http2_sni.bin"), "203.0.113.7:40012", "198.51.100.2:443"))},
		{"facts_http_ipv6", facts(conn([]byte("GET /.env HTTP/1.1\r\nHost: [fd00:5be::2]:8080\r\nUser-Agent: Mozilla/5.0 \x1b[2J\r\n\r\n"), "[2001:db8::7]:51001", "[fd00:5be::2]:8080"))},
		{"facts_http_cut", facts(conn([]byte("GET /"+strings.Repeat("a/", 600)), "203.0.113.7:40013", "198.51.100.2:80"))},
		{"facts_ssh", facts(conn(readFile("../protocol/ssh/testdata/ssh_openssh.bin"), "203.0.113.7:40014", "198.51.100.2:2222"))},
		{"facts_alpn_escapes", with(conn([]byte("x"), "203.0.113.7:40015", "198.51.100.2:443"), func(r *Record) {
			r.Facts = protocol.Facts{Protocol: "tls", TLSSNI: "evil\n.example", TLSALPN: []string{"h2", "a,b", "50%", "\xff\x00"}, TLSVersion: "1.2", Cut: protocol.CutTLSALPN}
		})},
		{"event_started", &Record{Kind: KindStarted, Time: testTime, Message: "spip test recording connections on [::]:12345 (redirect mode)",
			Fields: []Field{Str(KeyVersion, "test"), Str(KeyListen, "[::]:12345"), Str(KeyMode, "redirect")}}},
		{"event_summary", &Record{Kind: KindSummary, Time: testTime, Message: "3 records dropped",
			Fields: []Field{Str(KeySink, "json"), Int(KeyDropped, 3), Int(KeyDroppedTotal, 10), Int(KeyIntervalSeconds, 60)}}},
		{"event_warning_multiline", &Record{Kind: KindWarning, Time: testTime, Message: "json sink failing:\nno space \"left\"",
			Fields: []Field{Str(KeySink, "json"), Str(KeyError, "write: no space\nleft on device")}}},
		{"event_stopping", &Record{Kind: KindStopping, Time: testTime, Message: "spip stopping", Fields: []Field{Int(KeyRecordedTotal, 42)}}},
	}
}

func TestGolden(t *testing.T) {
	enc := NewEncoder(testSensor)
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			js := enc.AppendJSON(nil, c.rec)
			jn := enc.AppendJournal(nil, c.rec)
			// Check meaning before bytes, so a golden file can't bless a wrong encoding.
			checkJSON(t, js, c.rec)
			checkJournal(t, jn, c.rec)
			compareGolden(t, filepath.Join("testdata", c.name+".json"), js)
			compareGolden(t, filepath.Join("testdata", c.name+".journal"), jn)
		})
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/record -run TestGolden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the encoder's output (rerun with -update if the change is intended)\n got %q\nwant %q",
			path, trim(got), trim(want))
	}
}

func trim(b []byte) []byte {
	if len(b) > 600 {
		return append(b[:600:600], "..."...)
	}
	return b
}

// Every key must reach journald: an invalid field name is dropped there without a word.
func TestFieldsValidJournalNames(t *testing.T) {
	seen := map[string]Key{}
	for _, f := range Fields {
		k := f.Key
		name := k.JournalName()
		if !export.ValidName(name) {
			t.Errorf("key %q gives invalid journald name %q", k, name)
		}
		if prev, ok := seen[name]; ok {
			t.Errorf("keys %q and %q share journald name %q", prev, k, name)
		}
		seen[name] = k
	}
	// The fixed fields the encoder writes besides SPIP_*.
	for _, name := range []string{"MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER"} {
		if !export.ValidName(name) {
			t.Errorf("%s is not a valid journald name", name)
		}
	}
}

// Every name the encoders write must be one of Fields, so the journald-name test above covers them.
func TestEncodersUseOnlyKnownKeys(t *testing.T) {
	known := map[string]bool{"MESSAGE": true, "MESSAGE_ID": true, "PRIORITY": true, "SYSLOG_IDENTIFIER": true}
	knownJSON := map[string]bool{}
	for _, f := range Fields {
		k := f.Key
		known[k.JournalName()] = true
		knownJSON[string(k)] = true
	}
	enc := NewEncoder(testSensor)
	for _, c := range goldenCases() {
		fields, err := export.ParseDatagram(enc.AppendJournal(nil, c.rec))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, f := range fields {
			if !known[string(f.Name)] {
				t.Errorf("%s: journald field %s is not in Fields", c.name, f.Name)
			}
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(enc.AppendJSON(nil, c.rec), &m); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for k := range m {
			if !knownJSON[k] {
				t.Errorf("%s: JSON key %s is not in Fields", c.name, k)
			}
		}
	}
}

func TestMessageIDs(t *testing.T) {
	seen := map[string]Kind{}
	for k := KindConnection; k <= KindWarning; k++ {
		id := k.MessageID()
		if len(id) != 32 || strings.ToLower(id) != id {
			t.Errorf("%s: MESSAGE_ID %q is not 32 lower-case hex digits", k, id)
		}
		if _, err := hex.DecodeString(id); err != nil {
			t.Errorf("%s: MESSAGE_ID %q: %v", k, id, err)
		}
		if prev, ok := seen[id]; ok {
			t.Errorf("%s and %s share MESSAGE_ID %s", prev, k, id)
		}
		seen[id] = k
	}
}

func TestCloseReasonNames(t *testing.T) {
	want := map[CloseReason]string{CloseEOF: "eof", CloseTimeout: "timeout", CloseReset: "reset", CloseLimit: "limit",
		CloseOverload: "overload", CloseShutdown: "shutdown", 200: "unknown"}
	for c, name := range want {
		if got := c.String(); got != name {
			t.Errorf("CloseReason(%d) = %q, want %q", c, got, name)
		}
	}
}

// connJSONKeys are the keys of a connection record, in order; destination_error only when set.
func connJSONKeys(r *Record) []string {
	keys := []string{"timestamp", "payload", "payload_hex", "source_ip", "source_port", "destination_ip",
		"destination_port", "session_id", "time", "transport", "bytes_received", "payload_truncated",
		"duration_ms", "close_reason"}
	if r.DestError != "" {
		keys = append(keys, "destination_error")
	}
	keys = append(keys, "sensor", "event")
	for _, kv := range factFields(r) {
		keys = append(keys, kv.key)
	}
	return keys
}

// factField is one protocol fact a record should carry, spelled out by hand (not from Fields).
type factField struct {
	key  string
	val  string
	list []string
}

func factFields(r *Record) []factField {
	f := r.Facts
	var out []factField
	add := func(k, v string) {
		if v != "" {
			out = append(out, factField{key: k, val: v})
		}
	}
	add("community_id", r.CommunityID)
	add("protocol", f.Protocol)
	add("tls_sni", f.TLSSNI)
	if len(f.TLSALPN) > 0 {
		out = append(out, factField{key: "tls_alpn", list: f.TLSALPN})
	}
	add("tls_version", f.TLSVersion)
	add("ja4", f.JA4)
	add("http_method", f.HTTPMethod)
	add("http_path", f.HTTPPath)
	add("http_version", f.HTTPVersion)
	add("http_host", f.HTTPHost)
	add("http_user_agent", f.HTTPUserAgent)
	add("ssh_banner", f.SSHBanner)
	add("hassh", f.HASSH)
	var cut []string
	for _, c := range []struct {
		bit protocol.Cut
		key string
	}{{protocol.CutTLSSNI, "tls_sni"}, {protocol.CutTLSALPN, "tls_alpn"}, {protocol.CutHTTPPath, "http_path"},
		{protocol.CutHTTPHost, "http_host"}, {protocol.CutHTTPUserAgent, "http_user_agent"}, {protocol.CutSSHBanner, "ssh_banner"}} {
		if f.Cut&c.bit != 0 {
			cut = append(cut, c.key)
		}
	}
	if len(cut) > 0 {
		out = append(out, factField{key: "fields_truncated", list: cut})
	}
	return out
}

// journalList is a list as journald holds it, escaped by hand: % and , inside a value.
func journalList(vs []string) string {
	var esc []string
	for _, v := range vs {
		esc = append(esc, strings.NewReplacer("%", "%25", ",", "%2C").Replace(v))
	}
	return strings.Join(esc, ",")
}

func connJournalNames(r *Record) []string {
	names := []string{"MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "SPIP_EVENT", "SPIP_TIMESTAMP",
		"SPIP_TIME", "SPIP_SENSOR", "SPIP_PAYLOAD", "SPIP_PAYLOAD_HEX", "SPIP_SOURCE_IP", "SPIP_SOURCE_PORT",
		"SPIP_DESTINATION_IP", "SPIP_DESTINATION_PORT", "SPIP_SESSION_ID", "SPIP_TRANSPORT",
		"SPIP_BYTES_RECEIVED", "SPIP_PAYLOAD_TRUNCATED", "SPIP_DURATION_MS", "SPIP_CLOSE_REASON"}
	if r.DestError != "" {
		names = append(names, "SPIP_DESTINATION_ERROR")
	}
	for _, kv := range factFields(r) {
		names = append(names, "SPIP_"+strings.ToUpper(kv.key))
	}
	return names
}

// jsonKeysInOrder returns the top-level keys of one JSON object in document order.
func jsonKeysInOrder(t testing.TB, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %q", trim(line))
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("JSON key: %v", err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("JSON value of %v: %v", tok, err)
		}
	}
	return keys
}

// checkJSON asserts that line is one valid JSON line that says what r says.
func checkJSON(t testing.TB, line []byte, r *Record) {
	t.Helper()
	if len(line) == 0 || line[len(line)-1] != '\n' || bytes.IndexByte(line, '\n') != len(line)-1 {
		t.Fatalf("not exactly one line: %q", trim(line))
	}
	if !json.Valid(line) {
		t.Fatalf("invalid JSON: %q", trim(line))
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	keys := jsonKeysInOrder(t, line)
	if len(keys) != len(m) {
		t.Errorf("duplicate keys in %q", trim(line))
	}
	num := func(k string) string {
		n, ok := m[k].(json.Number)
		if !ok {
			t.Errorf("%s = %#v, want a JSON integer", k, m[k])
		}
		return n.String()
	}
	str := func(k string) string {
		s, ok := m[k].(string)
		if !ok {
			t.Errorf("%s = %#v, want a JSON string", k, m[k])
		}
		return s
	}
	eq := func(k, got, want string) {
		if got != want {
			t.Errorf("%s = %q, want %q", k, trim([]byte(got)), trim([]byte(want)))
		}
	}
	eq("timestamp", num("timestamp"), itoa(r.Time.Unix()))
	eq("time", str("time"), r.Time.UTC().Format("2006-01-02T15:04:05.000000Z"))
	eq("sensor", str("sensor"), testSensor)
	if r.Kind != KindConnection {
		eq("event", str("event"), r.Kind.String())
		eq("message", str("message"), lossy(r.Message))
		want := []string{"timestamp", "time", "event", "message"}
		for _, f := range r.Fields {
			want = append(want, string(f.Key))
			if f.IsInt {
				eq(string(f.Key), num(string(f.Key)), itoa(f.Int))
			} else {
				eq(string(f.Key), str(string(f.Key)), lossy(f.Str))
			}
		}
		eq("keys", strings.Join(keys, ","), strings.Join(append(want, "sensor"), ","))
		return
	}
	eq("keys", strings.Join(keys, ","), strings.Join(connJSONKeys(r), ","))
	for _, kv := range factFields(r) {
		if kv.list == nil {
			eq(kv.key, str(kv.key), lossy(kv.val))
			continue
		}
		arr, ok := m[kv.key].([]any)
		if !ok || len(arr) != len(kv.list) {
			t.Errorf("%s = %#v, want an array of %d strings", kv.key, m[kv.key], len(kv.list))
			continue
		}
		for i, v := range arr {
			if s, _ := v.(string); s != lossy(kv.list[i]) {
				t.Errorf("%s[%d] = %#v, want %q", kv.key, i, v, lossy(kv.list[i]))
			}
		}
	}
	eq("payload", str("payload"), lossy(string(r.Payload)))
	hx := str("payload_hex")
	if raw, err := hex.DecodeString(hx); err != nil || !bytes.Equal(raw, r.Payload) {
		t.Errorf("payload_hex %q does not decode to the payload (%v)", trim([]byte(hx)), err)
	}
	eq("source_ip", str("source_ip"), r.Source.Addr().Unmap().String())
	eq("source_port", num("source_port"), itoa(int64(r.Source.Port())))
	wantDst := ""
	if r.Destination.IsValid() {
		wantDst = r.Destination.Addr().Unmap().String()
	}
	eq("destination_ip", str("destination_ip"), wantDst)
	eq("destination_port", num("destination_port"), itoa(int64(r.Destination.Port())))
	eq("session_id", str("session_id"), r.SessionID.String())
	eq("transport", str("transport"), "tcp")
	eq("bytes_received", num("bytes_received"), itoa(int64(r.BytesReceived)))
	if b, ok := m["payload_truncated"].(bool); !ok || b != r.Truncated {
		t.Errorf("payload_truncated = %#v, want %v", m["payload_truncated"], r.Truncated)
	}
	eq("duration_ms", num("duration_ms"), itoa(r.Duration.Milliseconds()))
	eq("close_reason", str("close_reason"), r.Close.String())
	if r.DestError != "" {
		eq("destination_error", str("destination_error"), lossy(r.DestError))
	}
	eq("event", str("event"), "connection")
}

// checkJournal asserts that entry parses into exactly the expected fields, payload bytes intact.
func checkJournal(t testing.TB, entry []byte, r *Record) {
	t.Helper()
	fields, err := export.ParseDatagram(entry)
	if err != nil {
		t.Fatalf("journald.Parse: %v in %q", err, trim(entry))
	}
	var names []string
	vals := map[string][]byte{}
	for _, f := range fields {
		if !export.ValidName(string(f.Name)) {
			t.Errorf("invalid field name %q", f.Name)
		}
		if _, dup := vals[string(f.Name)]; dup {
			t.Errorf("field %s appears twice", f.Name)
		}
		names = append(names, string(f.Name))
		vals[string(f.Name)] = f.Value
	}
	eq := func(k string, want string) {
		if got := string(vals[k]); got != want {
			t.Errorf("%s = %q, want %q", k, trim([]byte(got)), trim([]byte(want)))
		}
	}
	eq("MESSAGE_ID", r.Kind.MessageID())
	eq("PRIORITY", itoa(int64(r.Priority())))
	eq("SYSLOG_IDENTIFIER", "spip")
	eq("SPIP_EVENT", r.Kind.String())
	eq("SPIP_TIMESTAMP", itoa(r.Time.Unix()))
	eq("SPIP_SENSOR", testSensor)
	if bytes.ContainsAny(vals["MESSAGE"], "\n\x00") {
		t.Errorf("MESSAGE is not one clean line: %q", vals["MESSAGE"])
	}
	if r.Kind != KindConnection {
		want := []string{"MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "SPIP_EVENT", "SPIP_TIMESTAMP", "SPIP_TIME", "SPIP_SENSOR"}
		for _, f := range r.Fields {
			want = append(want, f.Key.JournalName())
			if f.IsInt {
				eq(f.Key.JournalName(), itoa(f.Int))
			} else {
				eq(f.Key.JournalName(), f.Str)
			}
		}
		if got, w := strings.Join(names, ","), strings.Join(want, ","); got != w {
			t.Errorf("fields %s, want %s", got, w)
		}
		return
	}
	if got, w := strings.Join(names, ","), strings.Join(connJournalNames(r), ","); got != w {
		t.Errorf("fields %s, want %s", got, w)
	}
	if !bytes.Equal(vals["SPIP_PAYLOAD"], r.Payload) {
		t.Errorf("SPIP_PAYLOAD = %q, want %q", trim(vals["SPIP_PAYLOAD"]), trim(r.Payload))
	}
	eq("SPIP_PAYLOAD_HEX", hex.EncodeToString(r.Payload))
	eq("SPIP_SOURCE_IP", r.Source.Addr().Unmap().String())
	eq("SPIP_SOURCE_PORT", itoa(int64(r.Source.Port())))
	wantDst := ""
	if r.Destination.IsValid() {
		wantDst = r.Destination.Addr().Unmap().String()
	}
	eq("SPIP_DESTINATION_IP", wantDst)
	eq("SPIP_DESTINATION_PORT", itoa(int64(r.Destination.Port())))
	eq("SPIP_SESSION_ID", r.SessionID.String())
	eq("SPIP_TRANSPORT", "tcp")
	eq("SPIP_BYTES_RECEIVED", itoa(int64(r.BytesReceived)))
	eq("SPIP_PAYLOAD_TRUNCATED", map[bool]string{true: "true", false: "false"}[r.Truncated])
	eq("SPIP_DURATION_MS", itoa(r.Duration.Milliseconds()))
	eq("SPIP_CLOSE_REASON", r.Close.String())
	if r.DestError != "" {
		eq("SPIP_DESTINATION_ERROR", r.DestError)
	}
	for _, kv := range factFields(r) {
		want := kv.val
		if kv.list != nil {
			want = journalList(kv.list)
		}
		eq("SPIP_"+strings.ToUpper(kv.key), want)
	}
}

// lossy is s as encoding/json carries it: each invalid UTF-8 byte becomes U+FFFD.
func lossy(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestEncodersDoNotAllocate: the hot path of every sink, one connection record into a reused
// buffer, allocates nothing (the journald MESSAGE line is built in place).
func TestEncodersDoNotAllocate(t *testing.T) {
	e, r := NewEncoder("s"), benchRecord()
	buf := make([]byte, 0, 4096)
	for name, f := range map[string]func(){
		"AppendJSON":    func() { buf = e.AppendJSON(buf[:0], r) },
		"AppendJournal": func() { buf = e.AppendJournal(buf[:0], r) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %.1f allocations per record, want 0", name, n)
		}
	}
}

// TestOmitJournal: record.journald_omit leaves payload_hex and time out of journald's
// connection entries only: the payload stays byte-exact, events and the JSON mirror keep them,
// and a field outside JournalOmittable cannot be left out.
func TestOmitJournal(t *testing.T) {
	e, r := NewEncoder("s"), benchRecord()
	r.Payload = []byte("a\nSPIP_PAYLOAD_HEX=forged\n\x00\xff")
	full := string(e.AppendJournal(nil, r))
	if err := e.OmitJournal(KeyPayloadHex, KeyTime); err != nil {
		t.Fatal(err)
	}
	lean := string(e.AppendJournal(nil, r))
	for _, name := range []string{"\nSPIP_PAYLOAD_HEX=", "\nSPIP_TIME="} {
		if !strings.Contains(full, name) {
			t.Errorf("the full entry lacks %q", name)
		}
	}
	if strings.Contains(lean, "\nSPIP_TIME=") || strings.Count(lean, "SPIP_PAYLOAD_HEX=") != 1 {
		t.Errorf("the lean entry keeps an omitted field (the payload's own forged line is the only SPIP_PAYLOAD_HEX=):\n%q", lean)
	}
	if !strings.Contains(lean, "\nSPIP_PAYLOAD\n"+string(binary.LittleEndian.AppendUint64(nil, uint64(len(r.Payload))))+string(r.Payload)+"\n") {
		t.Errorf("the lean entry's payload is not the exact bytes:\n%q", lean)
	}
	if len(lean) >= len(full) {
		t.Errorf("lean %d bytes, full %d", len(lean), len(full))
	}
	ev := &Record{Kind: KindSummary, Time: r.Time, Message: "m"}
	if got := string(e.AppendJournal(nil, ev)); !strings.Contains(got, "\nSPIP_TIME=") {
		t.Errorf("an event entry lost SPIP_TIME: %q", got)
	}
	if got := string(e.AppendJSON(nil, r)); !strings.Contains(got, `"payload_hex":`) || !strings.Contains(got, `"time":`) {
		t.Errorf("the JSON mirror lost a field: %s", got)
	}
	if err := e.OmitJournal(KeyPayload); err == nil {
		t.Error("payload could be left out")
	}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = e.AppendJournal(buf[:0], r) }); n != 0 {
		t.Errorf("%.0f allocations per record with omitted fields", n)
	}
}
