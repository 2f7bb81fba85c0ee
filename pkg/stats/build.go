package stats

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// window is the span the rate and the timeline cover: as asked, else as seen.
func (a *Aggregator) window() (int64, int64) {
	o := a.opt
	from, to := a.first, a.last
	switch {
	case !o.Since.IsZero() && !o.Until.IsZero():
		from, to = o.Since.Unix(), o.Until.Unix()
	case !o.Since.IsZero():
		from = o.Since.Unix()
		to = max(a.last, o.Now.Unix())
	case !o.Until.IsZero():
		to = o.Until.Unix()
		if a.conns == 0 {
			from = to
		}
	}
	return from, to
}

// Report builds the report of everything added so far. source names where records came from.
func (a *Aggregator) Report(source string) *Report {
	o := a.opt
	rep := &Report{Version: ReportVersion, Source: source}
	rep.Filters = Filters{Sensor: o.Sensor, Port: o.Port}
	if !o.Since.IsZero() {
		t := o.Since.UTC()
		rep.Window.Since = &t
	}
	if !o.Until.IsZero() {
		t := o.Until.UTC()
		rep.Window.Until = &t
	}
	from, to := a.window()
	if a.conns > 0 {
		f, l := time.Unix(a.first, 0).UTC(), time.Unix(a.last, 0).UTC()
		rep.Window.First, rep.Window.Last = &f, &l
	}
	if a.conns > 0 || !o.Since.IsZero() {
		rep.Window.Seconds = float64(max(to-from, 1))
	}

	rep.Losses.Dropped = []SinkLoss{}
	for _, it := range a.dropped.Top(a.dropped.Distinct()) {
		rep.Losses.Dropped = append(rep.Losses.Dropped, SinkLoss{it.Key, it.Count})
	}
	rep.Losses.RateLimited, rep.Losses.Overload, rep.Losses.UDPDropped = a.ratelimited, a.overload, a.udpDropped
	rep.Losses.Warnings = rows(a.warnings.Top(o.Top), a.warnings.Total(), str)
	rep.Losses.Starts, rep.Losses.Unreadable = a.starts, a.unreadable

	t := &rep.Totals
	t.Connections, t.Silent = a.conns, a.silent
	t.Sources = estimate(a.sources)
	t.Networks24, t.Networks64 = estimate(a.nets24), estimate(a.nets64)
	if rep.Window.Seconds > 0 {
		t.RatePerSecond = float64(a.conns) / rep.Window.Seconds
	}
	t.Transports = rows(a.transports.Top(a.transports.Distinct()), a.conns, str)
	t.Sensors = rows(a.sensors.Top(o.Top), a.conns, str)

	rep.Timeline.Counts = []uint64{}
	if a.conns > 0 || !o.Since.IsZero() {
		w, start, counts := a.tl.series(from, to, timelineColumns)
		st := time.Unix(start, 0).UTC()
		rep.Timeline = Timeline{Start: &st, Interval: w, Counts: counts}
	}

	rep.Ports = a.portTable()
	rep.Sources = table(a.srcTop, o.Top, addrLabel)
	rep.Networks = table(a.netTop, o.Top, netLabel)
	rep.Protocols = table(a.protocols, o.Top, str)
	rep.SNIs = table(a.snis, o.Top, str)
	rep.JA4s = table(a.ja4s, o.Top, str)
	rep.HTTPPaths = table(a.paths, o.Top, str)
	rep.UserAgents = table(a.uas, o.Top, str)
	rep.SSHBanners = table(a.banners, o.Top, str)

	p := &rep.Payloads
	p.Total, p.Distinct, p.Exact, p.MaxError = a.payloads.Total(), a.payloads.Distinct(), a.payloads.Exact(), a.payloads.Min()
	p.Rows = []PayloadRow{}
	for _, it := range a.payloads.Top(o.Top) {
		p.Rows = append(p.Rows, payloadRow(it, p.Total))
	}
	rep.Method = Method{
		Counters: o.Counters, DistinctBudget: o.Distinct,
		TopAlgorithm: "space-saving", DistinctAlgo: "exact, then hyperloglog", HLLStdError: HLLStdError,
	}
	if a.ch != nil {
		a.ch.apply(rep)
	}
	return rep
}

func payloadRow(it Item, total uint64) PayloadRow {
	return PayloadRow{
		SHA256: hex.EncodeToString([]byte(it.Key)), Bytes: it.Aux, Count: it.Count, Error: it.Err,
		Share: share(it.Count, total), Sample: Printable(it.Sample), SampleHex: hex.EncodeToString(it.Sample),
	}
}

const timelineColumns = 60

func estimate(d *Distinct) Estimate {
	e := Estimate{Value: d.Count(), Exact: d.Exact()}
	if !e.Exact {
		e.StdError = HLLStdError
	}
	return e
}

func share(n, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return float64(n) / float64(total)
}

func str(k string) string { return k }

func rows(items []Item, total uint64, label func(string) string) []Row {
	out := make([]Row, 0, len(items))
	for _, it := range items {
		out = append(out, Row{Value: label(it.Key), Count: it.Count, Error: it.Err, Share: share(it.Count, total)})
	}
	return out
}

func table(t *TopK, n int, label func(string) string) Table {
	return Table{Total: t.Total(), Distinct: t.Distinct(), Exact: t.Exact(), MaxError: t.Min(), Rows: rows(t.Top(n), t.Total(), label)}
}

func addrLabel(k string) string {
	switch len(k) {
	case 4:
		return netip.AddrFrom4([4]byte([]byte(k))).String()
	case 16:
		return netip.AddrFrom16([16]byte([]byte(k))).String()
	}
	return "?"
}

func netLabel(k string) string {
	switch len(k) {
	case 3:
		return fmt.Sprintf("%d.%d.%d.0/24", k[0], k[1], k[2])
	case 8:
		var b [16]byte
		copy(b[:], k)
		return netip.PrefixFrom(netip.AddrFrom16(b), 64).String()
	}
	return "?"
}

// portTable merges the exact per-transport arrays with the other transports' counters.
func (a *Aggregator) portTable() Table {
	var items []Item
	for ti, tr := range [...]string{"tcp", "udp"} {
		for p, c := range a.ports[ti] {
			if c > 0 {
				items = append(items, Item{Key: fmt.Sprintf("%d/%s", p, tr), Count: c})
			}
		}
	}
	distinct := len(items) + a.otherPorts.Distinct()
	items = append(items, a.otherPorts.Top(a.opt.Top)...)
	slices.SortFunc(items, func(x, y Item) int {
		if c := cmp.Compare(y.Count, x.Count); c != 0 {
			return c
		}
		return cmp.Compare(x.Key, y.Key)
	})
	items = items[:min(len(items), a.opt.Top)]
	return Table{Total: a.conns, Distinct: distinct, Exact: a.otherPorts.Exact(), MaxError: a.otherPorts.Min(), Rows: rows(items, a.conns, str)}
}
