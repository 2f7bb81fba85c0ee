package system

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"spip/pkg/test/netns"
)

// 4c. spip stats on the sensor's own journal: the report counts exactly the connection records
// journalctl holds, the losses the summaries in the journal report (4b left some), a port's
// connections with --port; a hostile payload prints escaped; the JSON mirror gives a report
// too; and a user who may not read the system journal gets an error, not an empty report.
func (s *sys) stats(t *testing.T) {
	m := s.m
	const port = 4242
	var sent []Sent
	for i := range 6 {
		dst := netns.SensorV4
		if i%2 == 1 {
			dst = netns.SensorV6
		}
		sent = append(sent, s.send(t, netip.AddrPortFrom(dst, port), []byte("GET /\x1b]0;pwned\x07 HTTP/1.0\r\n\r\n"), 0))
	}
	WaitRecorded(t, "journal", false, func() []Rec { return m.Records(t) }, sent)
	all := m.Records(t)
	sources := map[netip.Addr]bool{}
	onPort := 0 // an earlier scenario's random ports may have hit it too
	for _, r := range all {
		sources[r.Src.Addr().Unmap()] = true
		if r.Dst.Port() == port {
			onPort++
		}
	}
	var dropped uint64
	out := m.Exec(t, "journalctl", "-o", "json", "--all", "--no-pager", "-t", "spip", "SPIP_EVENT=summary")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil {
			if v, ok := e["SPIP_DROPPED"].(string); ok {
				n, _ := strconv.ParseUint(v, 10, 64)
				dropped += n
			}
		}
	}
	t.Logf("step: spip stats --json over %d connection records from %d sources, %d dropped by summaries", len(all), len(sources), dropped)

	type report struct {
		Totals struct {
			Connections     uint64
			DistinctSources struct{ Value uint64 } `json:"distinct_sources"`
		}
		Losses struct {
			Dropped []struct{ Records uint64 }
		}
		Ports struct {
			Top []struct {
				Value string
				Count uint64
			}
		} `json:"destination_ports"`
	}
	read := func(args ...string) report {
		t.Helper()
		out := m.Exec(t, append([]string{"spip", "stats", "--json"}, args...)...)
		var r report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("spip stats --json %v: %v\n%s", args, err, tail([]byte(out), 20))
		}
		return r
	}
	r := read()
	var repDropped uint64
	for _, d := range r.Losses.Dropped {
		repDropped += d.Records
	}
	if r.Totals.Connections != uint64(len(all)) || r.Totals.DistinctSources.Value != uint64(len(sources)) || repDropped != dropped {
		t.Errorf("spip stats: %d connections, %d sources, %d dropped; the journal holds %d, %d, %d",
			r.Totals.Connections, r.Totals.DistinctSources.Value, repDropped, len(all), len(sources), dropped)
	}
	r = read("--port", strconv.Itoa(port))
	if r.Totals.Connections != uint64(onPort) || len(r.Ports.Top) != 1 || r.Ports.Top[0].Value != fmt.Sprintf("%d/tcp", port) {
		t.Errorf("spip stats --port %d: %d connections, ports %+v; the journal holds %d", port, r.Totals.Connections, r.Ports.Top, onPort)
	}

	t.Logf("step: spip stats as a person reads it (piped: plain)\n%s", m.Exec(t, "spip", "stats"))
	t.Logf("step: spip stats --port %d (piped: plain)", port)
	plain := m.Exec(t, "spip", "stats", "--port", strconv.Itoa(port))
	t.Logf("\n%s", plain)
	if strings.ContainsRune(plain, 0x1b) || !strings.Contains(plain, `GET /\x1b]0;pwned\x07 HTTP/1.0\r\n\r\n`) {
		t.Errorf("the payload did not print escaped:\n%q", plain)
	}
	if !strings.Contains(plain, fmt.Sprintf("connections %d ", onPort)) {
		t.Errorf("the report does not count %d connections", onPort)
	}

	t.Logf("step: spip stats --file %s", jsonMirror)
	if r := read("--file", jsonMirror); r.Totals.Connections == 0 {
		t.Errorf("spip stats --file %s: no connections", jsonMirror)
	}

	t.Logf("step: spip stats as nobody (not in systemd-journal)")
	out, err := m.Run("runuser", "-u", "nobody", "--", "spip", "stats")
	if err == nil || !strings.Contains(out, "no permission to read the system journal") {
		t.Errorf("spip stats as nobody: %v, want an error about permission:\n%s", err, out)
	}
}

// 1b (fleet). spip stats --directory on the collector's journal-remote directory: one report
// over the whole fleet that counts, for each sensor, exactly the connection entries the
// collector holds for it, and the same with --sensor. spip itself is not installed there (the
// collector only collects): the binary is copied in, as an operator would.
func (f *fleet) stats(t *testing.T) {
	m := f.collector
	bin, err := os.ReadFile(netns.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	m.WriteFile(t, "/usr/local/bin/spip", bin, 0o755)
	type report struct {
		Totals struct {
			Connections uint64
			Sensors     []struct {
				Value string
				Count uint64
			}
		}
	}
	read := func(args ...string) report {
		t.Helper()
		out := m.Exec(t, append([]string{"/usr/local/bin/spip", "stats", "--json", "--directory", remoteDir}, args...)...)
		var r report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("spip stats %v: %v\n%s", args, err, tail([]byte(out), 20))
		}
		return r
	}
	want := map[string]uint64{}
	var total uint64
	for _, s := range f.sensors {
		c := f.collect(t, s)
		want[s.name] = uint64(c.entries)
		total += uint64(c.entries)
	}
	t.Logf("step: spip stats --directory %s on the collector (it holds %v)\n%s", remoteDir, want,
		m.Exec(t, "/usr/local/bin/spip", "stats", "--directory", remoteDir, "--top", "3"))
	r := read()
	got := map[string]uint64{}
	for _, s := range r.Totals.Sensors {
		got[s.Value] = s.Count
	}
	if r.Totals.Connections != total || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("spip stats --directory: %d connections by sensor %v; the collector holds %d, %v", r.Totals.Connections, got, total, want)
	}
	for _, s := range f.sensors {
		if r := read("--sensor", s.name); r.Totals.Connections != want[s.name] {
			t.Errorf("spip stats --directory --sensor %s: %d connections, want %d", s.name, r.Totals.Connections, want[s.name])
		}
	}
}
