package stats

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Style is how a report is drawn on a terminal.
type Style struct {
	Color bool           // ANSI colours (only on a terminal, never with NO_COLOR)
	ASCII bool           // no UTF-8 locale: ASCII bars, sparkline and punctuation
	Loc   *time.Location // times are shown in this zone
	Width int            // columns (80)
}

type painter struct {
	w *bufio.Writer
	Style
}

const (
	cBold   = "\x1b[1m"
	cDim    = "\x1b[2m"
	cRed    = "\x1b[1;31m"
	cYellow = "\x1b[33m"
	cCyan   = "\x1b[36m"
	cReset  = "\x1b[0m"
)

func (p *painter) paint(code, s string) string {
	if !p.Color || s == "" {
		return s
	}
	return code + s + cReset
}

func (p *painter) sym(unicode, ascii string) string {
	if p.ASCII {
		return ascii
	}
	return unicode
}

func (p *painter) line(format string, args ...any) {
	fmt.Fprintf(p.w, format, args...)
	p.w.WriteByte('\n')
}

// Render draws rep as compact tables that fit st.Width columns. Every value that came from a
// record goes through Printable first.
func Render(w io.Writer, rep *Report, st Style) error {
	if st.Width <= 0 {
		st.Width = 80
	}
	if st.Loc == nil {
		st.Loc = time.UTC
	}
	p := &painter{w: bufio.NewWriter(w), Style: st}
	p.header(rep)
	p.losses(rep)
	p.totals(rep)
	p.timeline(rep)
	p.table("destination ports", rep.Ports, rep)
	p.table("sources", rep.Sources, rep)
	p.table("source networks (/24, /64)", rep.Networks, rep)
	p.table("protocols", rep.Protocols, rep)
	p.table("TLS server names (SNI)", rep.SNIs, rep)
	p.table("JA4 fingerprints", rep.JA4s, rep)
	p.table("HTTP paths", rep.HTTPPaths, rep)
	p.table("HTTP user agents", rep.UserAgents, rep)
	p.table("SSH banners", rep.SSHBanners, rep)
	p.payloads(rep)
	return p.w.Flush()
}

func (p *painter) header(rep *Report) {
	title := "spip stats " + p.sym("·", "-") + " " + Printable([]byte(rep.Source))
	if f := rep.Filters; f.Sensor != "" || f.Port != 0 {
		var fs []string
		if f.Sensor != "" {
			fs = append(fs, "sensor "+Printable([]byte(f.Sensor)))
		}
		if f.Port != 0 {
			fs = append(fs, "port "+strconv.Itoa(f.Port))
		}
		title += " " + p.sym("·", "-") + " " + strings.Join(fs, ", ")
	}
	p.line("%s", p.paint(cBold, title))
	from, to := rep.Window.Since, rep.Window.Until
	if from == nil {
		from = rep.Window.First
	}
	if to == nil {
		if rep.Window.Since != nil && rep.Timeline.Start != nil {
			t := rep.Window.Since.Add(time.Duration(rep.Window.Seconds) * time.Second)
			to = &t
		} else {
			to = rep.Window.Last
		}
	}
	switch {
	case from != nil && to != nil:
		p.line("window %s %s %s (%s)", p.stamp(*from, true), p.sym("→", "->"), p.stamp(*to, !sameDay(from.In(p.Loc), to.In(p.Loc))),
			duration(time.Duration(rep.Window.Seconds)*time.Second))
	case from != nil:
		p.line("window from %s", p.stamp(*from, true))
	case to != nil:
		p.line("window until %s", p.stamp(*to, true))
	default:
		p.line("window: all records")
	}
}

func sameDay(a, b time.Time) bool { return a.YearDay() == b.YearDay() && a.Year() == b.Year() }

func (p *painter) stamp(t time.Time, date bool) string {
	t = t.In(p.Loc)
	if date {
		return t.Format("2006-01-02 15:04:05 MST")
	}
	return t.Format("15:04:05 MST")
}

func (p *painter) losses(rep *Report) {
	l := rep.Losses
	bang := p.paint(cRed, "!")
	n := 0
	for _, d := range l.Dropped {
		p.line("%s the %s output dropped %s records", bang, Printable([]byte(d.Sink)), num(d.Records))
		n++
	}
	if l.RateLimited > 0 {
		p.line("%s %s connections suppressed by the per-source budget (not recorded one by one)", bang, num(l.RateLimited))
		n++
	}
	if l.Overload > 0 {
		p.line("%s %s connections recorded unread: too many sessions at once (overload)", bang, num(l.Overload))
		n++
	}
	if l.UDPDropped > 0 {
		p.line("%s %s UDP datagrams dropped unrecorded (flow table full, or the receive buffer)", bang, num(l.UDPDropped))
		n++
	}
	for _, w := range l.Warnings {
		msg := fmt.Sprintf("%s warning %s%s: ", p.paint(cYellow, "!"), p.sym("×", "x"), num(w.Count))
		p.line("%s%s", msg, p.fit(Printable([]byte(w.Value)), p.Width-visible(msg)))
		n++
	}
	if l.Unreadable > 0 {
		p.line("%s %s lines or entries could not be read as spip records", bang, num(l.Unreadable))
		n++
	}
	if n == 0 {
		p.line("%s", p.paint(cDim, "no drops or losses reported in the window"))
	}
}

func (p *painter) totals(rep *Report) {
	t := rep.Totals
	p.line("")
	if t.Connections == 0 {
		p.line("%s", p.paint(cBold, "no connections in the window"))
		return
	}
	p.line("%s %s   rate %s/s   silent %s (%s)", p.paint(cBold, "connections"), p.paint(cBold, num(t.Connections)),
		rate(t.RatePerSecond), num(t.Silent), pct(share(t.Silent, t.Connections)))
	est := func(e Estimate) string {
		if e.Exact {
			return num(e.Value)
		}
		return p.sym("≈", "~") + num(e.Value)
	}
	p.line("sources %s   IPv4 /24s %s   IPv6 /64s %s", est(t.Sources), est(t.Networks24), est(t.Networks64))
	var extra []string
	if len(t.Transports) > 1 || len(t.Transports) == 1 && t.Transports[0].Value != "tcp" {
		extra = append(extra, "transports "+p.list(t.Transports))
	}
	if len(t.Sensors) > 0 {
		extra = append(extra, "sensors "+p.list(t.Sensors))
	}
	if rep.Losses.Starts > 0 {
		extra = append(extra, fmt.Sprintf("sensor starts: %s", num(rep.Losses.Starts)))
	}
	for _, e := range extra {
		p.line("%s", p.fit(e, p.Width))
	}
	if !t.Sources.Exact || !t.Networks24.Exact || !t.Networks64.Exact {
		p.line("%s", p.paint(cDim, fmt.Sprintf("%s HyperLogLog estimate, relative standard error %.2f%%", p.sym("≈", "~"), HLLStdError*100)))
	}
}

func (p *painter) list(rows []Row) string {
	parts := make([]string, len(rows))
	for i, r := range rows {
		parts[i] = Printable([]byte(r.Value)) + " " + num(r.Count)
	}
	return strings.Join(parts, ", ")
}

func (p *painter) timeline(rep *Report) {
	tl := rep.Timeline
	if len(tl.Counts) == 0 || rep.Totals.Connections == 0 {
		return
	}
	var peak uint64
	for _, c := range tl.Counts {
		peak = max(peak, c)
	}
	p.line("")
	p.line("%s  %s per column, peak %s", p.paint(cBold, "timeline"), duration(time.Duration(tl.Interval)*time.Second), num(peak))
	levels := []string{" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"}
	if p.ASCII {
		levels = []string{" ", ".", ":", "-", "=", "+", "*", "#", "@"}
	}
	var b strings.Builder
	for _, c := range tl.Counts {
		l := 0
		if c > 0 {
			l = int(math.Ceil(float64(c) / float64(peak) * 8))
		}
		b.WriteString(levels[min(max(l, 0), 8)])
	}
	p.line("  %s%s", p.paint(cCyan, b.String()), "")
	start := tl.Start.In(p.Loc)
	end := start.Add(time.Duration(int64(len(tl.Counts))*tl.Interval) * time.Second)
	layout := "15:04"
	if tl.Interval < 60 {
		layout = "15:04:05"
	}
	if !sameDay(start, end.Add(-time.Second)) {
		layout = "01-02 15:04"
	}
	left, right := start.Format(layout), end.Format(layout)
	gap := max(len(tl.Counts)-len(left)-len(right), 1)
	p.line("  %s", p.paint(cDim, left+strings.Repeat(" ", gap)+right))
}

// table draws one ranked list: label, count, share of the table's total, bar.
func (p *painter) table(title string, t Table, rep *Report) {
	if len(t.Rows) == 0 {
		return
	}
	p.line("")
	p.line("%s %s", p.paint(cBold, title), p.paint(cDim, distinctNote(t.Distinct, t.Exact, t.Total, "")))
	labels := make([]string, len(t.Rows))
	counts := make([]string, len(t.Rows))
	lw, cw := 0, 0
	for i, r := range t.Rows {
		labels[i] = Printable([]byte(r.Value))
		counts[i] = num(r.Count)
		if r.Error > 0 {
			counts[i] = "~" + counts[i]
		}
		lw, cw = max(lw, len(labels[i])), max(cw, len(counts[i]))
	}
	lw = min(lw, 39)
	bw := p.Width - (2 + lw + 2 + cw + 1 + 6 + 1)
	top := t.Rows[0].Count
	for i, r := range t.Rows {
		p.line("  %s  %*s %6s %s", pad(p.fit(labels[i], lw), lw), cw, counts[i], pct(r.Share), p.paint(cCyan, p.bar(r.Count, top, bw)))
	}
	if !t.Exact {
		p.approx(t.MaxError)
	}
}

func (p *painter) approx(maxErr uint64) {
	p.line("  %s", p.paint(cDim, fmt.Sprintf("~ approximate: counts up to %s over; unlisted values %s %s", num(maxErr), p.sym("≤", "<="), num(maxErr))))
}

func (p *painter) payloads(rep *Report) {
	t := rep.Payloads
	if len(t.Rows) == 0 && rep.Totals.Silent == 0 {
		return
	}
	p.line("")
	p.line("%s %s", p.paint(cBold, "payloads by SHA-256"), p.paint(cDim, distinctNote(t.Distinct, t.Exact, t.Total, " with a payload")))
	counts := make([]string, len(t.Rows))
	cw := len(num(rep.Totals.Silent))
	for i, r := range t.Rows {
		counts[i] = num(r.Count)
		if r.Error > 0 {
			counts[i] = "~" + counts[i]
		}
		cw = max(cw, len(counts[i]))
	}
	for i, r := range t.Rows {
		pre := fmt.Sprintf("  %s  %*s %6s %5s  ", r.SHA256[:12], cw, counts[i], pct(r.Share), size(r.Bytes))
		p.line("%s%s", pre, p.fit(r.Sample, p.Width-len(pre)))
	}
	if rep.Totals.Silent > 0 {
		p.line("  %-12s  %*s %6s %5s  %s", "(silent)", cw, num(rep.Totals.Silent), pct(share(rep.Totals.Silent, rep.Totals.Connections)), "0B",
			p.paint(cDim, "connected, sent nothing (% of all)"))
	}
	if !t.Exact {
		p.approx(t.MaxError)
	}
}

// distinctNote says how many values a table counted among how many records.
func distinctNote(distinct int, exact bool, total uint64, what string) string {
	if exact {
		return fmt.Sprintf("%s distinct in %s%s", num(uint64(distinct)), num(total), what)
	}
	return fmt.Sprintf("over %s distinct in %s%s", num(uint64(distinct)), num(total), what)
}

// bar is n/top of width w columns, in eighths of a block (Unicode) or in #s (ASCII).
func (p *painter) bar(n, top uint64, w int) string {
	if top == 0 || w <= 0 {
		return ""
	}
	eighths := int(math.Round(float64(n) / float64(top) * float64(w*8)))
	if eighths == 0 && n > 0 {
		eighths = 1
	}
	if p.ASCII {
		return strings.Repeat("#", max((eighths+4)/8, 1))
	}
	parts := []string{"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"}
	return strings.Repeat("█", eighths/8) + parts[eighths%8]
}

// fit cuts s (printable ASCII) to w columns, marking the cut.
func (p *painter) fit(s string, w int) string {
	switch {
	case len(s) <= w:
		return s
	case w <= 3:
		return s[:max(w, 0)]
	case p.ASCII:
		return s[:w-3] + "..."
	default:
		return s[:w-1] + "…"
	}
}

// visible is the width of s without colour codes (s is otherwise ASCII or known symbols).
func visible(s string) int {
	n, esc := 0, false
	for _, r := range s {
		switch {
		case r == 0x1b:
			esc = true
		case esc:
			if r == 'm' {
				esc = false
			}
		default:
			n++
		}
	}
	return n
}

func pad(s string, w int) string {
	if len(s) >= w {
		return s
	}
	return s + strings.Repeat(" ", w-len(s))
}

// Count prints n with thousands separators, as the report does.
func Count(n uint64) string { return num(n) }

// num prints n with thousands separators.
func num(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" }

func rate(r float64) string {
	switch {
	case r >= 100:
		return num(uint64(math.Round(r)))
	case r >= 1:
		return strconv.FormatFloat(r, 'f', 1, 64)
	default:
		return strconv.FormatFloat(r, 'f', 3, 64)
	}
}

func size(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + "B"
	}
	return strconv.FormatFloat(float64(n)/1024, 'f', 1, 64) + "K"
}

// duration prints d compactly: 45s, 5m, 1h30m, 2d3h.
func duration(d time.Duration) string {
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		if s%60 == 0 {
			return fmt.Sprintf("%dm", s/60)
		}
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		if s%3600 == 0 {
			return fmt.Sprintf("%dh", s/3600)
		}
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	default:
		if s%86400 == 0 {
			return fmt.Sprintf("%dd", s/86400)
		}
		return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
	}
}
