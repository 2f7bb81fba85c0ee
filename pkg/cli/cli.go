// Package cli is spip's command line: it parses a subcommand and its flags and runs it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/spf13/pflag"

	"spip/pkg/config"
	"spip/pkg/ship"
)

// Exit statuses. ExitConfig is EX_CONFIG: the unit's RestartPreventExitStatus= keeps systemd
// from restarting a service whose configuration is broken.
const (
	ExitOK     = 0
	ExitFail   = 1
	ExitUsage  = 2
	ExitConfig = 78
)

// Env is what a command runs with; tests replace its parts.
type Env struct {
	Version string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Environ []string

	// flags is the running command's flag set, kept for its help text.
	flags *pflag.FlagSet
}

type command struct {
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

// commands is filled in init: a command's help text reads this table, which would otherwise
// refer to itself through the command's run function.
var commands map[string]command

func init() {
	commands = map[string]command{
		"serve":    {"run the sensor", runServe},
		"check":    {"validate the configuration and warn about what the capture would cut off", runCheck},
		"version":  {"print the version", runVersion},
		"nft":      {"print the nftables capture ruleset (--load/--unload apply it)", runNft},
		"stats":    {"what is hitting this host: a report of the recorded connections", runStats},
		"ship":     {"send the journal's records to ClickHouse, at least once", runShip},
		"stop-job": {"tell the sensor whether systemd is restarting it (spip.service's ExecStop=)", runStopJob},
	}
}

// Main runs the command in args and returns the process exit status.
func Main(args []string, version string) int {
	env := &Env{Version: version, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ()}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return Run(ctx, env, args)
}

// Run is Main without the process: it returns the exit status. Help asked for goes to standard
// output with status 0; a usage error goes to standard error with status 2 and names the command.
func Run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 {
		usage(env.Stderr)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "--help":
		usage(env.Stdout)
		return ExitOK
	case "-V", "--version":
		args = []string{"version"}
	case "help":
		if len(args) == 1 {
			usage(env.Stdout)
			return ExitOK
		}
		if _, ok := commands[args[1]]; !ok {
			fmt.Fprintf(env.Stderr, "spip help: unknown command %q\n", args[1])
			usage(env.Stderr)
			return ExitUsage
		}
		args = []string{args[1], "--help"}
	}
	name := args[0]
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(env.Stderr, "spip: unknown command %q\n", name)
		usage(env.Stderr)
		return ExitUsage
	}
	err := cmd.run(ctx, env, args[1:])
	var ce *config.Error
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, pflag.ErrHelp):
		commandUsage(env.Stdout, name, env.flags)
		return ExitOK
	case errors.As(err, &ce):
		fmt.Fprintf(env.Stderr, "spip %s: configuration is not valid:\n%s\n", name, indent(ce.Error()))
		return ExitConfig
	case errors.Is(err, ship.ErrRejected):
		// Retrying cannot cure it: EX_CONFIG keeps systemd from restarting the shipper.
		fmt.Fprintf(env.Stderr, "spip %s: %v\n", name, err)
		return ExitConfig
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "spip %s: %v\nRun 'spip help %s' for its flags.\n", name, err, name)
		return ExitUsage
	default:
		var ex *exitError
		if errors.As(err, &ex) {
			if ex.msg != "" {
				fmt.Fprintf(env.Stderr, "spip %s: %s\n", name, ex.msg)
			}
			return ex.code
		}
		fmt.Fprintf(env.Stderr, "spip %s: %v\n", name, err)
		return ExitFail
	}
}

// exitError ends a command with a given status (and a message, when there is one).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError wraps a message as a usage error.
type usageError struct{ msg string }

func (e *usageError) Error() string   { return e.msg }
func (e *usageError) Is(t error) bool { return t == errUsage }

var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: spip COMMAND [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'spip help COMMAND' (or 'spip COMMAND --help') for a command's flags;")
	fmt.Fprintln(w, "'spip --version' prints the version. See spip(8).")
}

// commandUsage is one command's help: what it does and its flags with their defaults.
func commandUsage(w io.Writer, name string, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "usage: spip %s [flags]\n\n%s.\n", name, commands[name].summary)
	if fs != nil && fs.HasFlags() {
		fmt.Fprintf(w, "\nflags:\n%s", fs.FlagUsages())
	}
	fmt.Fprintln(w, "\nSee spip(8).")
}

func indent(s string) string {
	out := "  "
	for _, c := range s {
		out += string(c)
		if c == '\n' {
			out += "  "
		}
	}
	return out
}

// flagSet returns a flag set with the --config flag every command shares. Its help text is
// printed by Run, the same for 'spip help CMD' and 'spip CMD --help'.
func flagSet(name string, env *Env) (*pflag.FlagSet, *string) {
	fs := pflag.NewFlagSet("spip "+name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	env.flags = fs
	path := fs.String("config", config.DefaultPath, "configuration file (a missing default file means built-in defaults; a missing named file is an error)")
	return fs, path
}

func parse(fs *pflag.FlagSet, args []string) error {
	err := fs.Parse(args)
	// --config shows its default in the help, but only a path given by hand must exist.
	if f := fs.Lookup("config"); f != nil && !f.Changed {
		_ = f.Value.Set("")
	}
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

func runVersion(_ context.Context, env *Env, args []string) error {
	fs, _ := flagSet("version", env)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "spip %s\n", env.Version)
	return nil
}

// runCheck exits 0 when the configuration is valid and nothing on the host stands in the
// capture's way, 1 when it warns that the capture would cut off a listener, be dropped by the
// firewall or could not be checked (so `spip check && systemctl reload …` stops there), and 78
// for a bad configuration. Notes (conntrack headroom, UDP sockets the UDP capture leaves to
// their owners) are information and change nothing.
func runCheck(ctx context.Context, env *Env, args []string) error {
	fs, path := flagSet("check", env)
	configOnly := fs.Bool("config-only", false, "validate the configuration only, without looking at the host (the package's upgrade check)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(config.Source{Path: *path, Environ: env.Environ})
	if err != nil {
		return err
	}
	if *configOnly {
		fmt.Fprintln(env.Stdout, "configuration is valid")
		return nil
	}
	warnings, err := hostWarnings(ctx, &cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "configuration is valid")
	line, note := conntrackHeadroom(&cfg)
	fmt.Fprintln(env.Stdout, line)
	if note != "" {
		fmt.Fprintln(env.Stdout, "note: "+note)
	}
	for _, n := range udpNotes(&cfg) {
		fmt.Fprintln(env.Stdout, "note: "+n)
	}
	for _, w := range warnings {
		fmt.Fprintln(env.Stdout, "warning: "+w)
	}
	if n := len(warnings); n > 0 {
		return fmt.Errorf("%d warning(s) above: the capture would cut off a service or its connections would be dropped; fix the configuration or the host before loading it", n)
	}
	return nil
}
