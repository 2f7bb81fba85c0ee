package cli

import (
	"fmt"
	"time"

	sdjournal "github.com/coreos/go-systemd/v22/journal"

	"spip/pkg/config"
	"spip/pkg/record"
	"spip/pkg/sink"
	"spip/pkg/sink/journald"
)

// logger sends spip's own messages through the sinks, like records: queued, never blocking.
// Only when no journald sink runs does it also print them on standard error for a person, and
// never when standard error is a journal stream (under systemd): a write there blocks while
// journald is stopped, and would wedge whatever logged.
type logger struct {
	fan    *sink.Fanout
	env    *Env
	stderr bool
}

func newLogger(fan *sink.Fanout, env *Env, cfg *config.Config) *logger {
	jd := cfg.Output.Journald
	journal := jd == "on" || (jd == "auto" && journald.Available(journald.SocketPath))
	toJournal, _ := sdjournal.StderrIsJournalStream()
	return &logger{fan: fan, env: env, stderr: !journal && !toJournal}
}

func (l *logger) event(kind record.Kind, msg string, fields ...record.Field) {
	l.fan.Emit(&record.Record{Kind: kind, Time: time.Now(), Message: msg, Fields: fields})
	if l.stderr {
		fmt.Fprintf(l.env.Stderr, "spip: %s\n", msg)
	}
}
