//go:build !spipnofacts

package sensor

import (
	"spip/pkg/protocol"
	"spip/pkg/protocol/communityid"
	"spip/pkg/record"
)

// describe fills in what the payload is and the flow's Community ID, once per record, on the
// event loop. Why here and not on the sinks' side: see BENCHMARKS.md, "Protocol facts".
func (l *loop) describe(r *record.Record) {
	protocol.Identify(protocol.TCP, r.Payload, &r.Facts)
	r.CommunityID = communityid.Hash(l.cfg.CommunityIDSeed, communityid.TCP, r.Source, r.Destination)
}
