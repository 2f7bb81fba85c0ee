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

// TestClickHouse ships a fleet's journal files into a real clickhouse-server with spip ship's
// own shipper, then checks that the report computed by SQL equals the JSON mirror's report of
// the same records, with and without filters.
func TestClickHouse(t *testing.T) {
	netns.RequireTools(t, "journalctl", journalRemote, "clickhouse-server")
	recs := generate(genSpec{seed: 22, n: 1500, span: time.Hour, hostile: true, events: true, big: 100})
	dir := journalDir(t, recs)
	srv := clickhouse.Start(t)
	srv.Exec(ship.Schema(ship.DefaultNames))
	client := ship.NewClient(srv.URL(), "", "")
	var conns, events int
	for _, g := range recs {
		if g.r.Kind == 0 {
			conns++
		} else {
			events++
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := ship.New(ship.Config{Client: client, Names: ship.DefaultNames, StateDir: t.TempDir(), Directory: dir,
		BatchSize: 5000, FlushInterval: 200 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, _ := srv.Query("SELECT count() FROM spip.connections")
		e, _ := srv.Query("SELECT count() FROM spip.events")
		if c == strconv.Itoa(conns) && e == strconv.Itoa(events) {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("shipped %s connections and %s events, want %d and %d", c, e, conns, events)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	// A batch shipped twice (at least once delivery) must not count twice.
	srv.MustQuery("INSERT INTO spip.connections SELECT * FROM spip.connections WHERE destination_port = 80")

	for _, opt := range []Options{
		{},
		{Sensor: "edge-1", Top: 3},
		{Port: 80, Since: genStart.Add(5 * time.Minute), Until: genStart.Add(50 * time.Minute)},
	} {
		got, err := CollectClickHouse(context.Background(), client, ship.DefaultNames, opt)
		if err != nil {
			t.Fatal(err)
		}
		want := reportOf(t, recs, opt, false)
		if got.Totals.Connections == 0 || len(got.Losses.Dropped) == 0 {
			t.Errorf("%+v: %d connections, %d drop lines", opt, got.Totals.Connections, len(got.Losses.Dropped))
		}
		if d := reportDiff(want, got); d != "" {
			t.Errorf("%+v: the ClickHouse report differs from the mirror's:\n%s", opt, d)
		}
	}
}
