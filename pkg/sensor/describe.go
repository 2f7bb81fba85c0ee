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
	t, proto := protocol.TCP, communityid.TCP
	if r.Transport == record.UDP {
		t, proto = protocol.UDP, communityid.UDP
	}
	protocol.Identify(t, r.Payload, &r.Facts)
	r.CommunityID = communityid.Hash(l.cfg.CommunityIDSeed, proto, r.Source, r.Destination)
}
