package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Listener tables in the kernel's format: sshd on 0.0.0.0:22; nginx on 198.51.100.2:80.
const (
	fakeTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 026433C6:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 1004 1 0000000000000000 100 0 0 10 0
`
	fakeTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
`
	// An inet filter input chain with policy accept: drops nothing.
	openRuleset = `{"nftables": [{"metainfo": {"json_schema_version": 1}}, {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}]}`
	dropRuleset = `{"nftables": [{"metainfo": {"json_schema_version": 1}}, {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}]}`
)

type fakeHost struct {
	nginx   bool   // nginx listens on port 80
	ruleset string // "" means nft fails
	noIPv6  bool
	ctMax   string // nf_conntrack_max; "" means conntrack is not loaded
	ctCount string
	noSSHD  bool   // no sshd process holds port 22's listener
	sshUnit string // "service": ssh.service enabled; "socket": ssh.socket enabled, PID 1 listens on 2222
}

func (h fakeHost) install(t *testing.T) {
	t.Helper()
	root := t.TempDir()
	write := func(path, body string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tcp := fakeTCP
	if !h.nginx {
		tcp = strings.Join(strings.Split(tcp, "\n")[:2], "\n") + "\n"
	}
	if h.sshUnit == "socket" {
		tcp += "   2: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1005 1 0000000000000000 100 0 0 10 0\n"
	}
	write("thread-self/net/tcp", tcp)
	write("thread-self/net/tcp6", fakeTCP6)
	if !h.noIPv6 {
		write("sys/net/ipv6/conf/all/disable_ipv6", "0\n")
	}
	if h.ctMax != "" {
		write("sys/net/netfilter/nf_conntrack_max", h.ctMax+"\n")
		write("sys/net/netfilter/nf_conntrack_count", h.ctCount+"\n")
		write("sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait", "120\n")
		write("sys/net/netfilter/nf_conntrack_tcp_timeout_close", "10\n")
	}
	// link makes dir/fd/NAME a symlink to target (a process's descriptor, with its comm), or
	// dir/NAME when comm is "" (a unit's enablement link).
	link := func(dir, comm, name, target string) {
		at := filepath.Join(root, dir)
		if comm != "" {
			write(dir+"/comm", comm+"\n")
			at = filepath.Join(at, "fd")
		}
		if err := os.MkdirAll(at, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(at, name)); err != nil {
			t.Fatal(err)
		}
	}
	if !h.noSSHD {
		link("500", "sshd", "3", "socket:[1001]")
	}
	switch h.sshUnit {
	case "service":
		write("lib/systemd/system/ssh.service", "[Service]\nExecStart=/usr/sbin/sshd -D\n")
		link("etc/systemd/system/multi-user.target.wants", "", "ssh.service", "/lib/systemd/system/ssh.service")
	case "socket":
		write("lib/systemd/system/ssh.socket", "[Socket]\nListenStream=22\nAccept=yes\n")
		write("etc/systemd/system/ssh.socket.d/port.conf", "[Socket]\nListenStream=\nListenStream=2222\n")
		link("etc/systemd/system/sockets.target.wants", "", "ssh.socket", "/lib/systemd/system/ssh.socket")
		link("1", "systemd", "9", "socket:[1005]")
	}
	link("600", "nginx", "7", "socket:[1004]")
	saved := probe
	probe = hostProbe{proc: root, root: root, ruleset: func(context.Context) ([]byte, error) {
		if h.ruleset == "" {
			return nil, errors.New("nft: not found")
		}
		return []byte(h.ruleset), nil
	}}
	t.Cleanup(func() { probe = saved })
}

// spip check's exit status: 0 clean, 1 when it warns that the capture would cut off a listener,
// be dropped by the firewall or cannot work, 78 for a bad configuration. Notes about conntrack's
// headroom are information. No host value makes it panic.
func TestCheckExitStatus(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte("[capture]\nexclude_sshd = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[session]\nfirst_byte_timeout = 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v4only := filepath.Join(dir, "v4.toml")
	if err := os.WriteFile(v4only, []byte("[listen]\naddress = \"0.0.0.0:12345\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		host    fakeHost
		cfg     string
		want    int
		wantOut []string
	}{
		{"clean", fakeHost{ruleset: openRuleset, ctMax: "262144", ctCount: "10"}, good, ExitOK, []string{"configuration is valid", "absorbs about"}},
		{"conntrack not loaded", fakeHost{ruleset: openRuleset}, good, ExitOK, []string{"conntrack: not loaded yet"}},
		{"conntrack max 0 is no limit", fakeHost{ruleset: openRuleset, ctMax: "0", ctCount: "5"}, good, ExitOK, []string{"no limit"}},
		{"conntrack small is a note", fakeHost{ruleset: openRuleset, ctMax: "1000", ctCount: "10"}, good, ExitOK, []string{"note: conntrack allows only"}},
		{"conntrack full is a note", fakeHost{ruleset: openRuleset, ctMax: "1000", ctCount: "900"}, good, ExitOK, []string{"note: conntrack is 90% full"}},
		{"conntrack count past max", fakeHost{ruleset: openRuleset, ctMax: "1", ctCount: "99999999999"}, good, ExitOK, nil},
		{"cut-off listener", fakeHost{nginx: true, ruleset: openRuleset}, good, ExitFail, []string{"warning: port 80 is not excluded"}},
		{"dropping firewall", fakeHost{ruleset: dropRuleset}, good, ExitFail, []string{`warning: chain "inet filter input" has policy drop`}},
		{"ruleset unreadable", fakeHost{}, good, ExitFail, []string{"warning: cannot read the nftables ruleset"}},
		{"ipv6 off, listen [::]", fakeHost{ruleset: openRuleset, noIPv6: true}, good, ExitFail, []string{"warning: IPv6 is disabled"}},
		{"ipv6 off, listen 0.0.0.0", fakeHost{ruleset: openRuleset, noIPv6: true}, v4only, ExitOK, nil},
		{"bad configuration", fakeHost{nginx: true, ruleset: dropRuleset}, bad, ExitConfig, nil},
		// sshd at boot: ssh.service enabled but not listening (yet) means its ports are unknown.
		{"ssh.service enabled, no sshd listening", fakeHost{ruleset: openRuleset, noSSHD: true, sshUnit: "service"}, good, ExitFail,
			[]string{"warning: finding sshd's ports: ssh.service is enabled but no sshd listens yet"}},
		{"ssh.service enabled and listening", fakeHost{ruleset: openRuleset, sshUnit: "service"}, good, ExitOK, nil},
		// ssh.socket: PID 1 holds the listener; its ListenStream= ports are sshd's and excluded.
		{"ssh.socket on 2222", fakeHost{ruleset: openRuleset, noSSHD: true, sshUnit: "socket"}, good, ExitOK, nil},
		{"config only: the host is not looked at", fakeHost{nginx: true, ruleset: dropRuleset}, good + " --config-only", ExitOK, []string{"configuration is valid"}},
		{"config only: a bad configuration", fakeHost{}, bad + " --config-only", ExitConfig, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.host.install(t)
			var out, errb bytes.Buffer
			env := &Env{Version: "1", Stdout: &out, Stderr: &errb, Environ: []string{}}
			got := Run(context.Background(), env, append([]string{"check", "--config"}, strings.Fields(tt.cfg)...))
			if got != tt.want {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", got, tt.want, out.String(), errb.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
