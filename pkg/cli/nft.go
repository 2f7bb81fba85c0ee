package cli

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"spip/pkg/config"
	"spip/pkg/host/hostcheck"
	"spip/pkg/host/nftrules"
)

// ipv4DropIn is where the package ships systemd/ipv4-only.conf.
const ipv4DropIn = "/usr/share/doc/spip/examples/ipv4-only.conf"

// nftCommand is the nft binary; spip-redirect.service finds it on systemd's default PATH.
const nftCommand = "nft"

// hostProbe is where spip check looks at the host; tests point it at a fake procfs and ruleset.
type hostProbe struct {
	proc    string
	root    string                                    // where systemd's unit files are read (ssh.service, ssh.socket)
	ruleset func(ctx context.Context) ([]byte, error) // `nft -j list ruleset`
}

var probe = hostProbe{
	proc: hostcheck.Proc,
	root: "/",
	ruleset: func(ctx context.Context) ([]byte, error) {
		return exec.CommandContext(ctx, nftCommand, "-j", "list", "ruleset").Output()
	},
}

// runNft prints the redirect ruleset, or loads or removes it. spip-redirect.service runs
// `spip nft --load` and `spip nft --unload`, so what the unit loads is exactly what
// `spip nft` prints at that moment.
func runNft(ctx context.Context, env *Env, args []string) error {
	fs, path := flagSet("nft", env)
	load := fs.Bool("load", false, "load the ruleset with `nft -f` (replaces spip's table atomically)")
	unload := fs.Bool("unload", false, "delete spip's table; succeeds when there is none")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *load && *unload {
		return &usageError{"--load and --unload exclude each other"}
	}
	if *unload {
		return nftApply(ctx, nftrules.Unload())
	}
	cfg, err := config.Load(config.Source{Path: *path, Environ: env.Environ})
	if err != nil {
		return err
	}
	sshd, scanErr := sshdPorts(&cfg)
	if scanErr != nil && *load {
		// Loading without knowing sshd's ports could lock the operator out.
		return scanErr
	}
	if scanErr != nil {
		fmt.Fprintf(env.Stderr, "spip nft: warning: %v\n", scanErr)
	}
	rs, err := nftrules.New(&cfg, sshd)
	if err != nil {
		return &config.Error{Err: err}
	}
	if !*load {
		_, err := env.Stdout.Write(rs.Render())
		return err
	}
	return nftApply(ctx, rs.Render())
}

// sshdPorts returns the ports capture.exclude_sshd excludes: those sshd processes listen on,
// and ssh.socket's when PID 1 holds sshd's listener (socket activation: no sshd process listens).
// Its error says why sshd's ports may be missing; the ports found are still usable. At boot
// spip-redirect.service is ordered after ssh.service and ssh.socket, so an enabled sshd
// listens by then; an enabled ssh.service without a listener means its ports are unknown, and
// loading would capture them.
func sshdPorts(cfg *config.Config) ([]uint16, error) {
	if !cfg.Capture.ExcludeSSHD {
		return nil, nil
	}
	scan, err := hostcheck.Listeners(probe.proc)
	if err != nil {
		return nil, fmt.Errorf("finding sshd's ports: %w", err)
	}
	if scan.MissedAny("sshd") {
		return scan.PortsOf("sshd"), fmt.Errorf("finding sshd's ports: an sshd process could not be read (needs root with CAP_SYS_PTRACE); its ports would be missing")
	}
	ports := scan.PortsOf("sshd")
	units := hostcheck.ReadSSHD(probe.root)
	for _, p := range units.SocketPorts {
		// ssh.socket's ports are sshd's when it is enabled, or running: PID 1 listens on them.
		if units.SocketEnabled || slices.Contains(scan.PortsOf("systemd"), p) {
			ports = append(ports, p)
		}
	}
	if units.ServiceEnabled && len(ports) == 0 {
		return nil, fmt.Errorf("finding sshd's ports: ssh.service is enabled but no sshd listens yet, so its ports are unknown and would be captured: " +
			"start ssh.service first (at boot spip-redirect.service waits for it), or list sshd's ports in capture.exclude_ports and set capture.exclude_sshd = false")
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}

func nftApply(ctx context.Context, ruleset []byte) error {
	cmd := exec.CommandContext(ctx, nftCommand, "-f", "-")
	cmd.Stdin = bytes.NewReader(ruleset)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft -f: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// hostWarnings returns one warning for everything on this host that the redirect would cut
// off or that would cut off the redirect, or that could not be checked. Each one makes spip
// check exit 1. It fails only when the ruleset cannot be rendered.
func hostWarnings(ctx context.Context, cfg *config.Config) ([]string, error) {
	var warnings []string
	warn := func(format string, args ...any) {
		warnings = append(warnings, fmt.Sprintf(format, args...))
	}
	scan, err := hostcheck.Listeners(probe.proc)
	if err != nil {
		warn("cannot read the listening sockets: %v", err)
	}
	sshd, err := sshdPorts(cfg)
	if err != nil {
		warn("%v", err)
	}
	rs, err := nftrules.New(cfg, sshd)
	if err != nil {
		return nil, &config.Error{Err: err}
	}
	// Both modes take a captured port from its listener: TPROXY hands a new connection to
	// spip's socket even when another socket listens on the port it was sent to.
	for _, w := range cutOff(rs, scan.Listeners) {
		warn("%s", w)
	}

	dropping := hostcheck.DroppingInputChains
	if cfg.Capture.Mode == config.ModeTProxy {
		dropping = func(j []byte) ([]string, error) { return hostcheck.DroppingInputChainsMark(j, nftrules.Mark) }
	}
	if out, err := probe.ruleset(ctx); err != nil {
		warn("cannot read the nftables ruleset (%v): check yourself that no input chain drops spip's connections", err)
	} else if chains, err := dropping(out); err != nil {
		warn("%v", err)
	} else {
		for _, c := range chains {
			if cfg.Capture.Mode == config.ModeTProxy {
				warn("chain %q has policy drop and no `meta mark 0x%x accept` rule: it drops spip's connections (tproxy mode leaves them untracked after the SYN, so `ct state established` does not cover them); add `meta mark 0x%x accept` to it", c, nftrules.Mark, nftrules.Mark)
				continue
			}
			warn("chain %q has policy drop and no `ct status dnat accept` rule: it drops every redirected connection; add `ct status dnat accept` to it", c)
		}
	}

	if hostcheck.IPv6Disabled(probe.proc) && !rs.IPv4Only {
		warn("IPv6 is disabled at boot: spip.socket cannot bind %s; set listen.address = \"0.0.0.0:%d\" and copy %s to /etc/systemd/system/spip.socket.d/ (its ListenStream=0.0.0.0:PORT must use the same port)",
			cfg.Listen.Address, rs.Port, ipv4DropIn)
	}
	return warnings, nil
}

// cutOff returns one warning per port that a non-loopback listener holds and the ruleset
// would capture away from it (in either mode).
func cutOff(rs *nftrules.Ruleset, ls []hostcheck.Listener) []string {
	var out []string
	for i := 0; i < len(ls); {
		port := ls[i].Port
		var who []string
		for ; i < len(ls) && ls[i].Port == port; i++ {
			l := ls[i]
			if l.Loopback() || (rs.IPv4Only && l.Addr.Is6() && !l.Addr.IsUnspecified() && !l.Addr.Is4In6()) {
				continue
			}
			owner := strings.Join(l.Commands, ",")
			if owner == "" {
				owner = "?"
			}
			who = append(who, fmt.Sprintf("%s on %s", owner, l.Addr))
		}
		if len(who) == 0 || port == rs.Port || excluded(rs, port) {
			continue
		}
		out = append(out, fmt.Sprintf("port %d is not excluded (%s): the capture would send its connections to spip; add it to capture.exclude_ports",
			port, strings.Join(who, ", ")))
	}
	return out
}

func excluded(rs *nftrules.Ruleset, port uint16) bool {
	for _, r := range rs.Excluded {
		if r.Contains(port) {
			return true
		}
	}
	return false
}

// lowRate is the sustained rate of new connections below which spip check warns: mass scanners
// reach it from a single address.
const lowRate = 10000

// conntrackHeadroom reports the conntrack table's use and the sustained rate of new connections
// it allows spip in the configured mode, with a note when that rate is low or the table is
// filling; past the limit the kernel drops new connections for the whole host, SSH included.
// The note is information about load, not a fault of the capture: spip check still exits 0.
func conntrackHeadroom(cfg *config.Config) (line, note string) {
	ct, err := hostcheck.ReadConntrack(probe.proc)
	if err != nil {
		return fmt.Sprintf("conntrack: not loaded yet (%v); spip's ruleset loads it", err), ""
	}
	hold := nftrules.HoldSeconds(cfg.Capture.Mode)
	if ct.Max <= 0 {
		// The kernel reads nf_conntrack_max = 0 as no limit.
		return fmt.Sprintf("conntrack: %d entries in use; nf_conntrack_max is %d: no limit (the table grows with memory); "+
			"in %s mode each of spip's flows holds an entry about %d s", ct.Count, ct.Max, cfg.Capture.Mode, hold), ""
	}
	rate := ct.SustainedRate(hold)
	line = fmt.Sprintf("conntrack: %d of %d entries in use; the host's TCP TIME_WAIT timeout is %d s, CLOSE %d s; "+
		"in %s mode each of spip's flows holds an entry about %d s, so the table absorbs about %d new connections/s sustained",
		ct.Count, ct.Max, ct.TimeWait, ct.Close, cfg.Capture.Mode, hold, rate)
	switch {
	case ct.Count*2 > ct.Max:
		note = fmt.Sprintf("conntrack is %d%% full (%d of %d): when it fills, the kernel drops new connections for the whole host, SSH included; raise net.netfilter.nf_conntrack_max", int64(ct.Count)*100/int64(ct.Max), ct.Count, ct.Max)
	case rate < lowRate:
		note = fmt.Sprintf("conntrack allows only about %d new connections/s sustained (nf_conntrack_max %d): a scan faster than that fills it and the kernel drops new connections for the whole host, SSH included; raise net.netfilter.nf_conntrack_max", rate, ct.Max)
	}
	return line, note
}
