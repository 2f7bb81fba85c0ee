package flood

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// The JSON mirror on a full disk: records are dropped and counted, spip warns and keeps
// accepting, and once space returns the mirror recovers by itself and says what it lost.
func TestJSONMirrorDiskFull(t *testing.T) {
	netns.Require(t, "mount", "umount")
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "spip-floodtest", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})

	s := startSpipJSON(t, filepath.Join(mnt, "records.json"), `
[session]
first_byte_timeout = "1h"
idle_timeout = "1h"
[output]
status_interval = "100ms"
summary_interval = "1s"
`)
	// Fill the disk.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for i := 0; i < 1000; i++ {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	const conns = 50
	payload := strings.Repeat("x", 1000)
	d := newDialer(t, s.port, loopbacks(2, 1)...)
	for i := 0; i < conns; i++ {
		d.send(d.dial(), []byte(fmt.Sprintf("full-%d-%s", i, payload)))
		d.closeAll()
	}
	st := s.waitFor("lost records while the disk is full", func(st status) bool {
		return st.Recorded == conns && strings.Contains(st.Line, "no space left on device") && !strings.Contains(st.Line, " 0 lost")
	})
	t.Logf("disk full: %s", st.Line)
	until(t, "the warning", func() bool { return strings.Contains(s.Stderr(), "json sink failing") })

	// Space returns: the mirror recovers without a restart or a SIGHUP.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	nd := newDialer(t, s.port, loopbacks(3, 1)...)
	nd.send(nd.dial(), []byte("after"))
	nd.closeAll()
	until(t, "recovery", func() bool { return strings.Contains(s.Stderr(), "json sink recovered") })
	s.waitFor("the late record", func(st status) bool { return st.Recorded == conns+1 })
	var lost uint64
	st = s.waitFor("a summary of the loss", func(st status) bool {
		_, after, _ := strings.Cut(st.Line, "json: ")
		var w uint64
		_, err := fmt.Sscanf(after, "%d written, %d lost", &w, &lost)
		return err == nil && !strings.Contains(st.Line, "failing")
	})
	time.Sleep(1500 * time.Millisecond) // one summary interval
	s.stop()

	inFile, late := 0, 0
	var summarized uint64
	// A write cut short by ENOSPC leaves its fragment in the file, ended by a newline so the next
	// record starts a line of its own; the sink counts the cut record as lost.
	recs, torn := readRecordsTorn(t, s.json)
	if torn > 1 {
		t.Errorf("%d torn lines in the file after one disk-full episode", torn)
	}
	for _, r := range recs {
		switch {
		case r.SessionID != "":
			inFile++
			if r.Payload == "after" {
				late++
			}
		case r.Event == "summary" && r.Sink == "json":
			summarized = r.DroppedTotal
		}
	}
	if late != 1 {
		t.Errorf("the connection after recovery has %d records in the file", late)
	}
	if uint64(inFile)+lost < conns+1 {
		t.Errorf("%d connection records in the file and %d lost, %d connections: some vanished uncounted", inFile, lost, conns+1)
	}
	if summarized == 0 || summarized > lost {
		t.Errorf("summary record reports %d lost, the sink counted %d", summarized, lost)
	}
	t.Logf("%d connections: %d records in the file, %d records lost (counted), summary says %d, %d torn line(s)", conns+1, inFile, lost, summarized, torn)
}
