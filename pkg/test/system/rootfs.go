// Package system boots a throwaway Debian container, installs the spip package in it and sends it
// real traffic: the system test of the whole user path (install, units, redirect, journald).
//
// TestSystem builds the package twice with `make deb` (the changelog's version, and the same
// tree as a newer version for the upgrade), boots a copy of a cached debootstrap rootfs with
// systemd-nspawn in the sensor namespace of a netns.Pair, runs commands in it with nsenter,
// and runs the scenarios of issue 3 in sequence on that one container:
//
//	go test ./pkg/test/system -count=1 -v -timeout 30m
//
// It needs root and systemd-nspawn, debootstrap, nft, ip, nsenter and dpkg-buildpackage; it
// skips without them (fails in CI) and with -short. The rootfs is cached under
// /var/cache/spip-test, keyed by its package list. To iterate on the scenarios without the
// package builds, pass two built packages, the base and a newer version, and optionally the
// previous release (otherwise built from its commit, PreviousRelease):
//
//	SPIP_SYSTEST_DEBS=dist/spip_0.2.0_amd64.deb,dist/spip_0.2.1_amd64.deb[,prev/spip_0.1.0_amd64.deb] go test ./pkg/test/system ...
//
// Every step is logged; a failed scenario is repaired to the shared state before the next one
// runs. The container, its copy and the namespaces go away when the test ends, also on failure
// and on SIGINT/SIGTERM; what a killed run left behind is removed by the next run.
package system

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The rootfs every container starts from. Its cache directory is named after a hash of what goes
// into it, so changing the package list builds a new one instead of reusing a stale one.
const (
	suite  = "bookworm"
	mirror = "http://deb.debian.org/debian"
	// openssh-server: the boot-order scenarios move sshd to another port, as ssh.service and as
	// ssh.socket. BootWith disables both in every copy, so a container has no sshd unless a
	// scenario enables it.
	rootfsInclude = "systemd,systemd-sysv,dbus,nftables,iproute2,procps,netcat-openbsd,logrotate,systemd-journal-remote,openssh-server"
)

// cacheRoot holds the cached rootfs; SPIPTEST_CACHE moves it, so the cold path (a machine
// without the cache) can be run beside a warm one.
var cacheRoot = func() string {
	if d := os.Getenv("SPIPTEST_CACHE"); d != "" {
		return d
	}
	return "/var/cache/spip-test"
}()

// legacyCache is where the first cache was built by hand with the same package list; it is
// reused when it really holds every package of rootfsInclude.
var legacyCache = cacheRoot + "/bookworm-v1"

// Rootfs returns a cached bookworm rootfs, building it with debootstrap when it is missing.
// Callers must never boot it directly: boot a copy.
func Rootfs(t testing.TB) string {
	t.Helper()
	sum := sha256.Sum256([]byte(suite + " " + mirror + " " + rootfsInclude))
	dir := filepath.Join(cacheRoot, suite+"-"+hex.EncodeToString(sum[:])[:8])
	if isDir(dir) {
		return dir
	}
	if isDir(legacyCache) && hasPackages(legacyCache, strings.Split(rootfsInclude, ",")) {
		return legacyCache
	}
	t.Logf("step: debootstrap %s into %s (once; takes a few minutes)", suite, dir)
	if err := os.MkdirAll(cacheRoot, 0o755); err != nil {
		t.Fatalf("rootfs: %v", err)
	}
	tmp, err := os.MkdirTemp(cacheRoot, ".build-")
	if err != nil {
		t.Fatalf("rootfs: %v", err)
	}
	defer os.RemoveAll(tmp)
	// MkdirTemp makes the directory 0700 and it becomes the container's "/": dbus-daemon (user
	// messagebus) then cannot read its configuration and systemd never reaches "running".
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatalf("rootfs: %v", err)
	}
	start := time.Now()
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+rootfsInclude, suite, tmp, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap: %v\n%s", err, tail(out, 40))
	}
	// The rename makes the cache appear whole or not at all; a killed build leaves only .build-*.
	if err := os.Rename(tmp, dir); err != nil && !isDir(dir) {
		t.Fatalf("rootfs: %v", err)
	}
	t.Logf("step: rootfs built in %s", time.Since(start).Round(time.Second))
	return dir
}

// hasPackages reports whether the dpkg database under root lists every package as installed.
func hasPackages(root string, pkgs []string) bool {
	status, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		return false
	}
	installed := map[string]bool{}
	for _, stanza := range bytes.Split(status, []byte("\n\n")) {
		var name string
		ok := false
		for _, line := range strings.Split(string(stanza), "\n") {
			if v, found := strings.CutPrefix(line, "Package: "); found {
				name = v
			}
			if line == "Status: install ok installed" {
				ok = true
			}
		}
		if ok {
			installed[name] = true
		}
	}
	for _, p := range pkgs {
		if !installed[p] {
			return false
		}
	}
	return true
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// tail returns the last n lines of out, for error messages that stay readable.
func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"…"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
