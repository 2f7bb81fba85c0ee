package stats

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's two ends: a real terminal for the code under test.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

func TestStyleFor(t *testing.T) {
	_, tty := openPTY(t)
	tests := []struct {
		name  string
		tty   bool
		env   []string
		color bool
		ascii bool
	}{
		{"terminal, UTF-8", true, []string{"LANG=C.UTF-8", "TERM=xterm"}, true, false},
		{"terminal, NO_COLOR", true, []string{"LANG=C.UTF-8", "NO_COLOR=1"}, false, false},
		{"terminal, TERM=dumb", true, []string{"LANG=en_US.utf8", "TERM=dumb"}, false, false},
		{"terminal, C locale", true, []string{"LANG=C"}, true, true},
		{"terminal, no locale", true, nil, true, true},
		{"LC_ALL wins", true, []string{"LC_ALL=C", "LANG=C.UTF-8"}, true, true},
		{"LC_CTYPE before LANG", true, []string{"LC_CTYPE=de_DE.UTF-8", "LANG=C"}, true, false},
		{"piped", false, []string{"LANG=C.UTF-8"}, false, false},
	}
	for _, tt := range tests {
		var w io.Writer = &bytes.Buffer{}
		if tt.tty {
			w = tty
		}
		st := StyleFor(w, tt.env)
		if st.Color != tt.color || st.ASCII != tt.ascii || st.Width != 80 {
			t.Errorf("%s: %+v, want color %v ascii %v", tt.name, st, tt.color, tt.ascii)
		}
	}
}
