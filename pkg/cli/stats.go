package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"spip/pkg/config"
	"spip/pkg/ship"
	"spip/pkg/stats"
)

func runStats(ctx context.Context, env *Env, args []string) error {
	fs, path := flagSet("stats", env)
	since := fs.String("since", "", "only records from this time on (2026-11-26 08:00, -2h, today, @UNIX)")
	until := fs.String("until", "", "only records up to this time")
	sensor := fs.String("sensor", "", "only this sensor's records")
	port := fs.Int("port", 0, "only connections to this destination port")
	asJSON := fs.Bool("json", false, "print the report as one JSON document")
	top := fs.Int("top", stats.DefaultTop, "rows per table")
	dir := fs.String("directory", "", "read the journal files in this directory (a journal-remote collector's: every sensor)")
	files := fs.StringArray("file", nil, "read this JSON-lines mirror (repeatable; .gz, .bz2, .xz, .zst rotations too; - is standard input)")
	useCH := fs.Bool("clickhouse", false, "compute the report by SQL in ClickHouse, from the tables spip ship fills ([ship] in the configuration)")
	pwFile := fs.String("password-file", "", "with --clickhouse: read ClickHouse's password from FILE (default: the systemd credential "+credentialName+")")
	counters := fs.Int("counters", stats.DefaultCounters, "counters per table: counts are exact up to this many distinct values, then bounded approximations")
	distinct := fs.Int("distinct", stats.DefaultDistinct, "distinct values counted exactly before HyperLogLog estimates")
	if err := parse(fs, args); err != nil {
		return err
	}
	now := time.Now()
	opt := stats.Options{Sensor: *sensor, Port: *port, Top: *top, Counters: *counters, Distinct: *distinct, Now: now}
	var err error
	if opt.Since, err = ParseWhen(*since, now, time.Local); err != nil {
		return &usageError{fmt.Sprintf("--since: %v", err)}
	}
	if opt.Until, err = ParseWhen(*until, now, time.Local); err != nil {
		return &usageError{fmt.Sprintf("--until: %v", err)}
	}
	switch {
	case *port < 0 || *port > 65535:
		return &usageError{fmt.Sprintf("--port %d: not a port", *port)}
	case *top < 1 || *top > 1000:
		return &usageError{fmt.Sprintf("--top %d: from 1 to 1000", *top)}
	case *counters < 10 || *counters > 10_000_000:
		return &usageError{fmt.Sprintf("--counters %d: from 10 to 10000000", *counters)}
	case *distinct < 0 || *distinct > 100_000_000:
		return &usageError{fmt.Sprintf("--distinct %d: from 0 to 100000000", *distinct)}
	case *dir != "" && len(*files) > 0, *useCH && (*dir != "" || len(*files) > 0):
		return &usageError{"--directory, --file and --clickhouse exclude each other"}
	case !opt.Since.IsZero() && !opt.Until.IsZero() && opt.Until.Before(opt.Since):
		return &usageError{"--until is before --since"}
	}
	in := stats.Input{Directory: *dir, Files: *files, Stdin: env.Stdin}

	var read atomic.Uint64
	done := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		progress(env, &read, done)
	}()
	var rep *stats.Report
	if *useCH {
		rep, err = clickhouseReport(ctx, env, *path, *pwFile, opt)
	} else {
		rep, err = stats.Collect(ctx, in, opt, &read)
	}
	close(done)
	<-progressDone
	if err != nil {
		return err
	}
	if *asJSON {
		return stats.WriteJSON(env.Stdout, rep)
	}
	st := stats.StyleFor(env.Stdout, env.Environ)
	st.Loc = time.Local
	return stats.Render(env.Stdout, rep, st)
}

// clickhouseReport asks the ClickHouse server of the [ship] configuration for the report.
func clickhouseReport(ctx context.Context, env *Env, path, pwFile string, opt stats.Options) (*stats.Report, error) {
	cfg, err := config.Load(config.Source{Path: path, Environ: env.Environ})
	if err != nil {
		return nil, err
	}
	if cfg.Ship.URL == "" {
		return nil, errors.New("--clickhouse: ship.url is not set in the configuration")
	}
	password, err := readPassword(pwFile, env)
	if err != nil {
		return nil, err
	}
	names := ship.Names{Database: cfg.Ship.Database, Table: cfg.Ship.Table, EventsTable: cfg.Ship.EventsTable}
	return stats.CollectClickHouse(ctx, ship.NewClient(cfg.Ship.URL, cfg.Ship.User, password), names, opt)
}

// progressDelay is how long reading may take before the progress line shows.
var progressDelay = time.Second

// progress prints a line on standard error while reading takes more than a second, when
// standard error is a terminal.
func progress(env *Env, read *atomic.Uint64, done <-chan struct{}) {
	if !stats.IsTerminal(env.Stderr) {
		return
	}
	start := time.Now()
	select {
	case <-done:
		return
	case <-time.After(progressDelay):
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		n := read.Load()
		fmt.Fprintf(env.Stderr, "\r\x1b[Kreading: %s records, %s/s", stats.Count(n), stats.Count(uint64(float64(n)/time.Since(start).Seconds())))
		select {
		case <-done:
			fmt.Fprint(env.Stderr, "\r\x1b[K")
			return
		case <-tick.C:
		}
	}
}

// ParseWhen reads a time as journalctl's --since does, in part: "" (none), now, today,
// yesterday, @UNIX, -DURATION or DURATION ago (2h, 30m, 7d), RFC 3339, "YYYY-MM-DD[ HH:MM[:SS]]"
// and "HH:MM[:SS]" (today), in loc.
func ParseWhen(s string, now time.Time, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	day := func(t time.Time) time.Time {
		y, m, d := t.In(loc).Date()
		return time.Date(y, m, d, 0, 0, 0, 0, loc)
	}
	switch s {
	case "":
		return time.Time{}, nil
	case "now":
		return now, nil
	case "today":
		return day(now), nil
	case "yesterday":
		return day(now).AddDate(0, 0, -1), nil
	}
	if rest, ok := strings.CutPrefix(s, "@"); ok {
		n, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: not @UNIX-SECONDS", s)
		}
		return time.Unix(n, 0), nil
	}
	rel, ago := strings.CutSuffix(s, " ago")
	if r, ok := strings.CutPrefix(rel, "-"); ok {
		rel, ago = r, true
	}
	if d, err := parseDuration(strings.TrimSpace(rel)); err == nil {
		return now.Add(-d), nil
	} else if ago {
		return time.Time{}, err
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			d := day(now)
			return time.Date(d.Year(), d.Month(), d.Day(), t.Hour(), t.Minute(), t.Second(), 0, loc), nil
		}
	}
	return time.Time{}, errors.New("cannot read " + strconv.Quote(s) + " as a time (2026-11-26 08:00, -2h, today, @UNIX)")
}

// parseDuration is time.ParseDuration with days (d) and weeks (w) too.
func parseDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f < 0 {
				return 0, fmt.Errorf("bad duration %q", s)
			}
			return time.Duration(f * float64(u.d)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err == nil && d < 0 {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	return d, err
}
