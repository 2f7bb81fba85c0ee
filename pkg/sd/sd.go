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

// UDPName is spip-udp.socket's FileDescriptorName=.
const UDPName = "spip-udp"

// Names of the descriptors spip keeps in PID 1's file descriptor store across a restart.
const (
	StoreSessions = "spip-sessions" // a socket that holds the open connections in flight
	StoreState    = "spip-state"    // the sealed memfd that describes them
)

// Passed is what systemd passed at start: the sockets, and what spip's previous process left
// in the file descriptor store.
type Passed struct {
	Listener *os.File   // named FDName, else the first unnamed one
	UDP      *os.File   // named UDPName: spip-udp.socket, when it is enabled
	Sessions []*os.File // named StoreSessions; more than one only if something went wrong
	State    []*os.File // named StoreState; more than one only if something went wrong
}

// PassedFiles returns the sockets systemd passed (LISTEN_FDS): the listener, preferring the one
// named FDName, the UDP socket named UDPName, and the descriptors named StoreSessions and
// StoreState. Listener is nil when no socket was passed. Any other descriptor is closed (and
// named in the error). It clears the LISTEN_* variables so children don't see them. Files
// rather than Listeners: Listeners wraps each fd in a net.Listener, drops what is not a
// listener, and spip runs its own event loop on the raw descriptors.
func PassedFiles() (Passed, error) {
	var p Passed
	var others []*os.File
	for _, f := range activation.Files(true) {
		switch {
		case f.Name() == FDName && p.Listener == nil:
			p.Listener = f
		case f.Name() == UDPName && p.UDP == nil:
			p.UDP = f
		case f.Name() == StoreSessions:
			p.Sessions = append(p.Sessions, f)
		case f.Name() == StoreState:
			p.State = append(p.State, f)
		default:
			others = append(others, f)
		}
	}
	if p.Listener == nil && len(others) > 0 {
		p.Listener, others = others[0], others[1:]
	}
	if len(others) == 0 {
		return p, nil
	}
	names := make([]string, len(others))
	for i, f := range others {
		names[i] = f.Name()
		f.Close()
	}
	return p, fmt.Errorf("systemd passed %d sockets; using %q, closing the rest (%s)", len(others)+1, p.Listener.Name(), strings.Join(names, ", "))
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
