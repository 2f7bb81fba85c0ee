package system

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// sys is the state the scenarios share: one booted container, used in sequence. Each scenario
// leaves spip installed, spip.socket and spip.service active and s.config in /etc/spip/spip.toml,
// except the last one, which removes the package.
type sys struct {
	m      *Machine
	c      *Client
	rnd    *rand.Rand
	base   *Build
	newer  *Build
	prev   *Build // the previous release (PreviousRelease), for the upgrade from it
	config string // the test's /etc/spip/spip.toml, "" for the packaged one
	// loadPause is how long each of underLoad's workers waits between connections (5 ms
	// unless set): a longer action paces them so the run's source ports last.
	loadPause time.Duration
}

const jsonMirror = "/var/log/spip/records.json"

// TestSystem installs the package in a booted Debian container and runs the scenarios of
// issue 3 in an order where each starts from the state the previous one left.
func TestSystem(t *testing.T) {
	if testing.Short() {
		t.Skip("system test: builds the package and boots a container (not with -short)")
	}
	netns.Require(t, "systemd-nspawn", "debootstrap", "nft", "ip", "nsenter", "dpkg-buildpackage")
	start := time.Now()
	s := &sys{rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))}
	// Both packages build while the container boots and the first scenarios run.
	if debs := os.Getenv("SPIP_SYSTEST_DEBS"); debs != "" {
		// For iterating on the scenarios: two prebuilt packages, the base and a newer version.
		// A third one is the previous release; without it, it is built from its commit.
		list := append(strings.Split(debs, ","), "", "")
		s.base, s.newer = Prebuilt(list[0]), Prebuilt(list[1])
		if list[2] != "" {
			s.prev = Prebuilt(list[2])
		}
	} else {
		t.Logf("step: make deb (version %s, and a newer build for the upgrade)", ChangelogVersion(t))
		s.base, s.newer = StartDeb(t, ""), StartDeb(t, ChangelogVersion(t)+"+systest1")
	}
	if s.prev == nil {
		t.Logf("step: make deb of the previous release (commit %.12s)", PreviousRelease)
		s.prev = StartDebFrom(t, PreviousRelease)
	}
	s.m = Boot(t)
	s.c = NewClient(s.m.Net.Client)

	scenarios := []struct {
		name string
		run  func(*testing.T)
	}{
		{"1_install_and_record", s.install},
		{"1b_ship_to_clickhouse", s.ship},
		{"2_ssh_excluded", s.sshExcluded},
		{"2b_redirect_mode", s.redirectMode},
		{"2c_udp_capture", s.udpCapture},
		{"3_silent_and_slow", s.silentAndSlow},
		{"4_json_mirror", s.jsonMirror},
		{"4b_journald_stopped", s.journaldStopped},
		{"4c_stats", s.stats},
		{"4d_protocol_facts", s.protocolFacts},
		{"5_restart_under_load", s.restartUnderLoad},
		{"6_watchdog", s.watchdog},
		{"7_bad_config", s.badConfig},
		{"9_security", s.security},
		{"10_restart_and_upgrade_keep_sessions", s.restartKeepsSessions},
		{"11_stops_record_shutdown", s.stopsRecordShutdown},
		{"12_ssh_service_on_2222_survives_reboot", s.sshServiceReboot},
		{"12b_ssh_socket_on_2222_survives_reboot", s.sshSocketReboot},
		{"8_remove_purge", s.removePurge},
		{"13_upgrade_from_previous_release", s.upgradeFromPrevious},
	}
	for i, sc := range scenarios {
		ok := t.Run(sc.name, sc.run)
		if !ok && i == 0 {
			t.Fatal("nothing else can run without the package installed")
		}
		if !ok && i < len(scenarios)-1 && sc.name != "8_remove_purge" {
			s.recover(t)
		}
	}
	t.Logf("system test took %s", time.Since(start).Round(time.Second))
}

// recover brings a failed scenario's leftovers back to the shared state, so the next scenario
// tests what it says and not the previous failure.
func (s *sys) recover(t *testing.T) {
	t.Logf("step: recovering the shared state after a failed scenario")
	s.m.RemoveFile(t, "/etc/systemd/system/spip.service.d/systest.conf")
	s.writeConfig(t, s.config)
	_, _ = s.m.Run("systemctl", "daemon-reload")
	_, _ = s.m.Run("systemctl", "reset-failed", "spip.socket", "spip.service", "spip-redirect.service")
	_, _ = s.m.Run("systemctl", "start", "spip.socket")
	_, _ = s.m.Run("systemctl", "reload", "spip-redirect.service")
	_, _ = s.m.Run("systemctl", "restart", "spip.service")
}

// 1. Install, enable the socket, and send connections to many ports over both families, in
// the packaged capture mode (tproxy): source ports are exactly the client's.
func (s *sys) install(t *testing.T) {
	m := s.m
	deb := s.base.Wait(t)
	m.Install(t, deb)
	t.Logf("step: systemctl enable --now spip.socket")
	m.Exec(t, "systemctl", "enable", "--now", "spip.socket")
	s.requireActive(t, "spip.socket", "spip-redirect.service")
	s.requireTable(t, "tproxy to :12345")

	var sent []Sent
	v4, v6 := s.randomPorts(60), s.randomPorts(25)
	for i, p := range v4 {
		sent = append(sent, s.send(t, netip.AddrPortFrom(netns.SensorV4, p), s.payload(i), 0))
	}
	for i, p := range v6 {
		sent = append(sent, s.send(t, netip.AddrPortFrom(netns.SensorV6, p), s.payload(i+len(v4)), 0))
	}
	t.Logf("step: sent %d IPv4 and %d IPv6 connections; reading journalctl -o json --all -t spip", len(v4), len(v6))
	got := WaitRecorded(t, "journal", false, func() []Rec { return m.Records(t) }, sent)
	arrays := 0
	for src, r := range got {
		if r.CloseReason != "eof" {
			t.Errorf("%s→%s: close_reason %q, want eof (the client closed)", src, r.Dst, r.CloseReason)
		}
		if r.ByteArray {
			arrays++
		}
	}
	// Both forms of SPIP_PAYLOAD were decoded and compared, not only the text one.
	if arrays == 0 {
		t.Errorf("no SPIP_PAYLOAD came back as a byte array, yet binary payloads were sent")
	}
	t.Logf("%d payloads came back as text, %d as byte arrays (not UTF-8)", len(got)-arrays, arrays)
	if n := s.reusedSourcePort(t); n != 0 {
		t.Errorf("tproxy mode: %d records with a source port the client did not use", n)
	}
	s.requireActive(t, "spip.service")
	// STATUS= is refreshed every output.status_interval (5s by default): wait for one that
	// counts what was sent.
	status := ""
	for range 50 { // bounded: 10s
		status = s.show(t, "spip.service", "StatusText")
		if n, ok := leadingCount(status, "recorded "); ok && n >= len(sent) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("systemctl status: %s", status)
	if n, ok := leadingCount(status, "recorded "); !ok || n < len(sent) {
		t.Errorf("spip.service STATUS= %q does not count the %d recorded connections", status, len(sent))
	}
}

// leadingCount reads the number after prefix in s ("recorded 85 (…)" → 85).
func leadingCount(s, prefix string) (int, bool) {
	_, rest, ok := strings.Cut(s, prefix)
	if !ok {
		return 0, false
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	n, err := strconv.Atoi(rest[:end])
	return n, err == nil
}

// 2. Port 22 is excluded: a listener there answers directly, and spip records nothing.
func (s *sys) sshExcluded(t *testing.T) {
	m := s.m
	for i, dst := range []netip.Addr{netns.SensorV4, netns.SensorV6} {
		unit := fmt.Sprintf("systest-ssh%d", i)
		t.Logf("step: a listener on port 22 in the container (%s), reached at %s", unit, dst)
		// -6 binds [::], which also takes IPv4 (bindv6only=0); -N sends EOF after the banner.
		m.Exec(t, "systemd-run", "--unit="+unit, "--collect", "sh", "-c", `printf 'SSH-2.0-systest\r\n' | nc -6 -N -l 22`)
		s.waitListening(t, 22)
		conn, src, err := s.c.Dial(netip.AddrPortFrom(dst, 22))
		if err != nil {
			t.Fatalf("port 22: %v", err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		conn.Close()
		if !bytes.HasPrefix(buf[:n], []byte("SSH-2.0-systest")) {
			t.Fatalf("port 22 from %s answered %q (%v), want the listener's banner: the redirect took it", src, buf[:n], err)
		}
		_, _ = m.Run("systemctl", "stop", unit)
		// A connection sent after it, once recorded, shows the journal is caught up.
		marker := s.send(t, netip.AddrPortFrom(dst, 2222), []byte("marker after ssh"), 0)
		WaitRecorded(t, "journal", false, func() []Rec { return m.Records(t) }, []Sent{marker})
		for _, r := range m.Records(t) {
			if r.Src == src || r.Dst.Port() == 22 {
				t.Fatalf("spip recorded a connection to the excluded port 22: %+v", r.Raw)
			}
		}
	}
}

// 2b. Switched to redirect mode the documented way (spip check, reload of the redirect unit,
// restart of the service), the table holds the NAT redirect and every connection is recorded
// with its original destination; switched back, tproxy again. A client reusing one source
// port shows each mode's source ports: exact with tproxy, rewritten by NAT with redirect.
func (s *sys) redirectMode(t *testing.T) {
	check := func(mode string) { s.sendAndCheck(t, mode+" mode", 20) }
	s.config = "[capture]\nmode = \"redirect\"\n"
	s.applyConfig(t)
	s.requireTable(t, "redirect to :12345")
	check("redirect")
	// NAT gives every redirected flow the same reply tuple (sensor:12345 → client:port): while
	// the earlier flow's entry lives, the next one from that port gets another source port.
	if n := s.reusedSourcePort(t); n == 0 {
		t.Errorf("redirect mode: no source port rewritten, yet the redirect's NAT must rewrite a reused one (is this still redirect mode?)")
	}
	s.config = ""
	s.applyConfig(t)
	s.requireTable(t, "tproxy to :12345")
	check("tproxy")
}

// reusedSourcePort sends connections from one source port to several ports in turn, over both
// families, and returns how many of their records carry another source port.
func (s *sys) reusedSourcePort(t *testing.T) int {
	port, err := s.c.NewLowPort()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Sent{} // by payload
	for _, dst := range []netip.Addr{netns.SensorV4, netns.SensorV6} {
		for i, p := range s.randomPorts(4) {
			payload := fmt.Sprintf("same source port %d to %s #%d", port, netip.AddrPortFrom(dst, p), i)
			x, err := s.c.SendFrom(port, netip.AddrPortFrom(dst, p), []byte(payload))
			if err != nil {
				t.Fatal(err)
			}
			want[payload] = x
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		found := map[string]Rec{}
		for _, r := range s.m.Records(t) {
			if _, ok := want[string(r.PayloadHex)]; ok {
				found[string(r.PayloadHex)] = r
			}
		}
		if len(found) == len(want) || time.Now().After(deadline) {
			rewritten := 0
			for payload, x := range want {
				r, ok := found[payload]
				switch {
				case !ok:
					t.Errorf("%s→%s from a reused source port: not recorded", x.Src, x.Dst)
				case r.Dst != x.Dst || r.Src.Addr() != x.Src.Addr():
					t.Errorf("%s→%s from a reused source port: recorded as %s→%s", x.Src, x.Dst, r.Src, r.Dst)
				case r.Src != x.Src:
					rewritten++
				}
			}
			t.Logf("%d connections from source port %d: %d recorded with another source port", len(want), port, rewritten)
			return rewritten
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// requireTable fails unless spip's nftables table holds rule.
func (s *sys) requireTable(t *testing.T, rule string) {
	t.Helper()
	t.Logf("step: nft list table inet spip (want %q)", rule)
	if table := s.m.Exec(t, "nft", "list", "table", "inet", "spip"); !strings.Contains(table, rule) {
		t.Fatalf("table inet spip has no %q rule:\n%s", rule, table)
	}
}

// 3. Connections that send nothing, and ones that go quiet, are recorded when they time out.
func (s *sys) silentAndSlow(t *testing.T) {
	m := s.m
	s.config = `[session]
first_byte_timeout = "2s"
idle_timeout = "1s"
`
	s.applyConfig(t)
	var (
		mu   sync.Mutex
		sent []Sent
		want = map[netip.AddrPort]string{} // source → close reason
		wg   sync.WaitGroup
	)
	add := func(dst netip.AddrPort, payload []byte, hold time.Duration, reason string) {
		defer wg.Done()
		x := s.send(t, dst, payload, hold)
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, x)
		want[x.Src] = reason
	}
	for i, dst := range []netip.Addr{netns.SensorV4, netns.SensorV6} {
		p := uint16(3000 + 10*i)
		wg.Add(5)
		go add(netip.AddrPortFrom(dst, p), nil, 0, "eof")                                       // connect, close
		go add(netip.AddrPortFrom(dst, p+1), nil, 4*time.Second, "timeout")                     // silent past first_byte_timeout
		go add(netip.AddrPortFrom(dst, p+2), []byte("HELO slow\r\n"), 3*time.Second, "timeout") // quiet past idle_timeout
		go add(netip.AddrPortFrom(dst, p+3), []byte{0, 1, 2, 0xff}, 3*time.Second, "timeout")
		go add(netip.AddrPortFrom(dst, p+4), nil, 500*time.Millisecond, "eof") // silent, closes before the timeout
	}
	t.Logf("step: 10 silent and slow connections (first_byte_timeout 2s, idle_timeout 1s)")
	wg.Wait()
	got := WaitRecorded(t, "journal", false, func() []Rec { return m.Records(t) }, sent)
	for src, reason := range want {
		if got[src].CloseReason != reason {
			t.Errorf("%s→%s: close_reason %q, want %q", src, got[src].Dst, got[src].CloseReason, reason)
		}
	}
}

// 4. With the JSON mirror on, the file holds the same records, with the original's value types.
func (s *sys) jsonMirror(t *testing.T) {
	m := s.m
	s.config += fmt.Sprintf("\n[output]\njson_file = %q\n", jsonMirror)
	s.applyConfig(t)
	var sent []Sent
	for i, p := range s.randomPorts(20) {
		dst := netns.SensorV4
		if i%2 == 1 {
			dst = netns.SensorV6
		}
		sent = append(sent, s.send(t, netip.AddrPortFrom(dst, p), s.payload(i), 0))
	}
	t.Logf("step: 20 connections; reading the journal and %s", jsonMirror)
	journal := WaitRecorded(t, "journal", false, func() []Rec { return m.Records(t) }, sent)
	file := WaitRecorded(t, "json mirror", true, func() []Rec { return m.JSONRecords(t, jsonMirror) }, sent)
	seedKeys := []string{"timestamp", "payload", "payload_hex", "source_ip", "source_port", "destination_ip", "destination_port", "session_id"}
	for src, j := range journal {
		f := file[src]
		if f.SessionID != j.SessionID || f.CloseReason != j.CloseReason {
			t.Errorf("%s: the mirror says session %s (%s), the journal %s (%s)", src, f.SessionID, f.CloseReason, j.SessionID, j.CloseReason)
		}
		for _, k := range seedKeys {
			if _, ok := f.Raw[k]; !ok {
				t.Errorf("%s: the mirror's record lacks the original's key %q", src, k)
			}
		}
	}
}

// 5. Restarting spip.service while connections keep arriving loses none: they wait in the
// socket's backlog, held by PID 1.
func (s *sys) restartUnderLoad(t *testing.T) {
	sent := s.underLoad(t, "systemctl restart spip.service (twice)", func() {
		for range 2 {
			before := s.show(t, "spip.service", "MainPID")
			s.m.Exec(t, "systemctl", "restart", "spip.service")
			if after := s.show(t, "spip.service", "MainPID"); after == before || after == "0" {
				t.Errorf("systemctl restart spip.service: MainPID %s → %s, want a new process", before, after)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
	WaitRecorded(t, "journal", false, func() []Rec { return s.m.Records(t) }, sent)
}

// 6. A stopped (hung) spip stops its watchdog pings; systemd kills and restarts it, and what
// arrived meanwhile is recorded by the new process.
func (s *sys) watchdog(t *testing.T) {
	m := s.m
	const watchdog = 5 * time.Second
	m.WriteFile(t, "/etc/systemd/system/spip.service.d/systest.conf",
		[]byte(fmt.Sprintf("[Service]\nWatchdogSec=%s\n", watchdog)), 0o644)
	defer func() {
		m.RemoveFile(t, "/etc/systemd/system/spip.service.d/systest.conf")
		m.Exec(t, "systemctl", "daemon-reload")
		m.Exec(t, "systemctl", "restart", "spip.service")
	}()
	m.Exec(t, "systemctl", "daemon-reload")
	m.Exec(t, "systemctl", "restart", "spip.service")
	s.requireActive(t, "spip.service")
	restartSec := s.showDuration(t, "spip.service", "RestartUSec")
	before := s.show(t, "spip.service", "MainPID")
	restarts := s.show(t, "spip.service", "NRestarts")

	t.Logf("step: kill -STOP %s (WatchdogSec=%s, RestartSec=%s)", before, watchdog, restartSec)
	stopped := time.Now()
	since := "@" + strconv.FormatInt(stopped.Unix()-1, 10)
	m.Exec(t, "kill", "-STOP", before)
	var sent []Sent
	for i, p := range s.randomPorts(10) {
		dst := netns.SensorV4
		if i%2 == 1 {
			dst = netns.SensorV6
		}
		sent = append(sent, s.send(t, netip.AddrPortFrom(dst, p), s.payload(i), 0))
	}
	bound := watchdog + restartSec + 20*time.Second
	var after string
	for {
		after = s.show(t, "spip.service", "MainPID")
		if after != before && after != "0" && s.show(t, "spip.service", "ActiveState") == "active" {
			break
		}
		if time.Since(stopped) > bound {
			t.Fatalf("spip (pid %s) stopped %s ago and not restarted (WatchdogSec=%s + RestartSec=%s + 20s); state %s",
				before, time.Since(stopped).Round(time.Second), watchdog, restartSec, s.show(t, "spip.service", "ActiveState"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("step: restarted as pid %s, %s after SIGSTOP; NRestarts %s → %s", after, time.Since(stopped).Round(100*time.Millisecond),
		restarts, s.show(t, "spip.service", "NRestarts"))
	log := m.Exec(t, "journalctl", "-u", "spip.service", "--no-pager", "-o", "cat", "--since", since)
	if !strings.Contains(log, "Failed with result 'watchdog'") {
		t.Errorf("journalctl -u spip.service does not say the watchdog fired:\n%s", tail([]byte(log), 20))
	}
	WaitRecorded(t, "journal", false, func() []Rec { return m.Records(t) }, sent)
}

// 7. A broken config stops the service with a message naming the key; `spip check` agrees;
// fixing it and resetting the units recovers.
func (s *sys) badConfig(t *testing.T) {
	m := s.m
	good := s.config
	defer func() { s.config = good }()
	s.config = strings.Replace(good, `idle_timeout = "1s"`, `idle_timeout = "banana"`, 1)
	if s.config == good {
		t.Fatal("test bug: the config has no idle_timeout to break")
	}
	const key = "session.idle_timeout"
	since := "@" + strconv.FormatInt(time.Now().Unix()-1, 10)
	s.writeConfig(t, s.config)

	// An upgrade (here a reinstall: the postinst's upgrade path) to a version that refuses the
	// file must not restart the running sensor into the failure: it names the key and leaves
	// spip.service and the redirect as they are.
	t.Logf("step: idle_timeout = \"banana\"; apt-get install --reinstall: the postinst must name %s and not restart spip.service", key)
	pid := s.show(t, "spip.service", "MainPID")
	out := m.Exec(t, "apt-get", "install", "--reinstall", "-y", "--no-install-recommends",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", "/srv/"+filepath.Base(s.base.Wait(t)))
	if !strings.Contains(out, key) || !strings.Contains(out, "not restarted") {
		t.Errorf("the upgrade with a refused configuration does not name %s or say the service is not restarted:\n%s", key, tail([]byte(out), 20))
	}
	if got := s.show(t, "spip.service", "MainPID"); got != pid {
		t.Errorf("the upgrade restarted spip.service (pid %s, was %s) into a configuration it refuses", got, pid)
	}
	s.requireActive(t, "spip.socket", "spip-redirect.service", "spip.service")

	t.Logf("step: systemctl restart spip.service must fail")
	if out, err := m.Run("systemctl", "restart", "spip.service"); err == nil {
		t.Fatalf("spip.service restarted with a broken config:\n%s", out)
	}
	if st := s.show(t, "spip.service", "ActiveState"); st != "failed" {
		t.Errorf("spip.service is %s, want failed", st)
	}
	if code := s.show(t, "spip.service", "ExecMainStatus"); code != "78" {
		t.Errorf("spip exited with %s, want 78 (EX_CONFIG, so RestartPreventExitStatus= applies)", code)
	}
	log := m.Exec(t, "journalctl", "-u", "spip.service", "--no-pager", "-o", "cat", "--since", since)
	if !strings.Contains(log, key) {
		t.Errorf("journalctl -u spip.service does not name %s:\n%s", key, tail([]byte(log), 20))
	}
	out, err := m.Run("spip", "check")
	if err == nil || !strings.Contains(out, key) {
		t.Errorf("spip check on the broken config: err %v, output does not name %s:\n%s", err, key, out)
	}
	// DESIGN's safe failure: a connection now triggers the service again and again until the
	// socket's trigger limit fails spip.socket; BindsTo= then takes the redirect down, and the
	// host's ports are the host's again.
	t.Logf("step: a connection while broken: spip.socket must fail and the redirect go away")
	_, _ = s.c.Send(netip.AddrPortFrom(netns.SensorV4, 8080), []byte("while broken"), 0)
	var socket, redirect string
	var tableErr error
	for range 50 { // bounded: 10s
		socket, redirect = s.show(t, "spip.socket", "ActiveState"), s.show(t, "spip-redirect.service", "ActiveState")
		_, tableErr = m.Run("nft", "list", "table", "inet", "spip")
		if socket == "failed" && redirect == "inactive" && tableErr != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if socket != "failed" || redirect != "inactive" || tableErr == nil {
		t.Errorf("while broken: spip.socket %s (want failed), spip-redirect.service %s (want inactive), nft table still loaded: %v",
			socket, redirect, tableErr == nil)
	}

	t.Logf("step: fix the config; reset-failed; start")
	s.config = good
	s.writeConfig(t, good)
	m.Exec(t, "spip", "check")
	m.Exec(t, "systemctl", "reset-failed", "spip.socket", "spip.service")
	m.Exec(t, "systemctl", "start", "spip.socket", "spip.service")
	s.requireActive(t, "spip.socket", "spip-redirect.service", "spip.service")
	m.Exec(t, "nft", "list", "table", "inet", "spip")
	var sent []Sent
	for i, p := range s.randomPorts(6) {
		dst := netns.SensorV4
		if i%2 == 1 {
			dst = netns.SensorV6
		}
		sent = append(sent, s.send(t, netip.AddrPortFrom(dst, p), s.payload(i), 0))
	}
	WaitRecorded(t, "journal", false, func() []Rec { return m.Records(t) }, sent)
}

// 9. The hardening target of the units issue.
func (s *sys) security(t *testing.T) {
	for _, u := range []struct {
		unit string
		max  float64
	}{{"spip.service", 0.5}, {"spip-redirect.service", 2.0}, {"spip-ship.service", 1.2}} {
		out, _ := s.m.Run("systemd-analyze", "security", "--no-pager", u.unit) // exits non-zero above its threshold
		match := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+) (\w+)`).FindStringSubmatch(out)
		if match == nil {
			t.Errorf("systemd-analyze security %s: no overall exposure line:\n%s", u.unit, tail([]byte(out), 20))
			continue
		}
		score, _ := strconv.ParseFloat(match[1], 64)
		t.Logf("%s: exposure %s %s (target ≤ %.1f)", u.unit, match[1], match[2], u.max)
		if score > u.max {
			t.Errorf("%s: exposure %.1f, above the target %.1f; the lines that cost:\n%s", u.unit, score, u.max, costly(out))
		}
	}
}

// costly keeps the ✗ lines of systemd-analyze security's table.
func costly(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "✗") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// 8. Remove and purge leave no table, no unit and no file behind. (The upgrade under traffic
// is scenario 10.)
func (s *sys) removePurge(t *testing.T) {
	m := s.m
	t.Logf("step: apt-get remove spip")
	m.Exec(t, "apt-get", "remove", "-y", "spip")
	if out, err := m.Run("nft", "list", "table", "inet", "spip"); err == nil {
		t.Errorf("table inet spip is still loaded after remove:\n%s", out)
	}
	for _, u := range []string{"spip.socket", "spip.service", "spip-redirect.service"} {
		if st := s.show(t, u, "ActiveState"); st != "inactive" {
			t.Errorf("%s is %s after remove, want inactive", u, st)
		}
	}
	t.Logf("step: apt-get purge spip")
	m.Exec(t, "apt-get", "purge", "-y", "spip")
	if out, err := m.Run("nft", "list", "table", "inet", "spip"); err == nil {
		t.Errorf("table inet spip is still loaded after purge:\n%s", out)
	}
	if out, _ := m.Run("systemctl", "list-unit-files", "--no-legend", "spip*"); strings.Contains(out, "spip") {
		t.Errorf("unit files left after purge:\n%s", out)
	}
	for _, u := range []string{"spip.socket", "spip.service", "spip-redirect.service"} {
		if st := s.show(t, u, "LoadState"); st != "not-found" {
			t.Errorf("%s: LoadState %s after purge, want not-found", u, st)
		}
	}
	// Everything on the container's own filesystem with spip in its name, but the .debs we copied in.
	left := m.Exec(t, "find", "/", "-xdev", "-name", "*spip*", "-not", "-path", "/srv/*")
	if strings.TrimSpace(left) != "" {
		t.Errorf("files left after purge:\n%s", left)
	}
	if out, _ := m.Run("dpkg-query", "-W", "spip"); !strings.Contains(out, "no packages found") {
		t.Errorf("dpkg still knows spip after purge: %s", out)
	}
}

// underLoad sends connections from four workers while action runs, and a little before and
// after it, and returns what was sent. Every connection must succeed: the socket stays open.
func (s *sys) underLoad(t *testing.T, what string, action func()) []Sent {
	var (
		mu    sync.Mutex
		sent  []Sent
		stop  atomic.Bool
		wg    sync.WaitGroup
		fails atomic.Int32
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1500 && !stop.Load(); i++ { // bounded
				dst := netns.SensorV4
				if (w+i)%3 == 0 {
					dst = netns.SensorV6
				}
				x, err := s.c.Send(netip.AddrPortFrom(dst, uint16(1024+w*1000+i%1000)), []byte(fmt.Sprintf("load %d %d\x00\xff", w, i)), 0)
				if err != nil {
					fails.Add(1)
					t.Errorf("under load: %v", err)
					return
				}
				mu.Lock()
				sent = append(sent, x)
				mu.Unlock()
				if s.loadPause > 0 {
					time.Sleep(s.loadPause)
				} else {
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	t.Logf("step: %s under traffic", what)
	action()
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	t.Logf("step: sent %d connections during %s (%d failed to connect)", len(sent), what, fails.Load())
	return sent
}

// send makes one connection and fails the test if it cannot.
func (s *sys) send(t *testing.T, dst netip.AddrPort, payload []byte, hold time.Duration) Sent {
	x, err := s.c.Send(dst, payload, hold)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// randomPorts returns n distinct ports, none of them excluded (22) or the listener's own.
func (s *sys) randomPorts(n int) []uint16 {
	seen := map[uint16]bool{22: true, 12345: true}
	var ps []uint16
	for _, p := range []uint16{1, 23, 80, 443, 65535} { // a few that matter to people, every time
		if len(ps) < n {
			ps, seen[p] = append(ps, p), true
		}
	}
	for len(ps) < n {
		p := uint16(1 + s.rnd.IntN(65535))
		if !seen[p] {
			ps, seen[p] = append(ps, p), true
		}
	}
	return ps
}

// payload i: text, binary, newlines and field injections, empty, and near the 4096-byte cap.
func (s *sys) payload(i int) []byte {
	switch i % 6 {
	case 0:
		return []byte(fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
	case 1:
		b := make([]byte, 1+s.rnd.IntN(300))
		for j := range b {
			b[j] = byte(s.rnd.IntN(256))
		}
		return b
	case 2:
		return []byte(fmt.Sprintf("%d\nMESSAGE_ID=0ac47f5aa9004466bb382a7164e382ab\nSPIP_DESTINATION_PORT=1\n\x00\xff\xfe", i))
	case 3:
		return nil
	case 4:
		return bytes.Repeat([]byte{0xc3, 0x28, 'A', 0}, 1000) // 4000 bytes: hex is 8000, over journalctl's 4096 without --all
	default:
		return []byte(fmt.Sprintf("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 %d ünïcödé ✓", i))
	}
}

func (s *sys) writeConfig(t *testing.T, config string) {
	if config == "" {
		// Back to the packaged file: restore it from the package's copy in /usr/share if there is
		// none, dpkg's conffile would be the reference; a file with only comments is the same.
		config = "# systest: built-in defaults\n"
	}
	s.m.WriteFile(t, "/etc/spip/spip.toml", []byte(config), 0o644)
}

// applyConfig writes s.config and applies it the way the packaged file says to:
// spip check && systemctl reload spip-redirect.service && systemctl restart spip.service.
func (s *sys) applyConfig(t *testing.T) {
	t.Logf("step: /etc/spip/spip.toml:\n%s", s.config)
	s.writeConfig(t, s.config)
	s.m.Exec(t, "spip", "check")
	s.m.Exec(t, "systemctl", "reload", "spip-redirect.service")
	s.m.Exec(t, "systemctl", "restart", "spip.service")
	s.requireActive(t, "spip.socket", "spip-redirect.service", "spip.service")
}

func (s *sys) show(t *testing.T, unit, prop string) string {
	return strings.TrimSpace(s.m.Exec(t, "systemctl", "show", "--value", "-p", prop, unit))
}

// showDuration reads a time span property, which systemctl show prints as "2s" or "1min 30s".
func (s *sys) showDuration(t *testing.T, unit, prop string) time.Duration {
	v := s.show(t, unit, prop)
	var total time.Duration
	for _, part := range strings.Fields(v) {
		d, err := time.ParseDuration(strings.Replace(part, "min", "m", 1))
		if err != nil {
			t.Fatalf("%s %s=%q: %v", unit, prop, v, err)
		}
		total += d
	}
	return total
}

// requireActive waits (bounded) while the units are starting, and fails with their status when
// one of them does not end up active. Units pulled in with Wants= start after the command that
// pulled them in has returned.
func (s *sys) requireActive(t *testing.T, units ...string) {
	t.Helper()
	for _, u := range units {
		st := s.show(t, u, "ActiveState")
		for i := 0; i < 150 && (st == "activating" || st == "reloading"); i++ {
			time.Sleep(200 * time.Millisecond)
			st = s.show(t, u, "ActiveState")
		}
		if st != "active" {
			status, _ := s.m.Run("systemctl", "status", "--no-pager", "-l", "-n", "30", u)
			t.Fatalf("%s is %s, want active:\n%s", u, st, status)
		}
	}
}

// waitListening waits (bounded) until something inside the container listens on TCP port.
func (s *sys) waitListening(t *testing.T, port int) {
	for range 100 {
		out, _ := s.m.Run("ss", "-Hltn", fmt.Sprintf("sport = :%d", port))
		if strings.TrimSpace(out) != "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nothing listens on port %d in the container after 10s", port)
}
