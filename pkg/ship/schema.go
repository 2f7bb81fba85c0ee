package ship

import (
	"fmt"
	"strings"

	"spip/pkg/record"
)

// Names are the ClickHouse database and tables the shipper writes to.
type Names struct {
	Database, Table, EventsTable string
}

// DefaultNames are the names the packaged schema creates.
var DefaultNames = Names{Database: "spip", Table: "connections", EventsTable: "events"}

// ClusterName is the cluster the cluster schema's Distributed tables name: the operator defines
// it in ClickHouse's remote_servers.
const ClusterName = "spip"

// The tables' engines. Duplicates (a batch sent again after a lost acknowledgement) are removed by
// ReplacingMergeTree when parts merge (or at once with OPTIMIZE … FINAL), so the sorting key must
// identify a record: the session id for connections; for spip's own events the sensor, the time
// in microseconds and the kind. One partition per day of the record's own time: retention is
// ALTER TABLE … DROP PARTITION (Debian's ClickHouse 18.16 has no TTL).
const (
	partitionBy      = "toDate(toDateTime(timestamp))"
	connectionsOrder = "session_id"
	eventsOrder      = "(sensor, time, event)"
	connectionsShard = "cityHash64(session_id)"
	eventsShard      = "cityHash64(sensor, time)"
)

func header(what string) string {
	return "-- spip: " + what + "\n" +
		"-- Generated from spip's field table by `spip ship --schema`; columns are named as the JSON\n" +
		"-- keys. Runs on ClickHouse 18.16 (Debian 12) and later:\n" +
		"--     clickhouse-client --multiquery < FILE\n\n"
}

func columnsSQL(t *table) string {
	var b strings.Builder
	b.WriteString("(\n")
	for i, c := range t.columns {
		fmt.Fprintf(&b, "    `%s` %s", c.key, c.chType)
		if i < len(t.columns)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString(")")
	return b.String()
}

// Schema returns the statements that create the database and both tables on one server.
func Schema(n Names) string {
	conn, ev := newTable(record.ScopeConnection), newTable(record.ScopeEvent)
	var b strings.Builder
	b.WriteString(header("the tables `spip ship` inserts into, on one ClickHouse server."))
	fmt.Fprintf(&b, "CREATE DATABASE IF NOT EXISTS %s;\n\n", n.Database)
	b.WriteString("-- One row per connection. Count each session once: uniqExact(session_id), or SELECT … FINAL.\n")
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s\n%s\nENGINE = ReplacingMergeTree\nPARTITION BY %s\nORDER BY %s;\n\n",
		n.Database, n.Table, columnsSQL(conn), partitionBy, connectionsOrder)
	b.WriteString("-- spip's own records: started, stopping, summary (drops), warning.\n")
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s\n%s\nENGINE = ReplacingMergeTree\nPARTITION BY %s\nORDER BY %s;\n",
		n.Database, n.EventsTable, columnsSQL(ev), partitionBy, eventsOrder)
	return b.String()
}

// ClusterSchema returns the statements to run on every shard of the cluster named ClusterName:
// local tables that hold the rows and Distributed tables (the ones `spip ship` inserts into) that
// shard by a hash of the session id, so all copies of a session meet in one shard and partition,
// where ReplacingMergeTree removes them.
func ClusterSchema(n Names) string {
	conn, ev := newTable(record.ScopeConnection), newTable(record.ScopeEvent)
	var b strings.Builder
	b.WriteString(header("a cluster: run this file on every shard. The cluster `" + ClusterName + "` must be\n" +
		"-- defined in each server's remote_servers (see the README). `spip ship` inserts into the\n" +
		"-- Distributed tables; OPTIMIZE … FINAL runs on each shard's _local table."))
	fmt.Fprintf(&b, "CREATE DATABASE IF NOT EXISTS %s;\n\n", n.Database)
	for _, x := range []struct {
		name, order, shard string
		t                  *table
	}{
		{n.Table, connectionsOrder, connectionsShard, conn},
		{n.EventsTable, eventsOrder, eventsShard, ev},
	} {
		fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s_local\n%s\nENGINE = ReplacingMergeTree\nPARTITION BY %s\nORDER BY %s;\n\n",
			n.Database, x.name, columnsSQL(x.t), partitionBy, x.order)
		fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s AS %s.%s_local\nENGINE = Distributed(%s, %s, %s_local, %s);\n\n",
			n.Database, x.name, n.Database, x.name, ClusterName, n.Database, x.name, x.shard)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// missingColumns returns the statements that add t's columns the server's table lacks.
func missingColumns(db, name string, t *table, have map[string]string) []string {
	var out []string
	after := ""
	for _, c := range t.columns {
		if _, ok := have[string(c.key)]; !ok {
			stmt := fmt.Sprintf("ALTER TABLE %s.%s ADD COLUMN `%s` %s", db, name, c.key, c.chType)
			if after != "" {
				stmt += " AFTER `" + after + "`"
			}
			out = append(out, stmt+";")
		}
		after = string(c.key)
	}
	return out
}
