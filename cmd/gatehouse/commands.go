package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehouse-authz/gatehouse/internal/config"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/server"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "gatehouse",
		Short:         "Gatehouse is an authorization service for multi-tenant SaaS products",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCommand(), newMigrateCommand(), newAuditCommand(), newKeysCommand(), newVersionCommand())
	return root
}

type serveOptions struct {
	configPath string
	dev        bool
	httpAddr   string
	logLevel   string
	logFormat  string
	datastore  string
	migrate    bool
	sampleRate float64
	gcStart    float64
	postgres   engine.PostgresConfig
}

func newServeCommand() *cobra.Command {
	var opts serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API with an embedded SpiceDB",
		Long: `Run the HTTP API with an embedded SpiceDB.

Storage is in memory by default: everything is lost when the process exits.
With --datastore postgres, relationships and Gatehouse's own tables live in
PostgreSQL; the database URL comes from --database-url or, better, from the
GATEHOUSE_DATABASE_URL environment variable, which keeps the password out of
the process list.

With --dev, Gatehouse also runs a built-in OIDC issuer and a token endpoint
(POST /dev/token) that mints tokens for any subject. Use it only on your own
machine; it listens on loopback only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.configPath, "config", "", "path of the YAML file that lists the trusted issuers")
	f.BoolVar(&opts.dev, "dev", false, "also run the built-in dev issuer and token endpoint (loopback only)")
	f.StringVar(&opts.httpAddr, "http-addr", server.DefaultHTTPAddr, "TCP address of the HTTP API")
	f.StringVar(&opts.logLevel, "log-level", "info", "minimum log level: debug, info, warn or error")
	f.StringVar(&opts.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&opts.datastore, "datastore", server.DatastoreMemory, "where relationships live: memory (lost on exit) or postgres")
	f.BoolVar(&opts.migrate, "migrate", false, "apply pending database migrations before serving (postgres only)")
	f.Float64Var(&opts.sampleRate, "decision-log-sample-rate", 0, "share of check decisions, from 0 (off) to 1, logged asynchronously with log=decisions")
	f.Float64Var(&opts.gcStart, "gc-start", server.DefaultGCStart, "start each garbage collection once the heap has grown this share of the way to Go's goal (0 leaves it to Go)")
	registerPostgresFlags(f, &opts.postgres)
	return cmd
}

// registerPostgresFlags adds the database flags shared by serve and migrate.
func registerPostgresFlags(f *pflag.FlagSet, cfg *engine.PostgresConfig) {
	f.StringVar(&cfg.URL, "database-url", "", "PostgreSQL connection URL (default: $GATEHOUSE_DATABASE_URL)")
	f.IntVar(&cfg.MaxReadConns, "database-max-read-conns", 20, "maximum connections of SpiceDB's read pool")
	f.IntVar(&cfg.MaxWriteConns, "database-max-write-conns", 10, "maximum connections of SpiceDB's write pool")
	f.IntVar(&cfg.MaxRetries, "database-max-retries", 10, "retries of a write after a serialization failure or a dropped connection")
	f.DurationVar(&cfg.GCWindow, "database-gc-window", 24*time.Hour, "how far back consistency tokens may point; older revisions are deleted")
	f.DurationVar(&cfg.GCInterval, "database-gc-interval", 3*time.Minute, "how often old revisions are deleted (one instance at a time)")
}

func databaseURL(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv("GATEHOUSE_DATABASE_URL")
}

func newMigrateCommand() *cobra.Command {
	var opts serveOptions
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the PostgreSQL tables of SpiceDB and Gatehouse",
		Long: `Create or upgrade the PostgreSQL tables of SpiceDB and Gatehouse.

Running it again changes nothing. Several instances may run it at once: they
take turns on an advisory lock.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			logger, err := newLogger(opts.logLevel, opts.logFormat)
			if err != nil {
				return err
			}
			url := databaseURL(opts.postgres.URL)
			if url == "" {
				return errors.New("no database: pass --database-url or set GATEHOUSE_DATABASE_URL")
			}
			if err := store.Migrate(cmd.Context(), store.Config{URL: url}, logger); err != nil {
				return err
			}
			logger.Info("database is migrated")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.postgres.URL, "database-url", "", "PostgreSQL connection URL (default: $GATEHOUSE_DATABASE_URL)")
	f.StringVar(&opts.logLevel, "log-level", "info", "minimum log level: debug, info, warn or error")
	f.StringVar(&opts.logFormat, "log-format", "text", "log format: text or json")
	return cmd
}

// serverConfig returns the server's configuration from the flags and the
// configuration file.
func (opts serveOptions) serverConfig(file *config.File, logger *slog.Logger) server.Config {
	return server.Config{
		HTTPAddr:         opts.httpAddr,
		Issuers:          file.Issuers,
		Tokens:           file.Tokens,
		Gateways:         file.Platform.Gateways,
		PlatformAuditors: file.Platform.Auditors,
		BreakGlass:       file.Platform.BreakGlass,
		Grants:           file.Grants,
		TrustedProxies:   file.TrustedProxyPrefixes(),
		Dev:              opts.dev,
		Logger:           logger,
		Datastore:        opts.datastore,
		Postgres:         opts.postgres,
		Migrate:          opts.migrate,

		DecisionLogSampleRate: opts.sampleRate,
	}
}

func runServe(cmd *cobra.Command, opts serveOptions) error {
	logger, err := newLogger(opts.logLevel, opts.logFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(logger)
	if err := server.ValidateGCStart(opts.gcStart); err != nil {
		return fmt.Errorf("--gc-start: %w", err)
	}
	if err := server.ValidateDecisionLogSampleRate(opts.sampleRate); err != nil {
		return fmt.Errorf("--decision-log-sample-rate: %w", err)
	}
	server.TuneRuntime(logger)
	if err := server.StartEarlyCollections(cmd.Context(), opts.gcStart, logger); err != nil {
		return err
	}

	file := &config.File{}
	if opts.configPath != "" {
		if file, err = config.Load(opts.configPath); err != nil {
			return err
		}
	}

	opts.postgres.URL = databaseURL(opts.postgres.URL)
	opts.postgres.EnableMetrics = true
	srv, err := server.New(cmd.Context(), opts.serverConfig(file, logger))
	if err != nil {
		return err
	}

	if opts.datastore == server.DatastoreMemory {
		logger.Warn("storage is in memory: every resource and relationship is lost when gatehouse exits")
	} else {
		logger.Info("storage is postgres", "database", store.RedactURL(opts.postgres.URL))
	}
	if opts.dev {
		logger.Warn("DEV MODE: POST "+srv.URL()+"/dev/token mints a token for any subject; never expose this server",
			"dev_issuer", srv.DevIssuer().Config().Issuer)
	}
	return srv.Run(cmd.Context())
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", level)
	}
	handlerOpts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, handlerOpts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, handlerOpts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: use text or json", format)
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of gatehouse and of the embedded SpiceDB",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			v, spicedb := version, "unknown"
			if info, ok := debug.ReadBuildInfo(); ok {
				if v == "" {
					v = info.Main.Version
				}
				for _, dep := range info.Deps {
					if dep.Path == "github.com/authzed/spicedb" {
						spicedb = dep.Version
					}
				}
			}
			if v == "" {
				v = "(devel)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "gatehouse %s\nspicedb %s\n", v, spicedb)
		},
	}
}
