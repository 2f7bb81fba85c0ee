package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// TestServeUnprivileged runs the README's first command the way a person without root would, in
// the default (tproxy) mode: spip cannot make its own socket transparent, says so (on standard
// error and in a warning record), and still records direct connections.
func TestServeUnprivileged(t *testing.T) {
	netns.Require(t) // root, to drop to nobody
	// A copy nobody can reach: the build's own directory is private to root.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "spip")
	if out, err := exec.Command("cp", netns.Binary(t), bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(bin, "serve", "--config", "/dev/null", "--listen", addr, "--json", "-", "--journald", "off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	var c net.Conn
	for i := 0; i < 100; i++ {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("spip never listened on %s: %v\n%s", addr, err, errb.String())
	}
	if _, err := c.Write([]byte("unprivileged")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("spip exited with %v\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), "need a transparent socket") {
		t.Errorf("no warning about the non-transparent socket:\n%s", errb.String())
	}
	var found, warned bool
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		if r["event"] == "connection" && r["payload"] == "unprivileged" && r["close_reason"] == "eof" {
			found = true
		}
		if msg, _ := r["message"].(string); r["event"] == "warning" && strings.Contains(msg, "transparent") {
			warned = true
		}
	}
	if !found {
		t.Errorf("connection not recorded:\n%s", out.String())
	}
	if !warned {
		t.Errorf("no warning record about the non-transparent socket:\n%s", out.String())
	}
}
