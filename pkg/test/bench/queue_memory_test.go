//go:build measure

package bench

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/test/netns"
)

// TestQueueMemory measures spip's peak resident memory (VmHWM) while its only output is
// stalled and connections with the largest payloads keep coming: the sink queue then fills to
// its bounds (output.queue_size records, output.queue_bytes bytes) and stays there. The output
// is a JSON mirror on a FIFO nobody reads, which stalls the same queue code as a stopped
// journald. Run: go test -tags measure -run TestQueueMemory -v ./pkg/test/bench (root).
func TestQueueMemory(t *testing.T) {
	netns.Require(t, "ip")
	for _, c := range []struct {
		name     string
		cap      int // session.payload_cap; each client sends this many bytes
		conns    int
		settings []string
	}{
		{"defaults, 4 KiB payloads", 4096, 40000, nil},
		{"payload_cap 64 KiB, 64 KiB payloads", 65536, 6000, []string{"SPIP_SESSION_PAYLOAD_CAP=65536"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := netns.NewPair(t, "qmem")
			dir := t.TempDir()
			fifo := filepath.Join(dir, "stalled.json")
			if err := unix.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := netns.Command(p.Sensor, netns.Binary(t), "serve", "--config", "/dev/null", "--listen", "[::]:12345", "--journald", "off", "--json", fifo)
			cmd.Env = append([]string{"PATH=/usr/bin:/bin", "SPIP_CAPTURE_MODE=redirect", "SPIP_SESSION_FIRST_BYTE_TIMEOUT=1s", "SPIP_SESSION_IDLE_TIMEOUT=1s"}, c.settings...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			var spipPid int
			for i := 0; i < 100 && spipPid == 0; i++ { // ip netns exec execs spip: same pid
				time.Sleep(50 * time.Millisecond)
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); err == nil && strings.TrimSpace(string(b)) == "spip" {
					spipPid = cmd.Process.Pid
				}
			}
			if spipPid == 0 {
				t.Fatalf("spip did not start: %s", stderr.String())
			}
			payload := bytes.Repeat([]byte("A"), c.cap)
			dst := netip.AddrPortFrom(netns.SensorV4, 12345).String()
			var wg sync.WaitGroup
			var mu sync.Mutex
			failed := 0
			per := c.conns / 8
			start := time.Now()
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = netns.In(p.Client, func() error {
						for i := 0; i < per; i++ {
							conn, err := net.DialTimeout("tcp", dst, 5*time.Second)
							if err != nil {
								mu.Lock()
								failed++
								mu.Unlock()
								continue
							}
							_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
							_, _ = conn.Write(payload)
							conn.Close()
						}
						return nil
					})
				}()
			}
			wg.Wait()
			time.Sleep(3 * time.Second) // the last sessions end (idle timeout 1s) and queue
			hwm, rss := status(t, spipPid, "VmHWM:"), status(t, spipPid, "VmRSS:")
			// Not stopped with SIGTERM: the writer is blocked on the FIFO for good, and the drain
			// waits for it (a FIFO nobody reads is the one output that never times out).
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Logf("%s: %d connections of %d bytes in %s (%d failed to connect); peak RSS (VmHWM) %.1f MiB, RSS at the end %.1f MiB",
				c.name, 8*per, c.cap, time.Since(start).Round(time.Second), failed, float64(hwm)/(1<<20), float64(rss)/(1<<20))
		})
	}
}

func status(t *testing.T, pid int, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}
