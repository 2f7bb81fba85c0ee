package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/test/netns"
)

// TestServeHUPDuringStartup: logrotate may send SIGHUP while spip is still starting. spip must
// take it (reopen its outputs once they exist), not die of it; and a routine rotation writes no
// warning. The configuration file is a FIFO, so spip is held in start-up, before READY=1, for
// as long as the test needs: the HUP arrives there, never in a race.
func TestServeHUPDuringStartup(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "spip.toml")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	jsonPath := filepath.Join(dir, "records.jsonl")
	cmd := exec.Command(netns.Binary(t), "serve", "--config", fifo, "--listen", addr, "--journald", "off", "--json", jsonPath)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})

	// Wait (bounded) until a thread of spip is blocked opening the FIFO: reading its configuration.
	blocked := false
	for i := 0; i < 400 && !blocked; i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", cmd.Process.Pid))
		for _, w := range tasks {
			if b, _ := os.ReadFile(w); strings.TrimSpace(string(b)) == "wait_for_partner" {
				blocked = true
			}
		}
		if !blocked {
			time.Sleep(25 * time.Millisecond)
		}
	}
	if !blocked {
		t.Fatalf("spip never opened its configuration FIFO\n%s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let a default action act, if it is one: it would end spip here
	// Non-blocking: with no reader (spip died of the HUP) the open fails at once instead of hanging.
	w, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("spip died of a SIGHUP during start-up: %v\n%s", err, out.String())
		case <-time.After(bound):
			t.Fatal(err)
		}
	}
	_, _ = w.WriteString("[capture]\nmode = \"redirect\"\n")
	w.Close()

	waitFor(t, &proc{cmd: cmd, out: &out, done: make(chan struct{})}, jsonPath, "the started record", func(rs []map[string]any) bool {
		return countEvent(rs, "started") == 1
	})
	select {
	case err := <-done:
		t.Fatalf("spip exited after a SIGHUP during start-up: %v\n%s", err, out.String())
	default:
	}
	// A routine rotation once running: RELOADING=1/READY=1 for systemd, no record.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("spip after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(bound):
		t.Fatal("spip did not exit after SIGTERM")
	}
	for _, r := range readRecords(t, jsonPath) {
		if r["event"] == "warning" {
			t.Errorf("a warning record for a routine SIGHUP: %v", r)
		}
	}
}
