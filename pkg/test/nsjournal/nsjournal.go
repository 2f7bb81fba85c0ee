// Package nsjournal runs a systemd-journald of a test's own: a journal namespace on the host.
package nsjournal

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// Tool is Debian's journald (package systemd).
const Tool = "/lib/systemd/systemd-journald"

// conf is the namespace's journald.conf: records are stored, never forwarded, and no rate limit
// drops any (spip.service lifts it too, with LogRateLimitBurst=). Files rotate at journald's
// default size.
const conf = `[Journal]
Storage=persistent
RateLimitBurst=0
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
SystemMaxUse=2G
`

var serial atomic.Int32

// Journal is a running journald: entries sent to Socket with the native protocol are stored in
// journal files in Dir (read them with journalctl -D Dir), as on a sensor: the same journald,
// the same trusted fields, the same files.
type Journal struct {
	Namespace, Socket, Dir string
	cmd                    *exec.Cmd
	log                    bytes.Buffer
}

// Start runs journald for a namespace of its own; it is stopped, and its files removed, when the
// test ends. It needs root (its socket is under /run/systemd, its files under /var/log/journal).
func Start(t testing.TB) *Journal {
	t.Helper()
	netns.Require(t, Tool)
	id, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("spiptest%dn%d", os.Getpid(), serial.Add(1))
	j := &Journal{
		Namespace: ns,
		Socket:    "/run/systemd/journal." + ns + "/socket",
		Dir:       filepath.Join("/var/log/journal", strings.TrimSpace(string(id))+"."+ns),
	}
	// journald reads a namespace's journald@NS.conf from /etc only; drop-ins also from /run.
	dropin := "/run/systemd/journald@" + ns + ".conf.d"
	t.Cleanup(func() {
		for _, p := range []string{dropin, j.Dir, filepath.Dir(j.Socket)} {
			_ = os.RemoveAll(p)
		}
	})
	if err := os.MkdirAll(dropin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dropin, "test.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	j.cmd = exec.Command(Tool, ns)
	j.cmd.Stdout, j.cmd.Stderr = &j.log, &j.log
	if err := j.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = j.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = j.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = j.cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(j.Socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		select {
		case <-done:
			t.Fatalf("journald for namespace %s ended: %s", ns, j.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("journald for namespace %s made no socket in 10 s", ns)
		}
	}
	return j
}

// Pid is journald's process id (to read its CPU time).
func (j *Journal) Pid() int { return j.cmd.Process.Pid }
