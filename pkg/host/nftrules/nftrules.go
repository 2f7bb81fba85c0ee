// Package nftrules renders the nftables ruleset that steers this host's inbound TCP to spip's socket.
package nftrules

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"spip/pkg/config"
)

// The one table spip owns. Deleting it undoes everything the ruleset did.
const (
	Family = "inet"
	Table  = "spip"
)

// Ruleset is what the rendered text says, decided once from the configuration and the host.
type Ruleset struct {
	// Mode is the capture mode (config.ModeRedirect); each mode renders its own chains.
	Mode string
	// Port is the sensor socket's port.
	Port uint16
	// IPv4Only: the socket listens on 0.0.0.0, so IPv6 traffic is left alone rather than
	// redirected to a port nobody listens on.
	IPv4Only bool
	// Interfaces whose inbound traffic is captured; empty means every interface but loopback.
	Interfaces []string
	// Excluded are the ports never captured, merged and sorted: the configured ones and SSHD's.
	Excluded []config.PortRange
	// SSHD are the ports sshd was found listening on, for the header comment.
	SSHD []uint16
	// UDP: capture.udp is on; ExcludedUDP are its excluded ports, merged and sorted (udp.go).
	UDP         bool
	ExcludedUDP []config.PortRange
}

// New decides the ruleset for cfg. sshd lists the ports sshd listens on (hostcheck finds
// them); they are excluded when capture.exclude_sshd is set. Errors name the configuration key.
func New(cfg *config.Config, sshd []uint16) (*Ruleset, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ap := cfg.ListenAddr()
	r := &Ruleset{Mode: cfg.Capture.Mode, Port: ap.Port(), UDP: cfg.Capture.UDP, ExcludedUDP: udpRanges(cfg)}
	switch a := ap.Addr(); {
	case a == netip.IPv6Unspecified():
		// dual-stack: both families
	case a == netip.IPv4Unspecified():
		r.IPv4Only = true
	default:
		// REDIRECT rewrites to the primary address of the incoming interface, not to a chosen one.
		return nil, fmt.Errorf("listen.address: the redirect needs a wildcard address (\"[::]:%d\" or \"0.0.0.0:%d\"), not %s", ap.Port(), ap.Port(), a)
	}

	seen := map[string]bool{}
	for _, name := range cfg.Capture.Interfaces {
		switch {
		case name == "lo":
			return nil, fmt.Errorf("capture.interfaces: \"lo\": loopback traffic never passes the prerouting hook and cannot be captured; remove it")
		case seen[name]:
			return nil, fmt.Errorf("capture.interfaces: %q is listed twice", name)
		}
		seen[name] = true
		r.Interfaces = append(r.Interfaces, name)
	}

	ranges := cfg.ExcludedPorts()
	if cfg.Capture.ExcludeSSHD {
		for _, p := range sshd {
			if p == r.Port {
				return nil, fmt.Errorf("listen.address: sshd listens on port %d, the sensor's port; pick another port", p)
			}
			r.SSHD = append(r.SSHD, p)
			ranges = append(ranges, config.PortRange{Lo: p, Hi: p})
		}
		sort.Slice(r.SSHD, func(i, j int) bool { return r.SSHD[i] < r.SSHD[j] })
		r.SSHD = uniq(r.SSHD)
	}
	r.Excluded = merge(ranges)
	if len(r.Excluded) == 0 {
		// Capturing every port cuts off whatever this host is managed through.
		return nil, fmt.Errorf("capture.exclude_ports: empty and no sshd found; exclude at least the port you manage this host through (22)")
	}
	return r, nil
}

// merge sorts ranges and joins those that overlap or touch: nft rejects overlapping interval
// elements, and sshd's port may fall inside a configured range.
func merge(rs []config.PortRange) []config.PortRange {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Lo < rs[j].Lo })
	var out []config.PortRange
	for _, r := range rs {
		if n := len(out); n > 0 && uint32(r.Lo) <= uint32(out[n-1].Hi)+1 {
			if r.Hi > out[n-1].Hi {
				out[n-1].Hi = r.Hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func uniq(ps []uint16) []uint16 {
	out := ps[:0]
	for i, p := range ps {
		if i == 0 || p != ps[i-1] {
			out = append(out, p)
		}
	}
	return out
}

// Render returns the ruleset as `nft -f` input. It declares, deletes and redefines the table
// in one file, which nft applies as one transaction: loading it again replaces the old table
// atomically, and a file that fails leaves the old table in place.
func (r *Ruleset) Render() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "#!/usr/sbin/nft -f\n")
	fmt.Fprintf(&b, "# Rendered by `spip nft` from spip.toml; the spip-redirect service loads it.\n")
	fmt.Fprintf(&b, "# Do not edit: change the configuration, then `systemctl reload spip-redirect.service`.\n")
	fmt.Fprintf(&b, "# Undo: nft delete table %s %s\n", Family, Table)
	if len(r.SSHD) > 0 {
		fmt.Fprintf(&b, "# sshd listens on: %s\n", joinPorts(r.SSHD))
	}
	fmt.Fprintf(&b, "\ntable %s %s\ndelete table %s %s\n\n", Family, Table, Family, Table)
	fmt.Fprintf(&b, "table %s %s {\n", Family, Table)
	if len(r.Interfaces) > 0 {
		// flags interval lets an element end in * ("veth*").
		fmt.Fprintf(&b, "\tset sensor_ifaces {\n\t\ttype ifname\n\t\tflags interval\n\t\telements = { %s }\n\t}\n\n", quoteAll(r.Interfaces))
	}
	fmt.Fprintf(&b, "\tset excluded_tcp_ports {\n\t\ttype inet_service\n\t\tflags interval\n\t\telements = { %s }\n\t}\n\n", joinRanges(r.Excluded))
	r.renderUDPSet(&b)
	switch r.Mode {
	case config.ModeRedirect:
		r.renderRedirect(&b)
	case config.ModeTProxy:
		r.renderTProxy(&b)
	}
	if r.UDP {
		fmt.Fprintf(&b, "\n")
		r.renderUDP(&b)
	}
	fmt.Fprintf(&b, "}\n")
	return b.Bytes()
}

// renderRedirect writes the NAT chain. Its priority is after dstnat: Docker and libvirt DNAT
// their published ports at dstnat, and once a connection is NATed later NAT chains are not
// consulted; their new destination is not local either, which the fib rule checks.
//
// Each redirected flow gets the short conntrack timeouts of TimeoutPolicy. The policy can only
// be attached between conntrack's lookup and its confirmation, to a flow still unconfirmed: a
// NAT chain sees exactly the first packet of each new flow, so only the flows spip takes get
// it, and the host's sysctls stay as they are.
func (r *Ruleset) renderRedirect(b *bytes.Buffer) {
	r.renderPolicy(b)
	fmt.Fprintf(b, "\tchain prerouting {\n")
	fmt.Fprintf(b, "\t\ttype nat hook prerouting priority dstnat + 10; policy accept;\n")
	if len(r.Interfaces) > 0 {
		fmt.Fprintf(b, "\t\tiifname != @sensor_ifaces return\n")
	} else {
		// Loopback traffic takes its NAT decision in the output hook and never gets here; the
		// rule says so explicitly.
		fmt.Fprintf(b, "\t\tiif \"lo\" return\n")
	}
	if r.IPv4Only {
		fmt.Fprintf(b, "\t\tmeta nfproto != ipv4 return\n")
	}
	fmt.Fprintf(b, "\t\tfib daddr type != local return\n")
	fmt.Fprintf(b, "\t\ttcp dport @excluded_tcp_ports return\n")
	fmt.Fprintf(b, "\t\tmeta l4proto tcp ct timeout set %q counter redirect to :%d\n", TimeoutPolicy, r.Port)
	fmt.Fprintf(b, "\t}\n")
}

// Unload is the `nft -f` input that removes spip's table, and succeeds when there is none.
func Unload() []byte {
	return []byte(fmt.Sprintf("table %s %s\ndelete table %s %s\n", Family, Table, Family, Table))
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func joinRanges(rs []config.PortRange) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}

func joinPorts(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}
