package stats

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"spip/pkg/record"
	"spip/pkg/ship"
)

// CollectClickHouse computes the report by SQL on the tables `spip ship` fills: the same
// report as from the journal, every count exact (GROUP BY on the server, FINAL so that a batch
// the shipper sent twice counts once). Tables whose column the server's table lacks are left
// empty. Every string comes back hex-encoded, so no byte of a value is lost or mangled.
func CollectClickHouse(ctx context.Context, c *ship.Client, n ship.Names, opt Options) (*Report, error) {
	q := &chQuery{c: c, ctx: ctx, conn: n.Database + "." + n.Table, ev: n.Database + "." + n.EventsTable, opt: opt}
	if opt.Top <= 0 {
		q.opt.Top = DefaultTop
	}
	cols, err := c.Columns(ctx, n.Database, n.Table)
	if err != nil {
		return nil, err
	}
	q.where = q.filter(true)
	q.evWhere = q.filter(false)
	a := NewAggregator(q.opt)

	// Totals, the window, the silent and the overloaded.
	row, err := q.one("SELECT count(), countIf(payload = ''), countIf(close_reason = 'overload'), min(timestamp), max(timestamp) FROM " + q.conn + " FINAL WHERE " + q.where)
	if err != nil {
		return nil, err
	}
	a.conns, a.silent, a.overload = row.u(0), row.u(1), row.u(2)
	a.first, a.last = int64(row.u(3)), int64(row.u(4))

	v4 := "position(source_ip, ':') = 0"
	row, err = q.one("SELECT uniqExact(source_ip), uniqExactIf(intDiv(IPv4StringToNum(source_ip), 256), " + v4 + "), uniqExactIf(substring(IPv6StringToNum(source_ip), 1, 8), NOT " + v4 + ") FROM " + q.conn + " FINAL WHERE " + q.where)
	if err != nil {
		return nil, err
	}
	q.distinct = [3]uint64{row.u(0), row.u(1), row.u(2)}

	transport := "if(transport = '', 'tcp', transport)"
	type tab struct {
		dst   *sqlTable
		key   string
		cond  string
		limit int
		conv  func([]byte) string
	}
	tabs := []tab{
		{&q.ports, "concat(toString(destination_port), '/', " + transport + ")", "1", q.opt.Top, nil},
		{&q.transports, transport, "1", 64, nil},
		{&q.sensors, "sensor", "sensor != ''", q.opt.Top, nil},
		{&q.sources, "source_ip", "1", q.opt.Top, sourceKey},
		{&q.nets, "if(" + v4 + ", concat('4', toString(intDiv(IPv4StringToNum(source_ip), 256))), concat('6', hex(substring(IPv6StringToNum(source_ip), 1, 8))))", "1", q.opt.Top, netKey},
	}
	for _, f := range []struct {
		t   *sqlTable
		key record.Key
	}{{&q.protocols, record.KeyProtocol}, {&q.snis, record.KeyTLSSNI}, {&q.ja4s, record.KeyJA4}, {&q.paths, record.KeyHTTPPath}, {&q.uas, record.KeyHTTPUserAgent}, {&q.banners, record.KeySSHBanner}} {
		if _, ok := cols[string(f.key)]; ok {
			tabs = append(tabs, tab{f.t, "`" + string(f.key) + "`", "`" + string(f.key) + "` != ''", q.opt.Top, nil})
		}
	}
	for _, t := range tabs {
		if err := q.table(t.dst, q.conn, q.where+" AND "+t.cond, t.key, "", t.limit, t.conv); err != nil {
			return nil, err
		}
	}
	if err := q.table(&q.payloads, q.conn, q.where+" AND payload != ''", "lower(hex(substring(SHA256(payload), 1, 8)))",
		", any(length(payload)), hex(any(substring(payload, 1, "+strconv.Itoa(sampleBytes)+")))", q.opt.Top, func(b []byte) string {
			k, _ := hex.DecodeString(string(b))
			return string(k)
		}); err != nil {
		return nil, err
	}

	// The sensor's own events: drops, suppressions, warnings, starts.
	if err := q.table(&q.dropped, q.ev, q.evWhere+" AND event = 'summary' AND dropped > 0", "if(sink = '', '?', sink)", "", 64, nil, "sum(dropped)"); err != nil {
		return nil, err
	}
	if err := q.table(&q.warnings, q.ev, q.evWhere+" AND event = 'warning'", "message", "", q.opt.Top, nil); err != nil {
		return nil, err
	}
	row, err = q.one("SELECT sumIf(ratelimited, event = 'summary'), sumIf(udp_dropped, event = 'summary'), countIf(event = 'started') FROM " + q.ev + " FINAL WHERE " + q.evWhere)
	if err != nil {
		return nil, err
	}
	a.ratelimited, a.udpDropped, a.starts = row.u(0), row.u(1), row.u(2)

	// The timeline: the interval the journal's report would choose, counted on the server.
	if a.conns > 0 {
		a.tl.add(a.first, 0)
		a.tl.add(a.last, 0)
		from, to := a.window()
		w, start, counts := a.tl.series(from, to, timelineColumns)
		rows, err := q.rows(fmt.Sprintf("SELECT intDiv(timestamp - %d, %d) AS bucket, count() FROM %s FINAL WHERE %s AND timestamp >= %d GROUP BY bucket", start, w, q.conn, q.where, start))
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			if i := r.u(0); i < uint64(len(counts)) {
				counts[i] = r.u(1)
			}
		}
		q.series = &chSeries{w, start, counts}
	}
	a.ch = q
	return a.Report("clickhouse " + c.URL + " " + n.Database + "." + n.Table), nil
}

// chQuery is one report's queries and their answers.
type chQuery struct {
	c             *ship.Client
	ctx           context.Context
	conn, ev      string
	opt           Options
	where         string
	evWhere       string
	distinct      [3]uint64
	series        *chSeries
	ports         sqlTable
	transports    sqlTable
	sensors       sqlTable
	sources, nets sqlTable
	protocols     sqlTable
	snis, ja4s    sqlTable
	paths, uas    sqlTable
	banners       sqlTable
	payloads      sqlTable
	dropped       sqlTable
	warnings      sqlTable
}

type chSeries struct {
	w, start int64
	counts   []uint64
}

// sqlTable is a ranked list counted by the server.
type sqlTable struct {
	total    uint64
	distinct int
	items    []Item
}

// filter is the WHERE clause of the options: the window, the sensor, and (for connections) the port.
func (q *chQuery) filter(conn bool) string {
	conds := []string{"1"}
	if !q.opt.Since.IsZero() {
		conds = append(conds, "timestamp >= "+strconv.FormatInt(q.opt.Since.Unix(), 10))
	}
	if !q.opt.Until.IsZero() {
		conds = append(conds, "timestamp < "+strconv.FormatInt(q.opt.Until.Unix(), 10))
	}
	if q.opt.Sensor != "" {
		conds = append(conds, "sensor = unhex('"+hex.EncodeToString([]byte(q.opt.Sensor))+"')")
	}
	if conn && q.opt.Port != 0 {
		conds = append(conds, "destination_port = "+strconv.Itoa(q.opt.Port))
	}
	return strings.Join(conds, " AND ")
}

// table counts key in from where: the total and distinct values, then every value as frequent
// as the limit-th (so that ties are ranked here as the journal's report ranks them).
func (q *chQuery) table(t *sqlTable, from, where, key, extra string, limit int, conv func([]byte) string, agg ...string) error {
	count := "count()"
	if len(agg) > 0 {
		count = agg[0]
	}
	row, err := q.one(fmt.Sprintf("SELECT %s, uniqExact(%s) FROM %s FINAL WHERE %s", count, key, from, where))
	if err != nil {
		return err
	}
	t.total, t.distinct = row.u(0), int(row.u(1))
	if t.distinct == 0 {
		return nil
	}
	threshold := uint64(0)
	if t.distinct > limit {
		row, err := q.one(fmt.Sprintf("SELECT c FROM (SELECT %s AS c FROM %s FINAL WHERE %s GROUP BY %s) ORDER BY c DESC LIMIT %d, 1", count, from, where, key, limit-1))
		if err != nil {
			return err
		}
		threshold = row.u(0)
	}
	rows, err := q.rows(fmt.Sprintf("SELECT hex(%s), %s AS c%s FROM %s FINAL WHERE %s GROUP BY %s HAVING c >= %d", key, count, extra, from, where, key, threshold))
	if err != nil {
		return err
	}
	for _, r := range rows {
		k := r.b(0)
		it := Item{Key: string(k), Count: r.u(1)}
		if conv != nil {
			it.Key = conv(k)
		}
		if len(r) >= 4 {
			it.Aux = r.u(2)
			it.Sample = r.b(3)
		}
		t.items = append(t.items, it)
	}
	sortItems(t.items)
	t.items = t.items[:min(len(t.items), limit)]
	return nil
}

func sortItems(items []Item) {
	slices.SortFunc(items, func(a, b Item) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
}

// sourceKey turns an address as text into the journal report's key: 4 or 16 bytes.
func sourceKey(b []byte) string {
	a, ok := parseAddr(b)
	if !ok {
		return string(b)
	}
	a = a.Unmap()
	if a.Is4() {
		k := a.As4()
		return string(k[:])
	}
	k := a.As16()
	return string(k[:])
}

// netKey turns the query's network ("4" and the /24 as a number, or "6" and the /64 in hex)
// into the journal report's key.
func netKey(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	switch b[0] {
	case '4':
		n, _ := strconv.ParseUint(string(b[1:]), 10, 32)
		return string([]byte{byte(n >> 16), byte(n >> 8), byte(n)})
	case '6':
		k, _ := hex.DecodeString(string(b[1:]))
		return string(k)
	}
	return string(b)
}

// chRow is one TabSeparated row.
type chRow [][]byte

func (r chRow) u(i int) uint64 {
	if i >= len(r) {
		return 0
	}
	n, _ := strconv.ParseUint(string(r[i]), 10, 64)
	return n
}

// b decodes a hex-encoded string column.
func (r chRow) b(i int) []byte {
	if i >= len(r) {
		return nil
	}
	out, _ := hex.DecodeString(string(r[i]))
	return out
}

func (q *chQuery) rows(sql string) ([]chRow, error) {
	out, err := q.c.Do(q.ctx, sql+" FORMAT TabSeparated", nil, nil)
	if err != nil {
		return nil, err
	}
	var rows []chRow
	for _, line := range bytes.Split(bytes.TrimRight(out, "\n"), []byte("\n")) {
		if len(line) > 0 {
			rows = append(rows, bytes.Split(line, []byte("\t")))
		}
	}
	return rows, nil
}

func (q *chQuery) one(sql string) (chRow, error) {
	rows, err := q.rows(sql)
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("clickhouse: %d rows, want one, for %s", len(rows), sql)
	}
	return rows[0], nil
}

// apply puts the server's counts into rep, in place of the (empty) aggregator's.
func (q *chQuery) apply(rep *Report) {
	t := &rep.Totals
	t.Sources = Estimate{Value: q.distinct[0], Exact: true}
	t.Networks24 = Estimate{Value: q.distinct[1], Exact: true}
	t.Networks64 = Estimate{Value: q.distinct[2], Exact: true}
	t.Transports = rows(q.transports.items, rep.Totals.Connections, str)
	t.Sensors = rows(q.sensors.items, rep.Totals.Connections, str)
	if q.series != nil {
		rep.Timeline.Interval, rep.Timeline.Counts = q.series.w, q.series.counts
	}
	rep.Losses.Dropped = []SinkLoss{}
	for _, it := range q.dropped.items {
		rep.Losses.Dropped = append(rep.Losses.Dropped, SinkLoss{it.Key, it.Count})
	}
	rep.Losses.Warnings = rows(q.warnings.items, q.warnings.total, str)
	tbl := func(s *sqlTable, label func(string) string) Table {
		return Table{Total: s.total, Distinct: s.distinct, Exact: true, Rows: rows(s.items, s.total, label)}
	}
	rep.Ports = tbl(&q.ports, str)
	rep.Sources = tbl(&q.sources, addrLabel)
	rep.Networks = tbl(&q.nets, netLabel)
	rep.Protocols = tbl(&q.protocols, str)
	rep.SNIs = tbl(&q.snis, str)
	rep.JA4s = tbl(&q.ja4s, str)
	rep.HTTPPaths = tbl(&q.paths, str)
	rep.UserAgents = tbl(&q.uas, str)
	rep.SSHBanners = tbl(&q.banners, str)
	p := &rep.Payloads
	p.Total, p.Distinct, p.Exact, p.MaxError = q.payloads.total, q.payloads.distinct, true, 0
	p.Rows = []PayloadRow{}
	for _, it := range q.payloads.items {
		p.Rows = append(p.Rows, payloadRow(it, p.Total))
	}
	rep.Method.TopAlgorithm, rep.Method.DistinctAlgo, rep.Method.Counters, rep.Method.DistinctBudget = "exact (clickhouse)", "exact (clickhouse uniqExact)", 0, 0
}
