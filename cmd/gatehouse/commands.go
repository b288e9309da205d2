package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse-authz/gatehouse/internal/config"
	"github.com/gatehouse-authz/gatehouse/internal/server"
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
	root.AddCommand(newServeCommand(), newVersionCommand())
	return root
}

type serveOptions struct {
	configPath string
	dev        bool
	httpAddr   string
	logLevel   string
	logFormat  string
}

func newServeCommand() *cobra.Command {
	var opts serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API with an embedded SpiceDB",
		Long: `Run the HTTP API with an embedded SpiceDB.

Storage is in memory: everything is lost when the process exits.

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
	return cmd
}

func runServe(cmd *cobra.Command, opts serveOptions) error {
	logger, err := newLogger(opts.logLevel, opts.logFormat)
	if err != nil {
		return err
	}
	slog.SetDefault(logger)

	var issuers []config.Issuer
	if opts.configPath != "" {
		file, err := config.Load(opts.configPath)
		if err != nil {
			return err
		}
		issuers = file.Issuers
	}

	srv, err := server.New(cmd.Context(), server.Config{
		HTTPAddr: opts.httpAddr,
		Issuers:  issuers,
		Dev:      opts.dev,
		Logger:   logger,
	})
	if err != nil {
		return err
	}

	logger.Warn("storage is in memory: every resource and relationship is lost when gatehouse exits")
	if opts.dev {
		logger.Warn("DEV MODE: POST " + srv.URL() + "/dev/token mints a token for any subject; never expose this server",
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
