// Package server assembles a Gatehouse instance: the SpiceDB engine, token
// verification, the operations and the HTTP API, and runs it until its
// context ends.
package server

import (
	"context"

	"errors"
	"fmt"
	"github.com/authzed/spicedb/pkg/datastore"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/audit"
	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/authversion"
	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/config"
	"github.com/gatehouse-authz/gatehouse/internal/devissuer"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/grants"
	"github.com/gatehouse-authz/gatehouse/internal/httpapi"
	"github.com/gatehouse-authz/gatehouse/internal/links"
	"github.com/gatehouse-authz/gatehouse/internal/metrics"
	"github.com/gatehouse-authz/gatehouse/internal/store"
	"github.com/gatehouse-authz/gatehouse/internal/tokens"
	"github.com/gatehouse-authz/gatehouse/schema"
)

// DevAudience is the audience of the tokens the dev issuer mints.
const DevAudience = "gatehouse"

// DefaultHTTPAddr is the listen address when none is given.
const DefaultHTTPAddr = "127.0.0.1:8080"

// Config configures a Server.
type Config struct {
	// HTTPAddr is the TCP address to listen on. Default: DefaultHTTPAddr.
	// Ignored when Listener is set.
	HTTPAddr string

	// Listener, when set, is used in place of listening on HTTPAddr (tests
	// pass one on port 0). The Server closes it.
	Listener net.Listener

	// Issuers are the trusted token issuers. Required unless Dev is set.
	Issuers []config.Issuer

	// Dev starts the built-in dev issuer and its token endpoint and trusts
	// it like any configured issuer. The listen address must be loopback.
	// Default: false.
	Dev bool

	// Logger is the logger for Gatehouse and SpiceDB. Default: slog.Default().
	Logger *slog.Logger

	// Limits bounds request work; see authz.Limits for the defaults.
	Limits authz.Limits

	// Datastore is "memory" or "postgres". Default: "memory", which loses
	// everything when the process exits.
	Datastore string

	// Postgres configures SpiceDB's datastore when Datastore is "postgres";
	// its URL also reaches Gatehouse's own tables.
	Postgres engine.PostgresConfig

	// PlatformAuditors may read every org's audit events. Default: none.
	PlatformAuditors []string

	// TrustedProxies are the networks whose X-Forwarded-For header is
	// believed for client addresses. Default: none.
	TrustedProxies []netip.Prefix

	// Tokens configures Gatehouse's own tokens. An empty Issuer turns token
	// exchange off, except with Dev, where it defaults to the server's URL.
	Tokens config.Tokens

	// Gateways may read every principal's auth version and follow the
	// stream of changes. Default: none.
	Gateways []string

	// DecisionLogSampleRate is the share of check decisions (0 to 1) written
	// to the decision log. Default: 0, no decision log.
	DecisionLogSampleRate float64

	// Grants bounds temporary grants; see config.Grants for the defaults.
	Grants config.Grants

	// BreakGlass may grant themselves any role on any resource for a short
	// time without manage. Default: none.
	BreakGlass []string

	// Migrate applies pending migrations at start-up. Without it, a
	// database that lacks migrations stops start-up. Default: false.
	Migrate bool
}

// Datastore names.
const (
	DatastoreMemory   = "memory"
	DatastorePostgres = "postgres"
)

// Server is an assembled Gatehouse instance.
type Server struct {
	engine    *engine.Engine
	authz     *authz.Service
	recorder  *audit.Recorder
	decisions *httpapi.DecisionLog
	versions  authversion.Store
	tokens    *tokens.Issuer
	grants    *grants.Service
	links     *links.Service
	datastore datastore.Datastore // nil for memory, which the engine owns
	store     *store.Store        // nil for memory
	listener  net.Listener
	handler   http.Handler
	devIssuer *devissuer.Issuer
	logger    *slog.Logger
	url       string
}

// New builds a Server: it listens, starts SpiceDB and writes the schema. It
// does not serve until Run. ctx bounds start-up.
func New(ctx context.Context, cfg Config) (*Server, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if !cfg.Dev && len(cfg.Issuers) == 0 {
		return nil, errors.New("no trusted issuers: pass --config with at least one issuer, or --dev")
	}

	ln := cfg.Listener
	if ln == nil {
		addr := cfg.HTTPAddr
		if addr == "" {
			addr = DefaultHTTPAddr
		}
		if cfg.Dev && !isLoopback(addr) {
			return nil, fmt.Errorf("--dev serves an unauthenticated token endpoint, so it listens only on loopback; %q is not a loopback address", addr)
		}
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
	} else if cfg.Dev && !isLoopback(ln.Addr().String()) {
		ln.Close()
		return nil, fmt.Errorf("--dev listens only on loopback; %q is not a loopback address", ln.Addr())
	}
	s := &Server{listener: ln, logger: logger, url: "http://" + ln.Addr().String()}

	issuers := cfg.Issuers
	extra := map[string]http.Handler{}
	if cfg.Dev {
		dev, err := devissuer.New(s.url+"/dev/oidc", DevAudience, 0)
		if err != nil {
			ln.Close()
			return nil, err
		}
		s.devIssuer = dev
		issuers = append(append([]config.Issuer(nil), issuers...), dev.Config())
		extra["GET /dev/oidc/"] = dev.Handler()
		extra["POST /dev/token"] = dev.TokenHandler()
	}

	if err := s.openStorage(ctx, cfg); err != nil {
		ln.Close()
		return nil, err
	}
	if err := s.openTokens(cfg); err != nil {
		s.closeStorage()
		ln.Close()
		return nil, err
	}
	m := metrics.New()
	verifier, err := authn.New(ctx, issuers, authn.Options{Logger: logger, Local: s.localIssuers(), Registerer: m.Registry})
	if err != nil {
		s.closeStorage()
		ln.Close()
		return nil, err
	}

	engineConfig := engine.Config{Schema: schema.Text, Logger: logger, Registry: m.Registry, Datastore: s.datastore}
	if s.datastore != nil {
		engineConfig.PostgresURL = cfg.Postgres.URL
	}
	eng, err := engine.New(ctx, engineConfig)
	if err != nil {
		s.closeStorage()
		ln.Close()
		return nil, fmt.Errorf("start authorization engine: %w", err)
	}
	s.engine = eng
	if s.store != nil {
		if err := s.store.RecordSchema(ctx, schema.Text, Version()); err != nil {
			logger.Warn("record schema version", "error", err)
		}
	}

	var auditLog audit.Log = audit.NewMemory()
	if s.store != nil {
		auditLog = audit.NewPostgres(s.store.Pool)
	}
	s.recorder = audit.NewRecorder(auditLog, logger)
	s.authz = authz.New(eng, s.recorder, s.versions, logger, cfg.Limits)

	if err := ValidateDecisionLogSampleRate(cfg.DecisionLogSampleRate); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.DecisionLogSampleRate > 0 {
		s.decisions = httpapi.NewDecisionLog(logger.With("log", "decisions"), cfg.DecisionLogSampleRate, 4096, m.Registry)
		if !logger.Enabled(ctx, slog.LevelInfo) {
			logger.Warn("the decision log writes at info, which the log level hides, so no decision will be logged; use --log-level info or debug")
		}
	}

	if err := s.openGrants(cfg); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.openLinks(cfg); err != nil {
		s.Close()
		return nil, err
	}

	s.handler = httpapi.New(httpapi.Config{
		Grants:           s.grants,
		Links:            s.links,
		Decisions:        s.decisions,
		Tokens:           s.tokens,
		Gateways:         cfg.Gateways,
		Authz:            s.authz,
		Audit:            auditLog,
		PlatformAuditors: cfg.PlatformAuditors,
		TrustedProxies:   cfg.TrustedProxies,
		Authn:            verifier,
		Ready:            s,
		Metrics:          m,
		Logger:           logger,
		Extra:            extra,
	})
	return s, nil
}

// URL returns the base URL the server listens on, such as
// "http://127.0.0.1:8080".
func (s *Server) URL() string { return s.url }

// Handler returns the HTTP handler, for tests that skip the listener.
func (s *Server) Handler() http.Handler { return s.handler }

// DevIssuer returns the dev issuer, or nil without Config.Dev.
func (s *Server) DevIssuer() *devissuer.Issuer { return s.devIssuer }

// Run serves until ctx ends, then shuts down gracefully within 15 seconds
// and stops SpiceDB.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.listener) }()
	// Background loops live until shutdown begins; the engine and the
	// database close only after every one of them has returned.
	var background sync.WaitGroup
	backgroundCtx, stopBackground := context.WithCancel(ctx)
	loops := []func(context.Context){s.reconcileLoop, s.runGrants, s.runLinks}
	if s.decisions != nil {
		loops = append(loops, s.decisions.Run)
	}
	if pg, ok := s.versions.(*authversion.Postgres); ok {
		loops = append(loops, pg.Run)
	}
	for _, loop := range loops {
		background.Go(func() { loop(backgroundCtx) })
	}
	s.logger.Info("gatehouse serving", "url", s.url)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}

	stopBackground()
	background.Wait()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		s.logger.Warn("graceful shutdown did not finish", "error", err)
	}
	if err := s.engine.Close(); err != nil {
		s.logger.Warn("stop authorization engine", "error", err)
	}
	s.closeStorage()
	s.logger.Info("gatehouse stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// Close releases the listener and the engine of a Server that was never
// Run.
func (s *Server) Close() error {
	err := errors.Join(s.listener.Close(), s.engine.Close())
	s.closeStorage()
	return err
}

// isLoopback reports whether the host of a host:port address is a loopback
// IP or "localhost". An empty host (all interfaces) is not loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// reconcileInterval is how often unsettled audit events are looked for, and
// reconcileGrace how old one must be before it counts as abandoned.
const (
	reconcileInterval = 30 * time.Second
	reconcileGrace    = time.Minute
)

// reconcileLoop settles audit events whose outcome was never recorded
// because a process stopped between a change and its outcome. Every
// instance runs it; an event gets at most one outcome all the same.
func (s *Server) reconcileLoop(ctx context.Context) {
	everyTick(ctx, reconcileInterval, func() {
		if _, err := s.recorder.Reconcile(ctx, reconcileGrace, s.authz.InPlace); err != nil && ctx.Err() == nil {
			s.logger.Warn("reconcile audit events", "error", err)
		}
	})
}

// everyTick calls fn every interval until ctx ends.
func everyTick(ctx context.Context, interval time.Duration, fn func()) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			fn()
		}
	}
}

// Reconcile settles abandoned audit events at once, for tests and the CLI.
func (s *Server) Reconcile(ctx context.Context, grace time.Duration) (int, error) {
	return s.recorder.Reconcile(ctx, grace, s.authz.InPlace)
}

// ValidateDecisionLogSampleRate reports whether rate is a valid share of
// check decisions to log: from 0 (off) to 1 (every decision).
func ValidateDecisionLogSampleRate(rate float64) error {
	if !(rate >= 0 && rate <= 1) {
		return fmt.Errorf("invalid decision log sample rate %v: use a share from 0 (off) to 1 (every decision)", rate)
	}
	return nil
}
