// Package sd is spip's side of systemd: the passed listening socket, sd_notify state and the watchdog.
package sd

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// FDName is the socket unit's FileDescriptorName=.
const FDName = "spip"

// PassedListener returns the socket systemd passed (LISTEN_FDS), preferring the one named FDName,
// or nil when none was passed. It clears the LISTEN_* variables so children don't see them.
// Files rather than Listeners: Listeners wraps each fd in a net.Listener, and spip runs its
// own event loop on the raw descriptor.
func PassedListener() (*os.File, error) {
	files := activation.Files(true)
	if len(files) == 0 {
		return nil, nil
	}
	var pick *os.File
	for _, f := range files {
		if f.Name() == FDName && pick == nil {
			pick = f
		}
	}
	if pick == nil {
		pick = files[0]
	}
	for _, f := range files {
		if f != pick {
			f.Close()
		}
	}
	if len(files) > 1 {
		return pick, fmt.Errorf("systemd passed %d sockets; using %q, closing the rest", len(files), pick.Name())
	}
	return pick, nil
}

// Notify sends state to systemd if spip runs under it; elsewhere it does nothing.
func Notify(state ...string) error {
	_, err := daemon.SdNotify(false, strings.Join(state, "\n"))
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Notify states.
const (
	Ready     = daemon.SdNotifyReady
	Reloading = daemon.SdNotifyReloading
	Stopping  = daemon.SdNotifyStopping
	Watchdog  = daemon.SdNotifyWatchdog
)

// Status formats a STATUS= line.
func Status(s string) string { return "STATUS=" + strings.ReplaceAll(s, "\n", " ") }

// WatchdogInterval is how often to ping the watchdog (half of WatchdogSec=), or 0 when it is off.
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}
