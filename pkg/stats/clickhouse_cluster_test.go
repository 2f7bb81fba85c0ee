package stats

import (
	"context"
	"strconv"
	"testing"
	"time"

	"spip/pkg/ship"
	"spip/pkg/test/clickhouse"
	"spip/pkg/test/netns"
)

// TestClickHouseCluster: on a two-shard cluster (the schema of spip ship --cluster-schema) the
// report is computed through the Distributed tables and counts every shard's rows once, also
// when a batch arrived twice.
func TestClickHouseCluster(t *testing.T) {
	netns.RequireTools(t, "clickhouse-server")
	shards := clickhouse.Cluster(t, 2)
	for _, s := range shards {
		s.Exec(ship.ClusterSchema(ship.DefaultNames))
	}
	recs := generate(genSpec{seed: 23, n: 600, span: time.Hour, events: true})
	for i := range recs {
		recs[i].extra = nil
	}
	client := ship.NewClient(shards[0].URL(), "", "")
	var conns []byte
	var events []byte
	for _, g := range recs {
		line := jsonLines([]genRec{g})
		if g.r.Kind == 0 {
			conns = append(conns, line...)
		} else {
			events = append(events, line...)
		}
	}
	ctx := context.Background()
	for range 2 { // the second time, as a shipper would after a lost acknowledgement
		if err := client.Insert(ctx, "spip", "connections", conns); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Insert(ctx, "spip", "events", events); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range recs {
		if g.r.Kind == 0 {
			n++
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		c, _ := shards[0].Query("SELECT count() FROM spip.connections")
		if c == strconv.Itoa(2*n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	got, err := CollectClickHouse(ctx, client, ship.DefaultNames, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Totals.Connections != uint64(n) {
		t.Errorf("%d connections through the Distributed table, want %d", got.Totals.Connections, n)
	}
	// The rows went in as the mirror's lines, whose payload text is lossy (spip ship inserts
	// the exact bytes, TestClickHouse covers that): compare everything but the payloads.
	want := reportOf(t, recs, Options{}, false)
	want.Payloads, got.Payloads = PayloadTable{}, PayloadTable{}
	if d := reportDiff(want, got); d != "" {
		t.Errorf("the cluster's report differs from the mirror's:\n%s", d)
	}
}
