package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"spip/pkg/config"
	"spip/pkg/host/nftrules"
	"spip/pkg/monitor"
	"spip/pkg/record"
	"spip/pkg/sd"
	"spip/pkg/sensor"
	"spip/pkg/sensor/budget"
	"spip/pkg/sink"
	"spip/pkg/sink/journald"
	"spip/pkg/socket"
)

// drainTimeout bounds how long the sinks may take to write what is queued when spip stops.
const drainTimeout = 5 * time.Second

func runServe(ctx context.Context, env *Env, args []string) error {
	// SIGHUP's handler is the first thing spip installs, long before READY=1: without one, a HUP
	// during start-up (logrotate on a busy host) ended spip, and systemd counted it as clean.
	// HUPs that arrive before the outputs exist are kept (one) and reopen them once they do.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fs, path := flagSet("serve", env)
	fs.String("listen", "", "listen on ADDRESS:PORT when systemd passes no socket (listen.address)")
	fs.String("json", "", "also write records as JSON lines to FILE, - for standard output (output.json_file)")
	fs.String("journald", "", "write records to journald: auto, on or off (output.journald)")
	fs.String("sensor-name", "", "name written into every record (sensor.name)")
	// The help shows what the built-in configuration gives when neither the file nor a flag
	// sets a value; an unset flag changes nothing.
	def := config.Default()
	fs.Lookup("listen").DefValue = def.Listen.Address
	fs.Lookup("journald").DefValue = def.Output.Journald
	fs.Lookup("sensor-name").DefValue = "the host name"
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(config.Source{
		Path:  *path,
		Flags: fs,
		FlagKeys: map[string]string{
			"listen": "listen.address", "json": "output.json_file",
			"journald": "output.journald", "sensor-name": "sensor.name",
		},
		Environ: env.Environ,
	})
	if err != nil {
		return err
	}
	return serve(ctx, env, &cfg, hup)
}

func serve(ctx context.Context, env *Env, cfg *config.Config, hup <-chan os.Signal) error {
	passed, passedErr := sd.PassedFiles()
	// What the previous process handed over comes out of PID 1's store before anything else:
	// from here on this process alone answers for those sessions.
	adopted := takeOver(passed)
	lnFD, lnFile, how, lnWarnings, err := listener(cfg, passed.Listener, passedErr)
	if err != nil {
		adopted.close()
		if passed.UDP != nil {
			passed.UDP.Close()
		}
		return err
	}
	if lnFile != nil {
		defer lnFile.Close()
	} else {
		defer unix.Close(lnFD)
	}
	udpFD, udpHow, udpWarnings, err := udpSocket(cfg, passed.UDP, lnFile != nil)
	if err != nil {
		return err
	}
	if udpFD >= 0 {
		defer closeUDP(udpFD, passed.UDP)
		how += ", udp " + udpHow
	}
	lnWarnings = append(lnWarnings, udpWarnings...)

	enc := record.NewEncoder(cfg.SensorName())
	for _, k := range cfg.Record.JournaldOmit {
		if err := enc.OmitJournal(record.Key(k)); err != nil {
			return &config.Error{Err: err}
		}
	}
	fan := sink.NewFanout()
	if err := addSinks(fan, cfg, enc); err != nil {
		return err
	}
	log := newLogger(fan, env, cfg)
	fan.OnFault(func(name string, err error, recovered bool) {
		if recovered {
			log.event(record.KindWarning, fmt.Sprintf("%s sink recovered", name), record.Str(record.KeySink, name))
			return
		}
		log.event(record.KindWarning, fmt.Sprintf("%s sink failing: %v", name, err),
			record.Str(record.KeySink, name), record.Str(record.KeyError, err.Error()))
	})
	fan.Start()

	// The per-source budget is off unless configured: a nil *Budget must not become a non-nil interface.
	var admit sensor.Admitter
	var suppressed monitor.Suppressor
	if b := budget.New(cfg.RateLimit); b != nil {
		admit, suppressed = b, b
	}
	sens := sensor.New(sensor.Config{
		PayloadCap:       cfg.Session.PayloadCap,
		FirstByteTimeout: cfg.Session.FirstByteTimeout,
		IdleTimeout:      cfg.Session.IdleTimeout,
		MaxDuration:      cfg.Session.MaxDuration,
		MaxSessions:      cfg.Session.MaxSessions,
		ShutdownGrace:    cfg.Session.ShutdownGrace,
		CloseWithReset:   cfg.Session.CloseWithReset,
		RedirectMode:     cfg.Capture.Mode == config.ModeRedirect,
		UDPIdleTimeout:   cfg.Session.UDPIdleTimeout,
		MaxUDPFlows:      cfg.Session.MaxUDPFlows,
		CommunityIDSeed:  uint16(cfg.Record.CommunityIDSeed),
	}, lnFD, func(r *record.Record) { fan.Emit(r) }, admit, func(msg string) {
		log.event(record.KindWarning, msg)
	})
	if udpFD >= 0 {
		sens.SetUDP(udpFD)
	}
	if adopted.warning != "" {
		log.event(record.KindWarning, adopted.warning)
	}
	sens.Adopt(adopted.state, adopted.fds)

	mon := &monitor.Monitor{
		Warnings:         lnWarnings,
		Sensor:           &sens.Stats,
		Sinks:            fan.Stats,
		Emit:             func(r *record.Record) { fan.Emit(r) },
		Suppressed:       suppressed,
		Notify:           sd.Notify,
		MaxSessions:      cfg.Session.MaxSessions,
		StatusInterval:   cfg.Output.StatusInterval,
		SummaryInterval:  cfg.Output.SummaryInterval,
		WatchdogInterval: sd.WatchdogInterval(),
	}
	monCtx, stopMon := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { defer close(monDone); mon.Run(monCtx) }()

	go func() {
		// A routine log rotation is no warning: it writes no record. A reopen that fails is
		// reported by the sink's fault handler like any other output fault.
		for range hup {
			_ = sd.Notify(sd.Reloading, monotonicUsec())
			fan.Reopen()
			_ = sd.Notify(sd.Ready, mon.StatusLine(time.Now()))
		}
	}()

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-runCtx.Done():
			return
		}
		_ = sd.Notify(sd.Stopping, sd.Status("stopping: finishing open sessions"))
		if msg := prepareStop(sens); msg != "" {
			log.event(record.KindWarning, msg)
		}
		cancel()
	}()

	started := fmt.Sprintf("spip %s recording connections on %s (%s mode)", env.Version, how, cfg.Capture.Mode)
	if n := len(adopted.fds); n > 0 {
		started += fmt.Sprintf(", taking over %d open sessions from the previous process", n)
	}
	log.event(record.KindStarted, started,
		record.Str(record.KeyVersion, env.Version), record.Str(record.KeyListen, how), record.Str(record.KeyMode, cfg.Capture.Mode))
	for _, w := range lnWarnings {
		log.event(record.KindWarning, "warning: "+w)
	}
	_ = sd.Notify(sd.Ready, mon.StatusLine(time.Now()))

	runErr := sens.Run(runCtx)

	st := &sens.Stats
	stopping := fmt.Sprintf("spip stopping: %d connections accepted, %d recorded", st.Accepted.Load(), st.Recorded.Load())
	if n := st.HandedOver.Load(); n > 0 {
		stopping += fmt.Sprintf(", %d open sessions handed to the next process in %v", n, time.Duration(st.HandOverTime.Load()).Round(time.Microsecond))
	}
	log.event(record.KindStopping, stopping,
		record.Int(record.KeyRecordedTotal, int64(st.Recorded.Load())))
	stopMon()
	<-monDone
	mon.Summarize(time.Now())
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), drainTimeout)
	defer cancelDrain()
	fan.Stop(drainCtx)
	if runErr != nil {
		return runErr
	}
	var lost uint64
	for _, s := range fan.Stats() {
		lost += s.Lost()
	}
	if lost > 0 && log.stderr {
		// Only for a person at a terminal: under systemd the summary records say it, and a
		// write to a journal stream could block while journald is stopped.
		fmt.Fprintf(env.Stderr, "spip: %d records were lost (see the summary records)\n", lost)
	}
	return nil
}

// listener returns the socket systemd passed, or one spip opens on listen.address, and the
// warnings about it; serve writes those through the logger once the sinks run (never straight
// to standard error, which may be a journal stream that blocks).
func listener(cfg *config.Config, f *os.File, err error) (fd int, _ *os.File, how string, warnings []string, _ error) {
	if f != nil {
		if err != nil {
			warnings = append(warnings, err.Error())
		}
		fd = int(f.Fd())
		if !socket.IsListener(fd) {
			f.Close()
			return -1, nil, "", nil, errors.New("the socket systemd passed is not a listening TCP socket (check ListenStream= in spip.socket)")
		}
		how = "the socket passed by systemd"
		if port, err := socket.LocalPort(fd); err == nil {
			how = fmt.Sprintf("port %d (socket passed by systemd)", port)
			if want := cfg.ListenAddr().Port(); port != want {
				warnings = append(warnings, fmt.Sprintf("systemd passed a socket on port %d but listen.address says %d: the redirect targets %d", port, want, want))
			}
		}
		if cfg.Capture.Mode == config.ModeTProxy {
			// The tproxy rules pass a listener without IP_TRANSPARENT by: tproxied probes would be
			// refused. Direct and NAT-redirected connections still reach it and are recorded
			// with their true destination, so this is a warning, not a reason to record nothing.
			if on, err := socket.Transparent(fd); err != nil || !on {
				why := "set Transparent=yes in spip.socket, or capture.mode = \"redirect\" with its ruleset"
				if err != nil {
					why = err.Error()
				}
				warnings = append(warnings, "capture.mode is tproxy but the socket systemd passed is not transparent: tproxied connections cannot reach it, direct and redirected ones are recorded ("+why+")")
				how += " (not transparent)"
			} else if mark, err := socket.Mark(fd); err == nil && mark != nftrules.Mark {
				// A spip.socket started by an older package: systemd keeps a running socket's
				// settings, and the package never restarts it (that would drop its backlog).
				warnings = append(warnings, fmt.Sprintf("the socket systemd passed has mark 0x%x, not 0x%x (spip.socket was started before it set Mark=, and systemd keeps a running socket's settings): "+
					"spip's flows are recorded but stay tracked by conntrack, so a flood fills the table faster; restart spip.socket at a quiet moment to apply it (systemctl restart spip.socket; connections are refused while it restarts)", mark, nftrules.Mark))
			}
		}
		return fd, f, how, warnings, nil
	}
	if err != nil {
		return -1, nil, "", nil, err
	}
	fd, err = socket.Listen(cfg.ListenAddr())
	if err != nil {
		return -1, nil, "", nil, err
	}
	how = cfg.Listen.Address
	if cfg.Capture.Mode == config.ModeTProxy {
		if err := socket.SetTransparent(fd); err != nil {
			if !errors.Is(err, unix.EPERM) {
				unix.Close(fd)
				return -1, nil, "", nil, err
			}
			// Without CAP_NET_ADMIN (a person trying spip out) the socket still records direct
			// and redirected connections; only the tproxy rules would pass it by. Under systemd,
			// PID 1 sets it.
			warnings = append(warnings, fmt.Sprintf("%v: recording direct and redirected connections; tproxied ones need a transparent socket", err))
			how += " (not transparent)"
		}
	}
	return fd, nil, how, warnings, nil
}

func addSinks(fan *sink.Fanout, cfg *config.Config, enc *record.Encoder) error {
	jd := cfg.Output.Journald
	if jd == "on" || (jd == "auto" && journald.Available(journald.SocketPath)) {
		s, err := sink.NewJournal(journald.SocketPath, enc, cfg.Output.QueueSize)
		if err != nil {
			return err
		}
		s.LimitBytes(cfg.Output.QueueBytes)
		fan.Add(s)
	}
	if cfg.Output.JSONFile != "" {
		jenc := enc
		if cfg.Output.JSONFormat == "ecs" {
			host, _ := os.Hostname() // observer.hostname; left out when unknown
			jenc = record.NewECSEncoder(cfg.SensorName(), host)
		}
		s, err := sink.NewJSON(cfg.Output.JSONFile, jenc, cfg.Output.QueueSize)
		if err != nil {
			return err
		}
		s.LimitBytes(cfg.Output.QueueBytes)
		fan.Add(s)
	}
	if len(fan.Sinks()) == 0 {
		return &config.Error{Err: errors.New("output: no sink: journald is not running here and output.json_file is empty (try --json -)")}
	}
	return nil
}

func monotonicUsec() string {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000)
}
