package sd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/dbus"
)

// StopJobFile is where `spip stop-job` (spip.service's ExecStop=) leaves its answer, in the
// service's RuntimeDirectory=, for the main process to read when its SIGTERM comes.
const StopJobFile = "stop-job"

// Stop is what PID 1 is doing to spip's unit when spip is asked to stop.
type Stop struct {
	PID     int // the main process the answer is for ($MAINPID of ExecStop=)
	Unit    string
	Job     string // the unit's job type ("restart", "stop", …), "" when it has none
	StoreFD uint32 // the unit's FileDescriptorStoreMax=
}

// Restart says whether the stop is a restart that keeps the file descriptor store: PID 1
// starts the unit again at once and passes the store to the new process. systemd 252 empties
// the store on any other stop, and a SIGTERM of its own (systemctl kill) comes with no job.
func (s Stop) Restart() bool { return s.Job == "restart" && s.StoreFD > 0 }

// StopJob asks PID 1 which job its unit for this process is running. On systemd 252 a SIGTERM
// does not say whether it is a restart or a stop; the job does. It needs root: it talks to
// PID 1's private bus, which needs no dbus-daemon, and falls back to the system bus.
// (spip.service's own dynamic user cannot ask: dbus-daemon runs with
// SYSTEMD_NSS_DYNAMIC_BYPASS=1, cannot resolve dynamic users, and drops their connections.)
func StopJob(ctx context.Context) (Stop, error) {
	var st Stop
	conn, err := dbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		var err2 error
		if conn, err2 = dbus.NewSystemConnectionContext(ctx); err2 != nil {
			return st, fmt.Errorf("PID 1's bus: %w; system bus: %w", err, err2)
		}
	}
	defer conn.Close()
	st.Unit, err = conn.GetUnitNameByPID(ctx, uint32(os.Getpid()))
	if err != nil {
		return st, fmt.Errorf("which unit is pid %d: %w", os.Getpid(), err)
	}
	jobs, err := conn.ListJobsContext(ctx)
	if err != nil {
		return st, fmt.Errorf("jobs: %w", err)
	}
	for _, j := range jobs {
		if j.Unit == st.Unit {
			st.Job = j.JobType
		}
	}
	p, err := conn.GetServicePropertyContext(ctx, st.Unit, "FileDescriptorStoreMax")
	if err != nil {
		return st, fmt.Errorf("%s FileDescriptorStoreMax: %w", st.Unit, err)
	}
	if v, ok := p.Value.Value().(uint32); ok {
		st.StoreFD = v
	}
	return st, nil
}

// WriteStopJob leaves st in dir for the main process: written whole, then renamed into place,
// readable by the service's user.
func WriteStopJob(dir string, st Stop) error {
	body := fmt.Sprintf("pid=%d\nunit=%s\njob=%s\nstore_max=%d\n", st.PID, st.Unit, st.Job, st.StoreFD)
	tmp := filepath.Join(dir, StopJobFile+".tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil { // UMask= applies to ExecStop= too
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, StopJobFile))
}

// ReadStopJob reads and removes what `spip stop-job` left in dir. No file means no answer: a
// stop that did not go through ExecStop= (systemctl kill), or one whose question failed.
func ReadStopJob(dir string) (Stop, error) {
	var st Stop
	path := filepath.Join(dir, StopJobFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	_ = os.Remove(path)
	if len(b) > 4096 {
		return st, errors.New("stop-job: too long")
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "pid":
			n, err := strconv.Atoi(v)
			if err != nil {
				return Stop{}, fmt.Errorf("stop-job: pid %q: %w", v, err)
			}
			st.PID = n
		case "unit":
			st.Unit = v
		case "job":
			st.Job = v
		case "store_max":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return Stop{}, fmt.Errorf("stop-job: store_max %q: %w", v, err)
			}
			st.StoreFD = uint32(n)
		}
	}
	return st, nil
}
