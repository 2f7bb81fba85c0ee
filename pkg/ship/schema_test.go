package ship_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"spip/pkg/ship"
	"spip/pkg/test/clickhouse"
	"spip/pkg/test/netns"
)

var update = flag.Bool("update", false, "rewrite packaging/clickhouse/*.sql from the field table")

// The packaged schema files are what `spip ship --schema` and `--cluster-schema` print: one
// field table makes both.
func TestPackagedSchema(t *testing.T) {
	for file, want := range map[string]string{
		"schema.sql":  ship.Schema(ship.DefaultNames),
		"cluster.sql": ship.ClusterSchema(ship.DefaultNames),
	} {
		path := filepath.Join(netns.RepoRoot(), "packaging", "clickhouse", file)
		if *update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("packaging/clickhouse/%s is not what the field table makes: go test ./pkg/ship -run TestPackagedSchema -update", file)
		}
	}
}

// The packaged files run on Debian's clickhouse-server (18.16), and the retention the README
// documents (dropping a day's partition) works on them.
func TestPackagedSchemaRuns(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	body, err := os.ReadFile(filepath.Join(netns.RepoRoot(), "packaging", "clickhouse", "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Exec(string(body))
	srv.Exec(string(body)) // IF NOT EXISTS: running it twice is harmless
	srv.MustQuery(`INSERT INTO spip.connections (timestamp, session_id) VALUES (1700000000, 'a'), (1700086400, 'b')`)
	if got := srv.MustQuery("SELECT count(DISTINCT partition) FROM system.parts WHERE database = 'spip' AND table = 'connections' AND active"); got != "2" {
		t.Fatalf("partitions: %s, want one per day", got)
	}
	srv.MustQuery("ALTER TABLE spip.connections DROP PARTITION '2023-11-14'")
	if got := srv.MustQuery("SELECT session_id FROM spip.connections"); got != "b" {
		t.Errorf("after DROP PARTITION: %q", got)
	}
	srv.MustQuery("TRUNCATE TABLE spip.connections")
	_ = clickhouse.User
}

// The README's example queries run on the packaged schema (on Debian's 18.16) and count what
// they say.
func TestReadmeQueries(t *testing.T) {
	t.Parallel()
	srv := shared(t)
	n := names("readme")
	schema(t, srv, n)
	body, err := os.ReadFile(filepath.Join(netns.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(body), "<!-- clickhouse-queries:begin -->")
	block, _, ok2 := strings.Cut(block, "<!-- clickhouse-queries:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no clickhouse-queries block")
	}
	block = strings.NewReplacer("```sql", "", "```", "").Replace(block)
	day := time.Now().Unix()
	srv.MustQuery(fmt.Sprintf(`INSERT INTO readme.connections (timestamp, session_id, sensor, source_ip, destination_port, ja4) VALUES
		(%d, 'a', 's1', '198.51.100.1', 22, ''), (%d, 'a', 's1', '198.51.100.1', 22, ''), (%d, 'b', 's1', '198.51.100.2', 443, 't13d'),
		(%d, 'c', 's1', '198.51.100.2', 443, 't13d'), (%d, 'd', 's2', '198.51.100.1', 443, 'x')`, day, day, day, day, day-86400))
	stmts := clickhouse.Statements(block)
	if len(stmts) != 3 {
		t.Fatalf("%d queries in the README block, want 3", len(stmts))
	}
	want := []string{
		// top ports per sensor per day: s2 yesterday, s1 today (443 twice, 22 once: the duplicate counts once)
		"s2\t443\t1\ns1\t443\t2\ns1\t22\t1",
		// new sources per day: 198.51.100.1 yesterday, 198.51.100.2 today
		"1\n1",
		// top JA4 per port
		"443\tt13d\t2\n443\tx\t1",
	}
	cut := []func(string) string{
		func(s string) string { return dropColumns(s, 1) }, // the day
		func(s string) string { return dropColumns(s, 1) },
		func(s string) string { return s },
	}
	for i, q := range stmts {
		q = strings.ReplaceAll(q, "spip.connections", "readme.connections")
		got := cut[i](srv.MustQuery(q + " FORMAT TabSeparated"))
		if got != want[i] {
			t.Errorf("query %d:\n%s\ngot:\n%s\nwant:\n%s", i+1, q, got, want[i])
		}
	}
}

// dropColumns removes the first n tab-separated columns of every line.
func dropColumns(s string, n int) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		f := strings.SplitN(l, "\t", n+1)
		lines[i] = f[len(f)-1]
	}
	return strings.Join(lines, "\n")
}
