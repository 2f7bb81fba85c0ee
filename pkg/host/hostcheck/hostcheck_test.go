package hostcheck

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Lines in the kernel's format (x86, little-endian): 0100007F is 127.0.0.1, 0016 is port 22.
const (
	tcp4 = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 026433C6:0016 016433C6:C350 01 00000000:00000000 02:0009C4E2 00000000     0        0 1003 2 0000000000000000 20 4 30 10 -1
   3: 026433C6:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 1004 1 0000000000000000 100 0 0 10 0
`
	tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:08AE 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
   2: BE0500FD000000000000000002000000:3039 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 100 0 0 10 0
`
)

// fakeProc builds a /proc tree: the listener tables, and processes with comm and fd links.
func fakeProc(t *testing.T, procs map[string]map[string]string) string {
	t.Helper()
	root := t.TempDir()
	net := filepath.Join(root, "thread-self", "net")
	must(t, os.MkdirAll(net, 0o755))
	must(t, os.WriteFile(filepath.Join(net, "tcp"), []byte(tcp4), 0o644))
	must(t, os.WriteFile(filepath.Join(net, "tcp6"), []byte(tcp6), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "sys", "net", "ipv6"), 0o755))
	for pid, p := range procs {
		dir := filepath.Join(root, pid)
		must(t, os.MkdirAll(filepath.Join(dir, "fd"), 0o755))
		for fd, target := range p {
			if fd == "comm" {
				must(t, os.WriteFile(filepath.Join(dir, "comm"), []byte(target+"\n"), 0o644))
				continue
			}
			must(t, os.Symlink(target, filepath.Join(dir, "fd", fd)))
		}
	}
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestListenersFakeProc(t *testing.T) {
	proc := fakeProc(t, map[string]map[string]string{
		"1":    {"comm": "systemd", "3": "socket:[2003]", "4": "/dev/null"},
		"500":  {"comm": "sshd", "3": "socket:[1001]", "4": "socket:[2001]", "5": "socket:[9999]"},
		"501":  {"comm": "sshd", "3": "socket:[1001]"}, // a child sharing the socket
		"600":  {"comm": "nginx", "7": "socket:[1004]", "8": "pipe:[5]"},
		"700":  {"comm": "cupsd", "3": "socket:[1002]", "4": "socket:[2002]"},
		"self": {"comm": "ignored"},
	})
	s, err := Listeners(proc)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range s.Listeners {
		got = append(got, netip.AddrPortFrom(l.Addr, l.Port).String()+" "+strings.Join(l.Commands, ",")+" loopback="+map[bool]string{true: "y", false: "n"}[l.Loopback()])
	}
	want := []string{
		"0.0.0.0:22 sshd loopback=n",
		"198.51.100.2:80 nginx loopback=n",
		"127.0.0.1:631 cupsd loopback=y",
		"[::1]:631 cupsd loopback=y",
		"[::]:2222 sshd loopback=n",
		"[fd00:5be::2]:12345 systemd loopback=n",
	}
	// 026433C6 is 108.51.100.2 read little-endian: 6C=108, 33=51, 64=100, 02=2.
	if !reflect.DeepEqual(got, want) {
		t.Errorf("listeners:\n got %q\nwant %q", got, want)
	}
	if got := s.PortsOf("sshd"); !reflect.DeepEqual(got, []uint16{22, 2222}) {
		t.Errorf("sshd ports = %v, want [22 2222]", got)
	}
	if len(s.Unreadable) != 0 || s.MissedAny("sshd") {
		t.Errorf("unreadable = %v", s.Unreadable)
	}
	if IPv6Disabled(proc) {
		t.Error("IPv6Disabled with sys/net/ipv6 present")
	}
	must(t, os.RemoveAll(filepath.Join(proc, "sys", "net", "ipv6")))
	must(t, os.Remove(filepath.Join(proc, "thread-self", "net", "tcp6")))
	if !IPv6Disabled(proc) {
		t.Error("IPv6Disabled false without sys/net/ipv6")
	}
	s, err = Listeners(proc)
	if err != nil || len(s.Listeners) != 3 {
		t.Errorf("without tcp6: %d listeners, %v; want the 3 IPv4 ones", len(s.Listeners), err)
	}
}

func TestListenersBadTable(t *testing.T) {
	for name, body := range map[string]string{
		"short line":  "header\n 0: 00000000:0016 00000000:0000 0A\n",
		"bad address": "header\n 0: 0000000G:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n",
		"bad port":    "header\n 0: 00000000:XYZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n",
	} {
		t.Run(name, func(t *testing.T) {
			proc := fakeProc(t, nil)
			must(t, os.WriteFile(filepath.Join(proc, "thread-self", "net", "tcp"), []byte(body), 0o644))
			if _, err := Listeners(proc); err == nil {
				t.Error("no error")
			}
		})
	}
}

// TestListenersLive finds a socket this test process listens on in the real /proc.
func TestListenersLive(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listeners(Proc)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range s.Listeners {
		if l.Port == port && l.Addr == netip.MustParseAddr("127.0.0.1") {
			if !l.Has(strings.TrimSpace(string(comm))) {
				t.Errorf("listener %d owned by %v, want %s", port, l.Commands, comm)
			}
			return
		}
	}
	t.Errorf("listener on 127.0.0.1:%d not found in %d listeners", port, len(s.Listeners))
}

func TestDroppingInputChains(t *testing.T) {
	ruleset := `{"nftables":[{"metainfo":{"version":"1.0.6"}},
	{"table":{"family":"inet","name":"filter","handle":1}},
	{"chain":{"family":"inet","table":"filter","name":"input","handle":1,"type":"filter","hook":"input","prio":0,"policy":"drop"}},
	{"rule":{"family":"inet","table":"filter","chain":"input","handle":2,"expr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}},{"accept":null}]}},
	{"chain":{"family":"inet","table":"ok","name":"in","handle":1,"type":"filter","hook":"input","prio":0,"policy":"drop"}},
	{"rule":{"family":"inet","table":"ok","chain":"in","handle":3,"expr":[{"match":{"op":"in","left":{"ct":{"key":"status"}},"right":"dnat"}},{"counter":{"packets":0,"bytes":0}},{"accept":null}]}},
	{"chain":{"family":"ip","table":"ok2","name":"in","handle":1,"type":"filter","hook":"input","prio":0,"policy":"drop"}},
	{"rule":{"family":"ip","table":"ok2","chain":"in","handle":3,"expr":[{"match":{"op":"in","left":{"ct":{"key":"status"}},"right":["snat","dnat"]}},{"accept":null}]}},
	{"chain":{"family":"ip","table":"nodnat","name":"in","handle":1,"type":"filter","hook":"input","prio":0,"policy":"drop"}},
	{"rule":{"family":"ip","table":"nodnat","chain":"in","handle":3,"expr":[{"match":{"op":"in","left":{"ct":{"key":"status"}},"right":"dnat"}},{"drop":null}]}},
	{"chain":{"family":"ip","table":"fwd","name":"forward","handle":1,"type":"filter","hook":"forward","prio":0,"policy":"drop"}},
	{"chain":{"family":"inet","table":"open","name":"input","handle":1,"type":"filter","hook":"input","prio":0,"policy":"accept"}}
	]}`
	got, err := DroppingInputChains([]byte(ruleset))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"inet filter input", "ip nodnat in"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dropping chains = %q, want %q", got, want)
	}
	if _, err := DroppingInputChains([]byte("not json")); err == nil {
		t.Error("no error for a bad ruleset")
	}
	if got, err := DroppingInputChains([]byte(`{"nftables":[]}`)); err != nil || len(got) != 0 {
		t.Errorf("empty ruleset: %v, %v", got, err)
	}
}

func TestDroppingInputChainsMark(t *testing.T) {
	// Shapes printed by nft 1.0.6 for `meta mark 0x5350 accept`, `mark 0x5350 counter accept`,
	// a masked match (not recognised: warned about) and `ct status dnat accept` (redirect's).
	ruleset := `{"nftables":[
	{"chain":{"family":"inet","table":"a","name":"input","hook":"input","policy":"drop"}},
	{"rule":{"family":"inet","table":"a","chain":"input","expr":[{"match":{"op":"==","left":{"meta":{"key":"mark"}},"right":21328}},{"accept":null}]}},
	{"chain":{"family":"ip","table":"b","name":"input","hook":"input","policy":"drop"}},
	{"rule":{"family":"ip","table":"b","chain":"input","expr":[{"match":{"op":"==","left":{"meta":{"key":"mark"}},"right":21328}},{"counter":{"packets":0,"bytes":0}},{"accept":null}]}},
	{"chain":{"family":"inet","table":"masked","name":"input","hook":"input","policy":"drop"}},
	{"rule":{"family":"inet","table":"masked","chain":"input","expr":[{"match":{"op":"==","left":{"&":[{"meta":{"key":"mark"}},65535]},"right":21328}},{"accept":null}]}},
	{"chain":{"family":"inet","table":"dnat","name":"input","hook":"input","policy":"drop"}},
	{"rule":{"family":"inet","table":"dnat","chain":"input","expr":[{"match":{"op":"in","left":{"ct":{"key":"status"}},"right":"dnat"}},{"accept":null}]}},
	{"chain":{"family":"inet","table":"other","name":"input","hook":"input","policy":"drop"}},
	{"rule":{"family":"inet","table":"other","chain":"input","expr":[{"match":{"op":"==","left":{"meta":{"key":"mark"}},"right":1}},{"accept":null}]}},
	{"chain":{"family":"inet","table":"dropmark","name":"input","hook":"input","policy":"drop"}},
	{"rule":{"family":"inet","table":"dropmark","chain":"input","expr":[{"match":{"op":"==","left":{"meta":{"key":"mark"}},"right":21328}},{"drop":null}]}}
	]}`
	got, err := DroppingInputChainsMark([]byte(ruleset), 0x5350)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"inet dnat input", "inet dropmark input", "inet masked input", "inet other input"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dropping chains = %q, want %q", got, want)
	}
}

func TestReadConntrack(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "sys", "net", "netfilter")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{
		"nf_conntrack_max": "262144\n", "nf_conntrack_count": "2144\n",
		"nf_conntrack_tcp_timeout_time_wait": "120\n", "nf_conntrack_tcp_timeout_close": "10\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := ReadConntrack(root)
	if err != nil {
		t.Fatal(err)
	}
	if c != (Conntrack{Max: 262144, Count: 2144, TimeWait: 120, Close: 10}) {
		t.Errorf("read %+v", c)
	}
	for _, tc := range []struct{ hold, want int }{{120, 2166}, {5, 52000}, {0, 0}} {
		if got := c.SustainedRate(tc.hold); got != tc.want {
			t.Errorf("SustainedRate(%d) = %d, want %d", tc.hold, got, tc.want)
		}
	}
	if _, err := ReadConntrack(t.TempDir()); err == nil {
		t.Error("no error without the conntrack files")
	}
}
