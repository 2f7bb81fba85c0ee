package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/sd"
	"spip/pkg/sensor"
	"spip/pkg/sensor/handover"
)

// stopQueryTimeout bounds the question to PID 1 at stop: without an answer the stop is a stop.
const stopQueryTimeout = 3 * time.Second

// adopted is what the previous process left in PID 1's file descriptor store.
type adopted struct {
	state   *handover.State
	fds     []int
	warning string
}

func (a *adopted) close() {
	for _, fd := range a.fds {
		unix.Close(fd)
	}
	a.fds = nil
}

// takeOver takes the previous process's sessions out of PID 1's store: the connections and the
// state that describes them. A state that fails validation is dropped with a warning; its
// connections are then recorded as cut (Sensor.Adopt).
func takeOver(p sd.Passed) *adopted {
	a := &adopted{}
	if len(p.Sessions) == 0 && len(p.State) == 0 {
		return a
	}
	var problems []error
	for _, f := range p.Sessions {
		fds, err := handover.Unpack(int(f.Fd()), handover.MaxSessions-len(a.fds))
		f.Close()
		a.fds = append(a.fds, fds...)
		if err != nil {
			problems = append(problems, err)
		}
	}
	if len(p.Sessions) > 1 {
		problems = append(problems, fmt.Errorf("%d session carriers, want one", len(p.Sessions)))
	}
	switch {
	case len(p.State) == 1:
		blob, err := handover.ReadMemfd(int(p.State[0].Fd()), handover.Limit(len(a.fds)))
		if err == nil {
			a.state, err = handover.Decode(blob, len(a.fds))
		}
		if err != nil {
			problems = append(problems, err)
		}
	case len(p.State) > 1:
		problems = append(problems, fmt.Errorf("%d state blobs, want one", len(p.State)))
	case len(a.fds) > 0:
		problems = append(problems, errors.New("no state blob"))
	}
	for _, f := range p.State {
		f.Close()
	}
	// Out of the store before any of them is recorded or closed: while PID 1 holds a copy, a
	// close sends the peer nothing, and a crash from here on must not hand them over again.
	if err := sd.Remove(sd.StoreSessions, sd.StoreState); err != nil && !errors.Is(err, sd.ErrNoNotifySocket) {
		problems = append(problems, fmt.Errorf("emptying the store: %w", err))
	}
	if len(problems) > 0 {
		a.warning = fmt.Sprintf("hand-over from the previous process: %v", errors.Join(problems...))
		if a.state == nil && len(a.fds) > 0 {
			a.warning += fmt.Sprintf("; its %d connections are recorded as shutdown", len(a.fds))
		}
	}
	return a
}

// prepareStop decides, when spip is asked to stop, whether this is a restart that hands the
// open sessions to the next process: only when `spip stop-job`, run as spip.service's
// ExecStop= just before the SIGTERM, found that PID 1's job for the unit is a restart. Anything
// else (a stop, a reboot, systemctl kill, no answer) records them as shutdown and empties the
// store. It returns a warning to log, or "".
func prepareStop(sens *sensor.Sensor) string {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return "" // not under systemd: no store to hand over to
	}
	dir := os.Getenv("RUNTIME_DIRECTORY")
	var stop sd.Stop
	var err error
	if dir == "" {
		err = errors.New("no RuntimeDirectory=")
	} else {
		stop, err = sd.ReadStopJob(dir)
		switch {
		case errors.Is(err, os.ErrNotExist):
			err = nil // no ExecStop= ran: systemctl kill, or a stop from outside systemd
		case err == nil && stop.PID != os.Getpid():
			// An answer for another process (left by one that died before reading it).
			err = fmt.Errorf("the answer is for pid %d", stop.PID)
		}
	}
	if err != nil || !stop.Restart() {
		_ = sd.Remove(sd.StoreSessions, sd.StoreState)
		if err != nil {
			return fmt.Sprintf("stop: cannot tell a restart from a stop (%v): open sessions are recorded as shutdown", err)
		}
		if stop.Job == "restart" {
			return "restart: FileDescriptorStoreMax= is 0: open sessions are recorded as shutdown"
		}
		return ""
	}
	sens.HandOverOnStop(handOff(int(stop.StoreFD)))
	return ""
}

// runStopJob is `spip stop-job`, spip.service's ExecStop=+ (as root, outside the sandbox): it
// asks PID 1 which job the unit is running and leaves the answer in RuntimeDirectory= for the
// main process, which gets its SIGTERM right after.
func runStopJob(ctx context.Context, env *Env, args []string) error {
	fs, _ := flagSet("stop-job", env)
	if err := parse(fs, args); err != nil {
		return err
	}
	dir := ""
	for _, kv := range env.Environ {
		if v, ok := strings.CutPrefix(kv, "RUNTIME_DIRECTORY="); ok {
			dir = v
		}
	}
	if dir == "" {
		return errors.New("RUNTIME_DIRECTORY is not set: run only as spip.service's ExecStop=")
	}
	mainPID := 0
	for _, kv := range env.Environ {
		if v, ok := strings.CutPrefix(kv, "MAINPID="); ok {
			mainPID, _ = strconv.Atoi(v)
		}
	}
	if mainPID <= 0 {
		return errors.New("MAINPID is not set: the main process is gone, nothing to hand over")
	}
	ctx, cancel := context.WithTimeout(ctx, stopQueryTimeout)
	defer cancel()
	stop, err := sd.StopJob(ctx)
	if err != nil {
		return err
	}
	stop.PID = mainPID
	return sd.WriteStopJob(dir, stop)
}

// handOff stores the sessions and their state in PID 1's store: the connections in one carrier
// socket (handover.Pack), and the state that describes those it holds. On any failure it takes
// back what it stored, so the next process never finds a session this one records.
func handOff(storeMax int) sensor.HandOff {
	return func(st *handover.State, fds []int) (int, error) {
		if storeMax < 2 {
			return 0, fmt.Errorf("FileDescriptorStoreMax=%d leaves no room", storeMax)
		}
		undo := func(err error) (int, error) {
			if rerr := sd.Remove(sd.StoreSessions, sd.StoreState); rerr != nil {
				err = errors.Join(err, fmt.Errorf("taking them back: %w", rerr))
			}
			return 0, err
		}
		carrier, n, err := handover.Pack(fds)
		if err != nil {
			return 0, err
		}
		defer unix.Close(carrier)
		st.Sessions = st.Sessions[:n]
		mfd, err := handover.Memfd(handover.Encode(st))
		if err != nil {
			return 0, err
		}
		defer unix.Close(mfd)
		if _, err := sd.Store(sd.StoreSessions, []int{carrier}); err != nil {
			return undo(err)
		}
		if _, err := sd.Store(sd.StoreState, []int{mfd}); err != nil {
			return undo(err)
		}
		return n, nil
	}
}
