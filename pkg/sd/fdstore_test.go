package sd_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"spip/pkg/sd"
)

// fakePID1 reads notify datagrams with their descriptors the way PID 1 does: it keeps
// FDSTORE=1 descriptors by FDNAME=, drops them on FDSTOREREMOVE=1, and answers BARRIER=1 by
// closing the descriptor that came with it.
type fakePID1 struct {
	mu    sync.Mutex // the race detector cannot see the barrier's ordering through the kernel
	fd    int
	store map[string][]int
	msgs  []string
}

func newFakePID1(t *testing.T) *fakePID1 {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	p := &fakePID1{fd: fd, store: map[string][]int{}}
	t.Setenv("NOTIFY_SOCKET", path)
	t.Cleanup(func() {
		unix.Close(fd)
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, fds := range p.store {
			for _, f := range fds {
				unix.Close(f)
			}
		}
	})
	go p.serve()
	return p
}

func (p *fakePID1) serve() {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(sd.MaxFDsPerMessage*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(p.fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != nil {
			return
		}
		var fds []int
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if r, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, r...)
			}
		}
		p.mu.Lock()
		kv := map[string]string{}
		for _, l := range strings.Split(string(buf[:n]), "\n") {
			k, v, _ := strings.Cut(l, "=")
			kv[k] = v
		}
		p.msgs = append(p.msgs, string(buf[:n]))
		switch {
		case kv["BARRIER"] == "1":
			for _, f := range fds {
				unix.Close(f)
			}
		case kv["FDSTORE"] == "1":
			p.store[kv["FDNAME"]] = append(p.store[kv["FDNAME"]], fds...)
		case kv["FDSTOREREMOVE"] == "1":
			for _, f := range p.store[kv["FDNAME"]] {
				unix.Close(f)
			}
			delete(p.store, kv["FDNAME"])
		}
		p.mu.Unlock()
	}
}

func TestStoreAndRemove(t *testing.T) {
	p := newFakePID1(t)
	var fds []int
	for range 600 { // three messages
		var pp [2]int
		if err := unix.Pipe2(pp[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(pp[0])
		defer unix.Close(pp[1])
		fds = append(fds, pp[0])
	}
	n, err := sd.Store("spip-test", fds)
	if err != nil || n != len(fds) {
		t.Fatalf("Store: %d of %d, %v", n, len(fds), err)
	}
	// Store returned after the barrier: PID 1 has every descriptor by then.
	p.mu.Lock()
	if got := len(p.store["spip-test"]); got != len(fds) {
		t.Errorf("the store holds %d descriptors after Store returned, want %d", got, len(fds))
	}
	for i, m := range p.msgs[:3] {
		if m != "FDSTORE=1\nFDNAME=spip-test" {
			t.Errorf("message %d: %q", i, m)
		}
	}
	p.mu.Unlock()
	if err := sd.Remove("spip-test"); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	if len(p.store) != 0 {
		t.Errorf("the store still holds %v after Remove", p.store)
	}
	p.mu.Unlock()
}

func TestStoreWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if _, err := sd.Store("x", []int{0}); !errors.Is(err, sd.ErrNoNotifySocket) {
		t.Errorf("Store without NOTIFY_SOCKET: %v", err)
	}
}

func TestStopJobFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := sd.ReadStopJob(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no file: %v, want ErrNotExist (a stop without ExecStop=)", err)
	}
	want := sd.Stop{PID: 4242, Unit: "spip.service", Job: "restart", StoreFD: 4}
	if err := sd.WriteStopJob(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := sd.ReadStopJob(dir)
	if err != nil || got != want || !got.Restart() {
		t.Errorf("ReadStopJob: %+v, %v; want %+v", got, err, want)
	}
	// Read once: a later stop must not find this answer.
	if _, err := sd.ReadStopJob(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("second read: %v, want ErrNotExist", err)
	}
	for _, s := range []sd.Stop{{Job: "stop", StoreFD: 4}, {Job: "restart"}, {Job: ""}} {
		if s.Restart() {
			t.Errorf("%+v counts as a restart", s)
		}
	}
	os.WriteFile(filepath.Join(dir, sd.StopJobFile), []byte("job=restart\nstore_max=lots\n"), 0o644)
	if _, err := sd.ReadStopJob(dir); err == nil {
		t.Errorf("a garbled answer was accepted")
	}
}
