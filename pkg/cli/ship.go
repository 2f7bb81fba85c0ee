package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"spip/pkg/config"
	"spip/pkg/record"
	"spip/pkg/sd"
	"spip/pkg/ship"
	"spip/pkg/sink/journald"
)

// credentialName is the systemd credential that holds ClickHouse's password (LoadCredential=).
const credentialName = "clickhouse-password"

// defaultStateDir is StateDirectory=spip-ship's path, for a shipper run by hand.
const defaultStateDir = "/var/lib/spip-ship"

func runShip(ctx context.Context, env *Env, args []string) error {
	fs, path := flagSet("ship", env)
	fs.String("url", "", "ClickHouse's HTTP(S) interface (ship.url)")
	dir := fs.String("directory", "", "ship the journal files in DIR (journalctl -D) instead of the system journal")
	files := fs.StringArray("file", nil, "ship the journal files matching GLOB (journalctl --file; repeatable): one sensor's files on a journal-remote collector, e.g. '/var/log/journal/remote/remote-sensor1*.journal'")
	state := fs.String("state-directory", "", "where the cursor is kept (default $STATE_DIRECTORY, else "+defaultStateDir+")")
	pwFile := fs.String("password-file", "", "read ClickHouse's password from FILE (default: the systemd credential "+credentialName+")")
	schema := fs.Bool("schema", false, "print the statements that create the database and tables on one server, and exit")
	cluster := fs.Bool("cluster-schema", false, "print the statements to run on every shard of a cluster, and exit")
	migrate := fs.Bool("migrate", false, "print the ALTER TABLE statements that add the columns this spip writes and the tables lack, and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir != "" && len(*files) > 0 {
		return fmt.Errorf("%w: --directory and --file exclude each other", errUsage)
	}
	cfg, err := config.Load(config.Source{Path: *path, Flags: fs, FlagKeys: map[string]string{"url": "ship.url"}, Environ: env.Environ})
	if err != nil {
		return err
	}
	names := ship.Names{Database: cfg.Ship.Database, Table: cfg.Ship.Table, EventsTable: cfg.Ship.EventsTable}
	switch {
	case *schema:
		fmt.Fprint(env.Stdout, ship.Schema(names))
		return nil
	case *cluster:
		fmt.Fprint(env.Stdout, ship.ClusterSchema(names))
		return nil
	}

	password, err := readPassword(*pwFile, env)
	if err != nil {
		return err
	}
	client := ship.NewClient(cfg.Ship.URL, cfg.Ship.User, password)
	if *migrate {
		stmts, err := ship.Migration(ctx, client, names)
		if err != nil {
			return err
		}
		for _, s := range stmts {
			fmt.Fprintln(env.Stdout, s)
		}
		if len(stmts) == 0 {
			fmt.Fprintln(env.Stderr, "spip ship: the tables have every column this spip writes")
		}
		return nil
	}

	stateDir := *state
	if stateDir == "" {
		stateDir = defaultStateDir
		if d := os.Getenv("STATE_DIRECTORY"); d != "" {
			stateDir = strings.Split(d, ":")[0]
		}
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}

	s := ship.New(ship.Config{
		Client:           client,
		Names:            names,
		StateDir:         stateDir,
		Directory:        *dir,
		Files:            *files,
		BatchSize:        cfg.Ship.BatchSize,
		FlushInterval:    cfg.Ship.FlushInterval,
		StatusInterval:   cfg.Output.StatusInterval,
		Notify:           sd.Notify,
		WatchdogInterval: sd.WatchdogInterval(),
		Warn:             journalWarner(cfg.SensorName()),
		Log:              env.Stderr,
	})
	err = s.Run(ctx)
	_ = sd.Notify(sd.Stopping)
	return err
}

// readPassword reads the password from the file the operator named, else from the systemd
// credential, else there is none. One trailing line break is not part of it.
func readPassword(file string, env *Env) (string, error) {
	if file == "" {
		d := lookupEnv(env.Environ, "CREDENTIALS_DIRECTORY")
		if d == "" {
			return "", nil
		}
		file = filepath.Join(d, credentialName)
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if strings.ContainsAny(s, "\n\x00") {
		return "", fmt.Errorf("password: %s holds more than one line", file)
	}
	return s, nil
}

func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// journalWarner writes the shipper's warnings as spip warning records, so they are shipped
// to the events table too; without journald they only go to standard error.
func journalWarner(sensor string) func(string, ...record.Field) {
	enc := record.NewEncoder(sensor)
	return func(msg string, fields ...record.Field) {
		if !journald.Available(journald.SocketPath) {
			return
		}
		w, err := journald.Dial(journald.SocketPath, time.Second)
		if err != nil {
			return
		}
		defer w.Close()
		fields = append([]record.Field{record.Str(record.KeySink, "clickhouse")}, fields...)
		_ = w.Write(enc.AppendJournal(nil, &record.Record{Kind: record.KindWarning, Time: time.Now(), Message: msg, Fields: fields}))
	}
}
