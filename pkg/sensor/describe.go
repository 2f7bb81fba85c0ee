//go:build !spipnofacts

package sensor

import (
	"spip/pkg/protocol"
	"spip/pkg/protocol/communityid"
	"spip/pkg/record"
)

// describe fills in what the payload is and the flow's Community ID, once per record, on the
// event loop. Why here: the CPU is the process's wherever the parse runs, and it is a few
// microseconds next to the tens the connection's accept, reads and close cost (measured with
// make bench's payload mix: BENCHMARKS.md, "Protocol facts"); on the sinks' side each sink
// would parse the same bytes again or share a lock, on the core journald needs.
func (l *loop) describe(r *record.Record) {
	t, proto := protocol.TCP, communityid.TCP
	if r.Transport == record.UDP {
		t, proto = protocol.UDP, communityid.UDP
	}
	protocol.Identify(t, r.Payload, &r.Facts)
	r.CommunityID = communityid.Hash(l.cfg.CommunityIDSeed, proto, r.Source, r.Destination)
}

// describeQUIC reads a QUIC flow's ClientHello across its first datagrams when the first alone
// did not hold all of it (a post-quantum key share makes it span two).
func (l *loop) describeQUIC(r *record.Record, more [][]byte) {
	if r.Facts.Protocol != "quic" || r.Facts.JA4 != "" {
		return
	}
	protocol.IdentifyQUIC(append([][]byte{r.Payload}, more...), &r.Facts)
}
