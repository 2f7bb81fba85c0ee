package nftrules

import (
	"bytes"
	"fmt"

	"spip/pkg/config"
)

// UDPTimeoutPolicy is the name of the `ct timeout` object that spip's UDP flows get.
const UDPTimeoutPolicy = "spip_udp"

// udpHold is how long, in seconds, a captured UDP flow's conntrack entry outlives its last
// datagram. spip never answers, so the entry stays "unreplied"; it exists only because conntrack
// has seen the first packet before the capture rule could tell, and nothing uses it afterwards.
const udpHold = 2

// udpRanges returns capture.exclude_udp_ports, merged, when the UDP capture is on.
func udpRanges(cfg *config.Config) []config.PortRange {
	if !cfg.Capture.UDP {
		return nil
	}
	return merge(cfg.ExcludedUDPPorts())
}

// renderUDPSet writes the set of excluded UDP ports (nft rejects an empty elements list, so an
// empty exclusion is a set without elements).
func (r *Ruleset) renderUDPSet(b *bytes.Buffer) {
	if !r.UDP {
		return
	}
	fmt.Fprintf(b, "\tset excluded_udp_ports {\n\t\ttype inet_service\n\t\tflags interval\n")
	if len(r.ExcludedUDP) > 0 {
		fmt.Fprintf(b, "\t\telements = { %s }\n", joinRanges(r.ExcludedUDP))
	}
	fmt.Fprintf(b, "\t}\n\n")
}

// renderUDP writes the UDP capture, the same in both modes (NAT cannot tell a UDP socket the
// original destination; TPROXY plus IP_RECVORIGDSTADDR can). Its guards, in order:
//
//   - only this host's own addresses on the sensor interfaces, as for TCP;
//   - `ct state new`: conntrack has seen no packet of this flow leave the host. The answers to
//     the host's own outbound UDP (its resolver's DNS, NTP, WireGuard, a browser's QUIC, DHCP
//     renewals), from a connected socket or an unconnected one that used sendto, are replies
//     of a tracked flow (established) and never reach the tproxy rule. A scanner's further
//     datagrams stay "new" (no reply is ever seen), so a flow is captured whole;
//   - `socket mark != MARK`: a datagram that a socket of the host's would take (a bound DNS or
//     NTP server, WireGuard's kernel socket, a resolver socket whose conntrack entry already
//     lapsed, another program's transparent socket) is left to it, whatever
//     capture.exclude_udp_ports says; only spip's own socket (spip-udp.socket's Mark=) is not;
//   - the excluded ports.
//
// What is left goes to spip's transparent socket with the short timeout policy and the mark an
// input firewall accepts. The tproxy statement is not terminal: when no transparent socket
// takes the datagram (spip-udp.socket is stopped), the drop that follows keeps the kernel from
// answering with an ICMP port unreachable. A probe never gets a reply from this host.
func (r *Ruleset) renderUDP(b *bytes.Buffer) {
	if !r.UDP {
		return
	}
	fmt.Fprintf(b, "\tct timeout %s {\n\t\tprotocol udp\n\t\tl3proto inet\n\t\tpolicy = { unreplied : %d, replied : %d }\n\t}\n\n", UDPTimeoutPolicy, udpHold, udpHold)
	fmt.Fprintf(b, "\tchain capture_udp {\n")
	fmt.Fprintf(b, "\t\ttype filter hook prerouting priority dstnat + 10; policy accept;\n")
	if len(r.Interfaces) > 0 {
		fmt.Fprintf(b, "\t\tiifname != @sensor_ifaces return\n")
	} else {
		fmt.Fprintf(b, "\t\tiif \"lo\" return\n")
	}
	if r.IPv4Only {
		fmt.Fprintf(b, "\t\tmeta nfproto != ipv4 return\n")
	}
	fmt.Fprintf(b, "\t\tmeta l4proto != udp return\n")
	fmt.Fprintf(b, "\t\tfib daddr type != local return\n")
	fmt.Fprintf(b, "\t\tct state != new return\n")
	fmt.Fprintf(b, "\t\tudp dport @excluded_udp_ports return\n")
	fmt.Fprintf(b, "\t\tsocket mark != 0x%x return\n", Mark)
	fmt.Fprintf(b, "\t\tmeta l4proto udp ct timeout set %q counter tproxy to :%d meta mark set 0x%x accept\n", UDPTimeoutPolicy, r.Port, Mark)
	fmt.Fprintf(b, "\t\tcounter drop\n")
	fmt.Fprintf(b, "\t}\n")
}

// UDPHoldSeconds is how long a captured UDP flow keeps its conntrack entry after its last datagram.
func UDPHoldSeconds() int { return udpHold }
