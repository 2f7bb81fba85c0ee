package nftrules

import (
	"bytes"
	"fmt"

	"spip/pkg/config"
)

// Mark is the packet mark the tproxy rules set on every packet they hand to spip. No route
// needs it (see renderTProxy); an administrator's input firewall accepts spip's flows with
// `meta mark 0x5350 accept`, since most of their packets are untracked. spip.socket also puts
// it on spip's listener (Mark=, SO_MARK; the accepted sockets inherit it), so that the
// notrack rules match spip's own sockets and no other program's.
const Mark = 0x5350 // "SP"

// TimeoutPolicy is the name of redirect mode's `ct timeout` object.
const TimeoutPolicy = "spip_tcp"

// shortTimeouts are the conntrack timeouts, in seconds, that redirect mode gives spip's flows
// instead of the host's (TIME_WAIT 120 s, SYN_SENT 120 s, SYN_RECV 60 s, FIN_WAIT 120 s,
// CLOSE_WAIT 60 s, LAST_ACK 30 s, CLOSE 10 s). A closed flow's entry only waits for late packets;
// a short wait raises the sustained rate the table allows by the same factor. ESTABLISHED is left
// at the host's value: a connection to a port that another NAT (Docker) publishes passes the same
// raw rule before that NAT claims it, and must not lose an idle connection.
var shortTimeouts = []struct {
	state   string
	seconds int
}{
	{"syn_sent", 5}, {"syn_recv", 5}, {"fin_wait", 5}, {"close_wait", 5},
	{"last_ack", 5}, {"time_wait", 2}, {"close", 2},
}

// tproxySynSent replaces syn_sent in tproxy mode, where a flow's only entry is its first SYN's
// and nothing uses it once the SYN has been handed over: the handshake's later packets and
// any retransmitted SYN find spip's (request) socket in the raw hook and skip conntrack. The
// entry only occupies the table, so it gets the shortest wait that is not immediate.
const tproxySynSent = 2

// timeouts returns the policy for mode.
func timeouts(mode string) []struct {
	state   string
	seconds int
} {
	out := append(shortTimeouts[:0:0], shortTimeouts...)
	if mode == config.ModeTProxy {
		for i := range out {
			if out[i].state == "syn_sent" {
				out[i].seconds = tproxySynSent
			}
		}
	}
	return out
}

// guards writes the rules every chain of spip's starts with: return unless the packet is TCP to
// one of this host's own addresses, arrived on a sensor interface and aimed at a port that is not
// excluded. "dir" is "i" for prerouting (iif) and "o" for output (oif).
func (r *Ruleset) guards(b *bytes.Buffer, dir string) {
	if len(r.Interfaces) > 0 {
		fmt.Fprintf(b, "\t\t%sifname != @sensor_ifaces return\n", dir)
	} else {
		fmt.Fprintf(b, "\t\t%sif \"lo\" return\n", dir)
	}
	if r.IPv4Only {
		fmt.Fprintf(b, "\t\tmeta nfproto != ipv4 return\n")
	}
	fmt.Fprintf(b, "\t\tmeta l4proto != tcp return\n")
	if dir == "i" {
		fmt.Fprintf(b, "\t\tfib daddr type != local return\n")
		fmt.Fprintf(b, "\t\ttcp dport @excluded_tcp_ports return\n")
	}
}

// newSYN matches the first packet of a connection attempt: SYN alone, no ACK, FIN or RST.
const newSYN = "tcp flags & (fin | syn | rst | ack) == syn"

// renderPolicy writes the conntrack timeout policy for spip's flows.
func (r *Ruleset) renderPolicy(b *bytes.Buffer) {
	fmt.Fprintf(b, "\tct timeout %s {\n\t\tprotocol tcp\n\t\tl3proto inet\n\t\tpolicy = { ", TimeoutPolicy)
	for i, t := range timeouts(r.Mode) {
		if i > 0 {
			fmt.Fprintf(b, ", ")
		}
		fmt.Fprintf(b, "%s : %d", t.state, t.seconds)
	}
	fmt.Fprintf(b, " }\n\t}\n\n")
}

// renderTProxy writes the tproxy chains. No NAT, and almost no conntrack for spip's flows:
//
//   - notrack_in (raw): a new SYN stays tracked, because a NAT that runs later (Docker's DNAT
//     of a published port, at dstnat) may still claim it, and a NAT needs conntrack; the raw
//     hook cannot know yet. Every later packet that belongs to one of spip's sockets skips
//     conntrack, so the SYN's entry is never refreshed and expires after the timeout policy's
//     syn_sent (tproxySynSent) instead of living as long as the flow. Its sockets are found by
//     `socket transparent 1` (the accepted sockets inherit IP_TRANSPARENT from spip.socket's
//     listener) on a captured port of this host's own address, where no other socket can hold
//     a flow; an excluded port, where an HAProxy or Envoy TPROXY listener may live, has returned
//     before. (The socket's mark cannot be matched here: during the handshake the packet finds
//     a request socket, whose mark nft's `socket mark` does not read.) Replies to the host's own
//     connections and to masqueraded containers never belong to a transparent socket: they stay
//     tracked, and an administrator's `ct state established,related accept` keeps working.
//   - notrack_out (raw): spip's replies, which carry its socket's mark (its request socket's
//     during the handshake) and come from a captured port, skip conntrack. Matching `socket
//     transparent 1` here untracked every transparent socket's replies, also from excluded
//     ports and from addresses that are not the host's (a forwarding TPROXY proxy), and such a
//     neighbour's flows then died in a `ct state invalid drop`. With a spip.socket started
//     before it had Mark= (systemd does not re-apply a running socket's settings) this rule
//     does not match: spip's replies stay tracked, its flows still work and still leave no
//     entry behind once the policy's short timeouts pass, and spip serve says to restart
//     spip.socket for the full effect.
//   - capture (after dstnat, like the redirect): a packet another NAT claimed is no longer
//     addressed to this host, and a reply to a masqueraded container has been given back its
//     container's address, so the fib rule lets both go. What is left, a new SYN (given the
//     short timeout policy) or one of spip's untracked packets, is handed to the listener and
//     marked; an administrator's stateful
//     input firewall accepts spip's flows with `meta mark MARK accept`.
//
// The classic TPROXY setup adds `ip rule fwmark → local route table` so that packets to
// addresses that are not the host's are delivered locally; spip only captures this host's own
// addresses, which the main routing already delivers locally, so no policy route is needed
// (the netns tests prove it: nothing but this table is loaded).
func (r *Ruleset) renderTProxy(b *bytes.Buffer) {
	r.renderPolicy(b)
	fmt.Fprintf(b, "\tchain notrack_in {\n")
	fmt.Fprintf(b, "\t\ttype filter hook prerouting priority raw; policy accept;\n")
	r.guards(b, "i")
	fmt.Fprintf(b, "\t\tsocket transparent 1 notrack\n")
	fmt.Fprintf(b, "\t}\n\n")

	fmt.Fprintf(b, "\tchain notrack_out {\n")
	fmt.Fprintf(b, "\t\ttype filter hook output priority raw; policy accept;\n")
	r.guards(b, "o")
	fmt.Fprintf(b, "\t\ttcp sport @excluded_tcp_ports return\n")
	fmt.Fprintf(b, "\t\tmeta mark 0x%x notrack\n", Mark)
	fmt.Fprintf(b, "\t}\n\n")

	fmt.Fprintf(b, "\tchain capture {\n")
	fmt.Fprintf(b, "\t\ttype filter hook prerouting priority dstnat + 10; policy accept;\n")
	r.guards(b, "i")
	fmt.Fprintf(b, "\t\tct state untracked meta l4proto tcp counter tproxy to :%d meta mark set 0x%x accept\n", r.Port, Mark)
	fmt.Fprintf(b, "\t\tct state new %s ct timeout set %q meta l4proto tcp counter tproxy to :%d meta mark set 0x%x accept\n", newSYN, TimeoutPolicy, r.Port, Mark)
	fmt.Fprintf(b, "\t}\n")
}

// HoldSeconds is how long one of spip's flows keeps a conntrack entry after spip is done with
// it, in mode: under redirect its entry ends in CLOSE (spip's reset) or TIME_WAIT; under tproxy
// only the SYN's unanswered entry exists, until its syn_sent timeout.
func HoldSeconds(mode string) int {
	hold := 0
	for _, t := range timeouts(mode) {
		switch {
		case mode == config.ModeTProxy && t.state == "syn_sent",
			mode == config.ModeRedirect && (t.state == "close" || t.state == "time_wait"):
			hold = max(hold, t.seconds)
		}
	}
	return hold
}
