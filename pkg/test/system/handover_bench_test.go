//go:build measure

package system

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// TestHandOverBench measures how long a restart of spip.service takes to hand N open sessions
// to the next process, in the booted container with the package installed: N silent
// connections (SPIP_HANDOVER_SIZES, default 1000,3000,10000) are opened and read by spip, then
// `systemctl restart spip.service` runs. It reports the old process's own hand-over time (from
// its stopping event: store every connection in PID 1, then the state, each waited for with
// BARRIER=1) and how long systemctl restart took (it returns once the new process is ready);
// the new process's STATUS= must then say it took them all over, and once every client has
// sent a byte and closed, each session must be recorded once with close_reason eof. SPIP_HANDOVER_DEB is the package (make deb).
// Nothing here asserts a speed.
//
//	make deb && SPIP_HANDOVER_DEB=$(ls dist/spip_*.deb) go test -tags measure -count=1 \
//	  -timeout 30m -run '^TestHandOverBench$' -v ./pkg/test/system
func TestHandOverBench(t *testing.T) {
	netns.Require(t, "systemd-nspawn", "debootstrap", "nft", "ip", "nsenter")
	deb := os.Getenv("SPIP_HANDOVER_DEB")
	if deb == "" {
		t.Skip("SPIP_HANDOVER_DEB names the package to measure")
	}
	sizes := []int{1000, 3000, 10000}
	if s := os.Getenv("SPIP_HANDOVER_SIZES"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	m := Boot(t)
	s := &sys{m: m, c: NewClient(m.Net.Client), rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))}
	m.Install(t, deb)
	// Silent sessions that outlast the measurement.
	s.config = "[session]\nfirst_byte_timeout = \"10m\"\nidle_timeout = \"10m\"\nmax_duration = \"30m\"\n"
	s.writeConfig(t, s.config)
	m.Exec(t, "systemctl", "enable", "--now", "spip.socket")
	m.Exec(t, "systemctl", "start", "spip.service")
	s.requireActive(t, "spip.socket", "spip-redirect.service", "spip.service")
	var rows []string
	for _, n := range sizes {
		conns := make([]*net.TCPConn, 0, n)
		var sent []Sent
		ports := s.randomPorts(min(n, 60000))
		for i := range n {
			dst := netip.AddrPortFrom(netns.SensorV4, ports[i%len(ports)])
			conn, src, err := s.c.Dial(dst)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			conns = append(conns, conn)
			sent = append(sent, Sent{Src: src, Dst: dst, Payload: []byte{'x'}})
		}
		if !waitStatus(t, s, fmt.Sprintf("active %d/", n)) {
			t.Fatalf("spip does not read the %d sessions", n)
		}
		from := since()
		start := time.Now()
		m.Exec(t, "systemctl", "restart", "spip.service")
		restart := time.Since(start)
		if !waitStatus(t, s, fmt.Sprintf("taken over %d", n)) {
			t.Fatalf("not taken over; spip.service since the restart:\n%s",
				m.Exec(t, "journalctl", "--no-pager", "-u", "spip.service", "-o", "cat", "--since", from, "-n", "40"))
		}
		counts, took := s.handOvers(t, from)
		store := s.show(t, "spip.service", "NFileDescriptorStore")
		for _, c := range conns {
			c.Write([]byte{'x'})
			c.CloseWrite()
		}
		got := WaitRecorded(t, fmt.Sprintf("%d sessions", n), false, func() []Rec { return m.Records(t) }, sent)
		for src, r := range got {
			if r.CloseReason != "eof" {
				t.Errorf("%s: close_reason %q, want eof", src, r.CloseReason)
				break
			}
		}
		for _, c := range conns {
			c.Close()
		}
		row := fmt.Sprintf("| %d | %v | %v | %v | %s |", n, counts, took, restart.Round(10*time.Millisecond), store)
		t.Log(row)
		rows = append(rows, row)
		time.Sleep(2 * time.Second)
	}
	t.Logf("\n| open sessions | handed over | old process's hand-over | systemctl restart | NFileDescriptorStore after |\n|---|---|---|---|---|\n%s", strings.Join(rows, "\n"))
}

// waitStatus waits (bounded: 5 minutes) until spip.service's STATUS= contains want.
func waitStatus(t *testing.T, s *sys, want string) bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	st := ""
	for time.Now().Before(deadline) {
		st = s.show(t, "spip.service", "StatusText")
		if strings.Contains(st, want) {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("STATUS= %q never said %q", st, want)
	return false
}

// TestUpgradeFromPrevious installs the release before the hand-over (SPIP_PREV_DEB, built from
// an older commit, a lower version) and upgrades to SPIP_HANDOVER_DEB with sessions open. The
// old process cannot hand over, so it must record them as shutdown exactly once, and each peer
// must see its close; the new process must start clean (nothing taken over, no warning, PID 1's
// store empty), and its first restart must hand over.
//
//	git worktree add --detach /tmp/prev <commit before the hand-over>
//	make -C /tmp/prev deb DIST=/tmp/prevdist DEBVERSION=0.1.0~prev1 && make deb
//	SPIP_PREV_DEB=/tmp/prevdist/spip_0.1.0~prev1_amd64.deb SPIP_HANDOVER_DEB=$(ls dist/spip_*.deb) \
//	  go test -tags measure -count=1 -run '^TestUpgradeFromPrevious$' -v ./pkg/test/system
func TestUpgradeFromPrevious(t *testing.T) {
	netns.Require(t, "systemd-nspawn", "debootstrap", "nft", "ip", "nsenter")
	prev, deb := os.Getenv("SPIP_PREV_DEB"), os.Getenv("SPIP_HANDOVER_DEB")
	if prev == "" || deb == "" {
		t.Skip("SPIP_PREV_DEB and SPIP_HANDOVER_DEB name the packages")
	}
	m := Boot(t)
	s := &sys{m: m, c: NewClient(m.Net.Client), rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))}
	m.Install(t, prev)
	// Sessions that outlast apt-get: only the upgrade's restart may end them.
	s.writeConfig(t, "[session]\nfirst_byte_timeout = \"2m\"\nidle_timeout = \"2m\"\n")
	m.Exec(t, "systemctl", "enable", "--now", "spip.socket")
	m.Exec(t, "systemctl", "start", "spip.service")
	s.requireActive(t, "spip.socket", "spip-redirect.service", "spip.service")
	from := since()

	t.Logf("step: 40 open sessions (20 sent 3 bytes, 20 silent), then the upgrade from %s", prev)
	busy, silent := s.openSlow(t, 20, 3, false, nil), s.openSlow(t, 20, 0, false, nil)
	time.Sleep(3 * time.Second)
	m.Install(t, deb)
	busy.wait(t, time.Minute)
	silent.wait(t, time.Minute)
	got := WaitRecorded(t, "journal after the upgrade", false, func() []Rec { return m.Records(t) }, append(busy.sent, silent.sent...))
	for src, r := range got {
		if r.CloseReason != "shutdown" {
			t.Errorf("%s: close_reason %q, want shutdown (the previous release cuts them)", src, r.CloseReason)
		}
	}
	if n := s.show(t, "spip.service", "NFileDescriptorStore"); n != "0" {
		t.Errorf("PID 1 holds %s descriptors for spip.service after the upgrade, want 0", n)
	}
	log := m.Exec(t, "journalctl", "--no-pager", "-o", "cat", "-t", "spip", "--since", from)
	if strings.Contains(log, "taking over") || strings.Contains(log, "hand-over") {
		t.Errorf("the new process took something over or warned about a hand-over after the previous release:\n%s", log)
	}
	t.Logf("spip's events since the upgrade:\n%s", log)

	t.Logf("step: 40 slow sessions, then systemctl restart spip.service on the new release")
	sl := s.openSlow(t, 40, 6, true, nil)
	time.Sleep(2 * time.Second)
	m.Exec(t, "systemctl", "restart", "spip.service")
	sl.wait(t, time.Minute)
	got = WaitRecorded(t, "journal after the restart", false, func() []Rec { return m.Records(t) }, sl.sent)
	for src, r := range got {
		if r.CloseReason != "eof" {
			t.Errorf("%s: close_reason %q, want eof (handed over)", src, r.CloseReason)
		}
	}
}
