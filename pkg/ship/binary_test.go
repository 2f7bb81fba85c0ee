package ship_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"spip/pkg/ship"
	"spip/pkg/test/clickhouse"
	"spip/pkg/test/journalfile"
	"spip/pkg/test/netns"
)

// shipCmd returns `spip ship` for the database db on srv, reading jdir and keeping its cursor in
// state, with password as the password file's content.
func shipCmd(t *testing.T, srv *clickhouse.Server, db, user, password, jdir, state string, batch int) *exec.Cmd {
	t.Helper()
	return shipConfCmd(t, fmt.Sprintf("[ship]\nurl = %q\ndatabase = %q\nuser = %q\nbatch_size = %d\nflush_interval = \"200ms\"\n", srv.URL(), db, user, batch),
		password, jdir, state)
}

// shipConfCmd is shipCmd with the configuration file's text given.
func shipConfCmd(t *testing.T, body, password, jdir, state string) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "spip.toml")
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(netns.Binary(t), "ship", "--config", conf, "--directory", jdir, "--state-directory", state, "--password-file", pw)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	return cmd
}

// The shipper killed with SIGKILL in the middle of its work and started again loses nothing;
// batches sent again (here: the cursor of an early batch put back, as if every acknowledgement
// after it had been lost) are duplicates that OPTIMIZE … FINAL removes.
func TestKilledShipper(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	schema(t, srv, names("killed"))
	jdir, state := t.TempDir(), t.TempDir()
	w := journalfile.Open(t, jdir, "sensor", "sensor-killed")
	const records = 60000
	for i := 0; i < records; i++ {
		if err := w.Write(conn(i, []byte("killed"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := shipCmd(t, srv, "killed", clickhouse.User, clickhouse.Password, jdir, state, 2000)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// Keep the first saved cursor; kill once some batches, not all, are in.
	var first string
	var shipped int
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if c, err := os.ReadFile(filepath.Join(state, "cursor")); err == nil && first == "" {
			first = string(c)
		}
		shipped, _ = strconv.Atoi(srv.MustQuery("SELECT count() FROM killed.connections"))
		if shipped >= 10000 && first != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if shipped >= records || first == "" {
		t.Fatalf("killed too late: %d of %d shipped, first cursor %q\n%s", shipped, records, first, stderr.String())
	}
	t.Logf("killed with %d of %d records in ClickHouse", shipped, records)
	if err := os.WriteFile(filepath.Join(state, "cursor"), []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}

	// Merges would remove the duplicates at any moment; hold them off to count them.
	srv.MustQuery("SYSTEM STOP MERGES killed.connections")
	stderr.Reset()
	cmd = shipCmd(t, srv, "killed", clickhouse.User, clickhouse.Password, jdir, state, 2000)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waitCount(t, srv, "SELECT uniqExact(session_id) FROM killed.connections", records, 2*time.Minute)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("spip ship after SIGTERM: %v\n%s", err, stderr.String())
	}
	before := srv.MustQuery("SELECT count() FROM killed.connections")
	srv.MustQuery("SYSTEM START MERGES killed.connections")
	srv.MustQuery("OPTIMIZE TABLE killed.connections FINAL")
	after := srv.MustQuery("SELECT count() FROM killed.connections")
	t.Logf("count() %s before OPTIMIZE FINAL, %s after", before, after)
	if n, _ := strconv.Atoi(before); n <= records {
		t.Errorf("count() before OPTIMIZE = %s: the batches sent again should be there twice", before)
	}
	if after != strconv.Itoa(records) {
		t.Errorf("count() after OPTIMIZE FINAL = %s, want %d", after, records)
	}
}

// Bad credentials and a missing table are errors retrying cannot cure: spip ship says which and
// exits with EX_CONFIG (78), which the unit does not restart.
func TestRejected(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	schema(t, srv, names("rejected"))
	srv.MustQuery("CREATE DATABASE IF NOT EXISTS notables")
	for _, c := range []struct {
		name, db, user, password, want string
	}{
		{"wrong password", "rejected", clickhouse.User, "wrong", "wrong password"},
		{"unknown user", "rejected", "nobody", "", "unknown user"},
		{"missing table", "notables", clickhouse.User, clickhouse.Password, "table does not exist"},
		{"missing database", "nodatabase", clickhouse.User, clickhouse.Password, "database does not exist"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := shipCmd(t, srv, c.db, c.user, c.password, t.TempDir(), t.TempDir(), 100)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				code := -1
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				}
				if code != 78 || !strings.Contains(out.String(), c.want) {
					t.Errorf("exit %d (%v), want 78 and %q:\n%s", code, err, c.want, out.String())
				}
				t.Logf("exit %d: %s", code, strings.TrimSpace(out.String()))
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("still running after 30 s:\n%s", out.String())
			}
		})
	}
}

var _ = ship.DefaultNames
