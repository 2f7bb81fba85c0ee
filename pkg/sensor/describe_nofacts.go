//go:build spipnofacts

package sensor

import "spip/pkg/record"

// describe does nothing in a build with -tags spipnofacts: make bench's baseline, the cost of
// the protocol facts and the Community ID measured as this build's difference.
func (l *loop) describe(*record.Record) {}

func (l *loop) describeQUIC(*record.Record, [][]byte) {}
