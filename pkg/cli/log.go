package cli

import (
	"fmt"
	"time"

	"spip/pkg/config"
	"spip/pkg/journald"
	"spip/pkg/record"
	"spip/pkg/sink"
)

// logger sends spip's own messages through the sinks, like records: queued, never blocking.
// Only when no journald sink runs does it also print them on standard error for a person.
type logger struct {
	fan    *sink.Fanout
	env    *Env
	stderr bool
}

func newLogger(fan *sink.Fanout, env *Env, cfg *config.Config) *logger {
	jd := cfg.Output.Journald
	journal := jd == "on" || (jd == "auto" && journald.Available(journald.SocketPath))
	return &logger{fan: fan, env: env, stderr: !journal}
}

func (l *logger) event(kind record.Kind, msg string, fields ...record.Field) {
	l.fan.Emit(&record.Record{Kind: kind, Time: time.Now(), Message: msg, Fields: fields})
	if l.stderr {
		fmt.Fprintf(l.env.Stderr, "spip: %s\n", msg)
	}
}
