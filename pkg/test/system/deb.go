package system

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"spip/pkg/test/netns"
)

// Build is a `make deb` running in the background; Wait returns the .deb it made.
type Build struct {
	Version string
	done    chan struct{}
	deb     string
	err     error
}

// PreviousRelease is the commit spip 0.1.0 was released from, the package hosts run before this
// one: its spip.socket has no Mark=, and its redirect unit renders the old tables. The upgrade
// scenario builds it from the repository's history.
const PreviousRelease = "4536d14b0ac087001e97adaf8db2dfc96cca6d1a"

// StartDeb starts `make deb` into a temporary directory. An empty version builds
// debian/changelog's; another builds the same tree as that version (Makefile DEBVERSION=).
func StartDeb(t testing.TB, version string) *Build {
	t.Helper()
	return startDeb(t, version, "")
}

// StartDebFrom starts `make deb` of an earlier commit of this repository (its tree taken with
// git archive), as that commit's changelog version. A clone without that commit (a shallow one)
// fails the build with the command that fetches it.
func StartDebFrom(t testing.TB, rev string) *Build {
	t.Helper()
	return startDeb(t, "", rev)
}

func startDeb(t testing.TB, version, rev string) *Build {
	t.Helper()
	b := &Build{Version: version, done: make(chan struct{})}
	// Named like the machine, so a killed run's leftovers are cleared with it (cleanStale).
	dist, err := os.MkdirTemp("", fmt.Sprintf("%ssys-%d-deb-", netns.Prefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		<-b.done // never remove the directory under a running build
		os.RemoveAll(dist)
	})
	go func() {
		defer close(b.done)
		start := time.Now()
		tree := netns.RepoRoot()
		if rev != "" {
			var err error
			if tree, err = archive(rev, dist); err != nil {
				b.err = err
				return
			}
		}
		args := []string{"-C", tree, "deb", "DIST=" + dist}
		if version != "" {
			args = append(args, "DEBVERSION="+version)
		}
		cmd := exec.Command("make", args...)
		// nocheck: the package build must not run the test suite, which would run this test again.
		cmd.Env = append(os.Environ(), "DEB_BUILD_OPTIONS=nocheck")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("make %s: %w\n%s", strings.Join(args, " "), err, tail(out, 40))
			return
		}
		debs, _ := filepath.Glob(filepath.Join(dist, "spip_*.deb"))
		if len(debs) != 1 {
			b.err = fmt.Errorf("make deb made %d spip_*.deb files in %s, want 1: %v", len(debs), dist, debs)
			return
		}
		b.deb = debs[0]
		b.Version = debVersion(debs[0])
		t.Logf("step: built %s in %s", filepath.Base(b.deb), time.Since(start).Round(time.Second))
	}()
	return b
}

// archive writes the tree of commit rev into a new directory under dir and returns it.
func archive(rev, dir string) (string, error) {
	repo := netns.RepoRoot()
	if out, err := exec.Command("git", "-C", repo, "cat-file", "-e", rev+"^{commit}").CombinedOutput(); err != nil {
		return "", fmt.Errorf("commit %s is not in this clone (a shallow clone? run git fetch --unshallow): %w %s", rev, err, out)
	}
	tree := filepath.Join(dir, "src-"+rev[:12])
	if err := os.Mkdir(tree, 0o755); err != nil {
		return "", err
	}
	cmd := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", repo, rev, tree)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("git archive %s: %w\n%s", rev, err, out)
	}
	return tree, nil
}

// Prebuilt is a Build that is already done: a .deb someone built before.
func Prebuilt(deb string) *Build {
	b := &Build{deb: deb, Version: debVersion(deb), done: make(chan struct{})}
	close(b.done)
	if _, err := os.Stat(deb); err != nil {
		b.err = fmt.Errorf("prebuilt package: %w", err)
	}
	return b
}

// Wait waits for the build and returns the path of its .deb, failing the test if it failed.
func (b *Build) Wait(t testing.TB) string {
	t.Helper()
	<-b.done
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.deb
}

// ChangelogVersion is debian/changelog's newest version.
func ChangelogVersion(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("dpkg-parsechangelog", "-l", filepath.Join(netns.RepoRoot(), "debian/changelog"), "-SVersion").Output()
	if err != nil {
		t.Fatalf("dpkg-parsechangelog: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// debVersion reads the version from a file name spip_<version>_<arch>.deb.
func debVersion(path string) string {
	parts := strings.Split(strings.TrimSuffix(filepath.Base(path), ".deb"), "_")
	if len(parts) != 3 {
		return ""
	}
	return parts[1]
}

// Install copies a .deb into the container and installs it with apt, as an operator would.
func (m *Machine) Install(t testing.TB, deb string) string {
	t.Helper()
	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	// /srv, not /tmp: nspawn mounts a fresh tmpfs over the container's /tmp.
	in := "/srv/" + filepath.Base(deb)
	m.WriteFile(t, in, data, 0o644)
	t.Logf("step: apt-get install %s", in)
	return m.Exec(t, "apt-get", "install", "-y", "--no-install-recommends",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", in)
}
