package deb

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"spip/pkg/test/netns"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPackage builds the package the way CI and a user do (`make deb`), then checks it with
// lintian --pedantic, and checks its files, conffiles, control fields and the stamped version.
// The install/upgrade/remove/purge behaviour is checked for real in a booted container by
// pkg/test/system.
func TestPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the whole package (minutes); not in -short")
	}
	netns.RequireTools(t, "make", "go", "dpkg-buildpackage", "dpkg-parsechangelog", "dh", "go-md2man", "lintian", "dpkg-deb")
	root := netns.RepoRoot()
	version := strings.TrimSpace(run(t, "dpkg-parsechangelog", "-l", filepath.Join(root, "debian", "changelog"), "-SVersion"))
	arch := strings.TrimSpace(run(t, "dpkg", "--print-architecture"))

	dist := t.TempDir()
	cmd := exec.Command("make", "-C", root, "deb", "DIST="+dist)
	// nocheck: the package build must not run the test suite, which would run this test again.
	cmd.Env = append(os.Environ(), "DEB_BUILD_OPTIONS=nocheck")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	deb := filepath.Join(dist, "spip_"+version+"_"+arch+".deb")
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("make deb made %v, want %s", debs, filepath.Base(deb))
	}
	for _, d := range debs {
		if b := filepath.Base(d); b != filepath.Base(deb) && b != "spip-dbgsym_"+version+"_"+arch+".deb" {
			t.Errorf("unexpected package %s", b)
		}
	}

	t.Run("lintian", func(t *testing.T) {
		// Tags go to standard output; the warning about running as root goes to standard error.
		cmd := exec.Command("lintian", append([]string{"--pedantic", "--fail-on", "error,warning,pedantic"}, debs...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("lintian --pedantic: %v\n%s%s", err, out, stderr.String())
		}
	})

	t.Run("contents", func(t *testing.T) {
		files := map[string]string{} // path → mode
		for _, line := range strings.Split(run(t, "dpkg-deb", "-c", deb), "\n") {
			f := strings.Fields(line)
			if len(f) < 6 {
				continue
			}
			files[strings.TrimPrefix(f[5], ".")] = f[0]
		}
		want := map[string]string{
			"/usr/bin/spip":                                                                    "-rwxr-xr-x",
			"/lib/systemd/system/spip.socket":                                                  "-rw-r--r--",
			"/lib/systemd/system/spip-udp.socket":                                              "-rw-r--r--",
			"/lib/systemd/system/spip.service":                                                 "-rw-r--r--",
			"/lib/systemd/system/spip-redirect.service":                                        "-rw-r--r--",
			"/lib/systemd/system/spip-ship.service":                                            "-rw-r--r--",
			"/usr/share/doc/spip/clickhouse/schema.sql":                                        "-rw-r--r--",
			"/usr/share/doc/spip/clickhouse/cluster.sql":                                       "-rw-r--r--",
			"/etc/spip/spip.toml":                                                              "-rw-r--r--",
			"/etc/logrotate.d/spip":                                                            "-rw-r--r--",
			"/usr/lib/systemd/catalog/spip.catalog":                                            "-rw-r--r--",
			"/usr/share/man/man8/spip.8.gz":                                                    "-rw-r--r--",
			"/usr/share/man/man5/spip.toml.5.gz":                                               "-rw-r--r--",
			"/usr/share/doc/spip/README.md.gz":                                                 "-rw-r--r--",
			"/usr/share/doc/spip/changelog.gz":                                                 "-rw-r--r--",
			"/usr/share/doc/spip/NEWS.Debian.gz":                                               "-rw-r--r--",
			"/usr/share/doc/spip/copyright":                                                    "-rw-r--r--",
			"/usr/share/doc/spip/examples/ipv4-only.conf":                                      "-rw-r--r--",
			"/usr/share/doc/spip/examples/elastic/index-template.json":                         "-rw-r--r--",
			"/usr/share/doc/spip/examples/elastic/index-template.opensearch.json":              "-rw-r--r--",
			"/usr/share/doc/spip/examples/elastic/ingest-pipeline.json":                        "-rw-r--r--",
			"/usr/share/doc/spip/examples/elastic/filebeat.yml":                                "-rw-r--r--",
			"/usr/share/doc/spip/examples/fleet/make-certs.sh":                                 "-rwxr-xr-x",
			"/usr/share/doc/spip/examples/fleet/sensor/journal-upload.conf":                    "-rw-r--r--",
			"/usr/share/doc/spip/examples/fleet/sensor/systemd-journal-upload.service.conf":    "-rw-r--r--",
			"/usr/share/doc/spip/examples/fleet/collector/spip-fleet.nft":                      "-rw-r--r--",
			"/usr/share/doc/spip/examples/fleet/collector/journal-remote.conf":                 "-rw-r--r--",
			"/usr/share/doc/spip/examples/fleet/collector/systemd-journal-remote.service.conf": "-rw-r--r--",
			"/usr/share/lintian/overrides/spip":                                                "-rw-r--r--",
		}
		for path, mode := range want {
			if got, ok := files[path]; !ok {
				t.Errorf("%s is missing", path)
			} else if got != mode {
				t.Errorf("%s has mode %s, want %s", path, got, mode)
			}
		}
		for path, mode := range files {
			if _, ok := want[path]; !ok && !strings.HasPrefix(mode, "d") {
				t.Errorf("unexpected file %s", path)
			}
		}
	})

	t.Run("control", func(t *testing.T) {
		fields := map[string]string{}
		for _, line := range strings.Split(run(t, "dpkg-deb", "-f", deb), "\n") {
			if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
				fields[k] = v
			}
		}
		for k, want := range map[string]string{
			"Package": "spip", "Version": version, "Architecture": arch,
			"Section": "net", "Priority": "optional",
		} {
			if fields[k] != want {
				t.Errorf("%s: %q, want %q", k, fields[k], want)
			}
		}
		if deps := strings.Split(fields["Depends"], ", "); !contains(deps, "nftables") {
			t.Errorf("Depends: %q, want nftables in it", fields["Depends"])
		}
		if fields["Maintainer"] == "" || fields["Description"] == "" {
			t.Errorf("Maintainer or Description empty: %v", fields)
		}

		ctrl := t.TempDir()
		run(t, "dpkg-deb", "-e", deb, ctrl)
		conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(string(conffiles)); strings.Join(got, " ") != "/etc/logrotate.d/spip /etc/spip/spip.toml" {
			t.Errorf("conffiles: %v", got)
		}
		// What the scripts do is proven by installing in pkg/test/system; this only catches a
		// packaging change that would start or restart a unit, or stop one on upgrade.
		if _, err := os.Stat(filepath.Join(ctrl, "preinst")); err == nil {
			t.Errorf("a preinst exists: dh_installsystemd would stop units before an upgrade")
		}
		for _, script := range []string{"postinst", "prerm", "postrm"} {
			body, err := os.ReadFile(filepath.Join(ctrl, script))
			if err != nil {
				t.Fatal(err)
			}
			for _, bad := range []string{"deb-systemd-invoke start", "deb-systemd-invoke restart", "systemctl start", "systemctl restart", "--now"} {
				if strings.Contains(string(body), bad) {
					t.Errorf("%s contains %q", script, bad)
				}
			}
		}
		prerm, _ := os.ReadFile(filepath.Join(ctrl, "prerm"))
		if !strings.Contains(string(prerm), "deb-systemd-invoke stop spip-ship.service spip.socket spip-udp.socket spip.service spip-redirect.service") {
			t.Errorf("prerm does not stop the units on remove:\n%s", prerm)
		}
	})

	t.Run("version", func(t *testing.T) {
		dir := t.TempDir()
		run(t, "dpkg-deb", "-x", deb, dir)
		got := strings.TrimSpace(run(t, filepath.Join(dir, "usr/bin/spip"), "version"))
		if got != "spip "+version {
			t.Errorf("spip version: %q, want %q", got, "spip "+version)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
