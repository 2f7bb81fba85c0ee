package ship_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

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
