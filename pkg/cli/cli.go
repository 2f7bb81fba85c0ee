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
}

type command struct {
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

var commands = map[string]command{
	"serve":   {"run the sensor", runServe},
	"check":   {"validate the configuration and warn about what the redirect would cut off", runCheck},
	"version": {"print the version", runVersion},
	"nft":     {"print the nftables redirect ruleset (--load/--unload apply it)", runNft},
	"stats":   {"what is hitting this host: a report of the recorded connections", runStats},
}

// Main runs the command in args and returns the process exit status.
func Main(args []string, version string) int {
	env := &Env{Version: version, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Environ: os.Environ()}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return Run(ctx, env, args)
}

// Run is Main without the process: it returns the exit status.
func Run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.Stderr)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "spip: unknown command %q\n", args[0])
		usage(env.Stderr)
		return ExitUsage
	}
	err := cmd.run(ctx, env, args[1:])
	var ce *config.Error
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, pflag.ErrHelp):
		return ExitOK
	case errors.As(err, &ce):
		fmt.Fprintf(env.Stderr, "spip: configuration is not valid:\n%s\n", indent(ce.Error()))
		return ExitConfig
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "spip %s: %v\n", args[0], err)
		return ExitUsage
	default:
		fmt.Fprintf(env.Stderr, "spip %s: %v\n", args[0], err)
		return ExitFail
	}
}

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
	fmt.Fprintln(w, "\nRun 'spip COMMAND --help' for a command's flags. See spip(8).")
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

// flagSet returns a flag set with the --config flag every command shares.
func flagSet(name string, env *Env) (*pflag.FlagSet, *string) {
	fs := pflag.NewFlagSet("spip "+name, pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	path := fs.String("config", "", "configuration file (default "+config.DefaultPath+"; missing means built-in defaults)")
	return fs, path
}

func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
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

func runCheck(ctx context.Context, env *Env, args []string) error {
	fs, path := flagSet("check", env)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(config.Source{Path: *path, Environ: env.Environ})
	if err != nil {
		return err
	}
	warnings, err := hostWarnings(ctx, &cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "configuration is valid")
	line, warning := conntrackHeadroom(&cfg)
	fmt.Fprintln(env.Stdout, line)
	if warning != "" {
		warnings = append(warnings, warning)
	}
	for _, w := range warnings {
		fmt.Fprintln(env.Stdout, "warning: "+w)
	}
	return nil
}
