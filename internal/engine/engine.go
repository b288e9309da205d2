// Package engine runs SpiceDB in-process and gives the rest of Gatehouse a
// small, typed surface over it: the full v1 API through an in-memory gRPC
// connection, and in-process checks through SpiceDB's pkg/embedded on the
// same datastore.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	dsconfig "github.com/authzed/spicedb/pkg/cmd/datastore"
	"github.com/authzed/spicedb/pkg/cmd/server"
	"github.com/authzed/spicedb/pkg/cmd/util"
	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/embedded"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// checkConcurrency is how many branches of one step of a check SpiceDB
// evaluates at once. At one, a step runs its branches in turn in a single
// goroutine and stops at the first that admits the subject. The read
// cache serves most branches in microseconds, so running them in parallel
// costs more than it saves. Each new goroutine's stack grows while it
// dispatches, and in gatehouse-bench on two cores copying those stacks
// took an eighth of the server's CPU. In one run on 1M
// relationships on PostgreSQL, uncached checks were about 7% faster at one
// than at SpiceDB's default of ten (docs/benchmarks.md).
const checkConcurrency = 1

// Config configures an Engine. The zero value runs an in-memory datastore.
type Config struct {
	// Schema is the SpiceDB schema written at start-up. Required.
	Schema string

	// Datastore is the datastore SpiceDB runs on. The Engine does not close
	// it. Default: nil, which creates an in-memory datastore that the Engine
	// owns and that loses everything when the process exits.
	Datastore datastore.Datastore

	// Logger receives SpiceDB's own log events (info and below as debug).
	// Default: slog.Default().
	Logger *slog.Logger

	// Registry receives SpiceDB's Prometheus metrics. Default: a private
	// registry that nothing exports.
	Registry prometheus.Registerer

	// DispatchCacheMaxCost bounds SpiceDB's dispatch cache, as bytes ("64MiB")
	// or a share of memory ("10%"). Default: "64MiB".
	DispatchCacheMaxCost string

	// ResultCacheBytes bounds the check result cache, the lookup result
	// cache, the cache of resources' orgs and the relationship read cache,
	// each, in estimated bytes. The caches keep each result under the
	// datastore state or revision it was evaluated in, so they never serve
	// a result older than the consistency asked for. Negative turns them
	// off. Default: DefaultResultCacheBytes.
	ResultCacheBytes int

	// PostgresURL is the URL of the PostgreSQL database of Datastore, if
	// it is SpiceDB's PostgreSQL datastore. The result cache then reads
	// the datastore's state from SpiceDB's transaction table through a
	// small pool of its own, and the read cache reads all of an object's
	// relationships in one query. Without it, the cache reads the head
	// revision, which every write in the PostgreSQL cluster moves, and the
	// read cache reads one relation at a time. Default: empty.
	PostgresURL string
}

// Engine is a running in-process SpiceDB. It is safe for concurrent use.
type Engine struct {
	// Permissions is the v1 permissions API, served in-process.
	Permissions v1.PermissionsServiceClient

	embedded *embedded.Permissions // reads pinnedDatastore
	results  *resultCache          // nil when off
	pool     *pgxpool.Pool         // reads the state for the result cache; nil unless PostgresURL
	schema   v1.SchemaServiceClient
	schemaAt *v1.ZedToken // the revision this engine wrote its schema at
	ds       datastore.Datastore
	reads    datastore.Datastore // ds, through the read cache when it is on
	counts   *writeCounts        // counts the writes to ds when the engine owns it
	ownsDS   bool
	conn     *grpc.ClientConn
	logger   *slog.Logger

	schemaWritten atomic.Bool
	cancel        context.CancelFunc
	done          chan error
}

// New starts SpiceDB on cfg's datastore, writes cfg.Schema and returns once
// both are ready. A schema that SpiceDB rejects is an error that names the
// problem. ctx bounds start-up only; the engine runs until Close.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Schema == "" {
		return nil, errors.New("engine: schema is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	registry := cfg.Registry
	if registry == nil {
		registry = prometheus.NewRegistry()
	}
	cacheCost := cfg.DispatchCacheMaxCost
	if cacheCost == "" {
		cacheCost = "64MiB"
	}
	runCtx, cancel := context.WithCancel(contextWithLogger(context.Background(), logger))
	ctx = contextWithLogger(ctx, logger)

	e := &Engine{ds: cfg.Datastore, logger: logger, cancel: cancel, done: make(chan error, 1)}
	if e.ds == nil {
		ds, err := dsconfig.NewDatastore(ctx,
			dsconfig.WithEngine(dsconfig.MemoryEngine),
			dsconfig.WithGCWindow(24*time.Hour),
			dsconfig.WithRevisionQuantization(5*time.Second),
			dsconfig.WithDisableStats(true),
		)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("create in-memory datastore: %w", err)
		}
		// Every write to this datastore goes through this engine or
		// Datastore, so the writes can be counted per org.
		e.counts = newWriteCounts()
		e.ds, e.ownsDS = countingDatastore{Datastore: ds, counts: e.counts}, true
	}

	e.reads = e.ds
	if cfg.ResultCacheBytes >= 0 {
		size := cfg.ResultCacheBytes
		if size == 0 {
			size = DefaultResultCacheBytes
		}
		cache, err := newReadCache(size, cfg.PostgresURL != "", registry)
		if err != nil {
			e.closeDatastore()
			cancel()
			return nil, err
		}
		e.reads = cachingDatastore{Datastore: e.ds, cache: cache}
	}

	srvConfig := server.NewConfigWithOptionsAndDefaults(
		server.WithDatastore(e.reads),
		server.WithGRPCServer(util.GRPCServerConfig{Network: util.BufferedNetwork, Enabled: true}),
		// The buffered listener exists only inside this process, so no other
		// process can reach the API that this allows without credentials.
		server.WithGRPCAuthFunc(func(ctx context.Context) (context.Context, error) { return ctx, nil }),
		server.WithHTTPGateway(util.HTTPServerConfig{HTTPEnabled: false}),
		server.WithMetricsAPI(util.HTTPServerConfig{HTTPEnabled: false}),
		server.WithDispatchServer(util.GRPCServerConfig{Enabled: false}),
		server.WithOTel(*server.NewOTelConfigWithOptionsAndDefaults(server.WithPrometheusRegistry(registry))),
		server.WithDispatchCacheConfig(server.CacheConfig{Name: "dispatch", Enabled: true, Metrics: true, MaxCost: cacheCost}),
		server.WithClusterDispatchCacheConfig(server.CacheConfig{Name: "cluster_dispatch", Enabled: false}),
		// SpiceDB reports usage to an outside host unless configured not to;
		// Gatehouse never reaches beyond the hosts its operator configures.
		server.WithSilentlyDisableTelemetry(true),
		server.WithTelemetryEndpoint(""),
		server.WithEnableRelationshipExpiration(true),
		server.WithMaxLookupResourcesLimit(1000),
	)
	runnable, err := srvConfig.Complete(ctx)
	if err != nil {
		e.closeDatastore()
		cancel()
		return nil, fmt.Errorf("configure spicedb: %w", err)
	}
	go func() { e.done <- runnable.Run(runCtx) }()

	conn, err := runnable.NewClient(grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("connect to in-process spicedb: %w", err)
	}
	e.conn = conn
	e.Permissions = v1.NewPermissionsServiceClient(conn)
	e.schema = v1.NewSchemaServiceClient(conn)

	written, err := e.schema.WriteSchema(ctx, &v1.WriteSchemaRequest{Schema: cfg.Schema})
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("write schema: %w", err)
	}
	e.schemaAt = written.GetWrittenAt()
	e.schemaWritten.Store(true)

	if size := cfg.ResultCacheBytes; size >= 0 {
		if size == 0 {
			size = DefaultResultCacheBytes
		}
		states, perOrg, err := e.stateReader(ctx, cfg.PostgresURL, registry)
		if err != nil {
			e.Close()
			return nil, err
		}
		if e.results, err = newResultCache(states, perOrg, size, registry); err != nil {
			e.Close()
			return nil, err
		}
	}

	pinned, err := newPinnedDatastore(e.reads)
	if err != nil {
		e.Close()
		return nil, err
	}
	e.embedded, err = embedded.NewPermissions(embedded.Config{Datastore: pinned, DispatchConcurrencyLimit: checkConcurrency})
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("create in-process checker: %w", err)
	}
	return e, nil
}

// Ready returns nil when the schema is written and the datastore responds.
// ctx bounds the datastore probe.
func (e *Engine) Ready(ctx context.Context) error {
	if !e.schemaWritten.Load() {
		return errors.New("schema not written yet")
	}
	state, err := e.ds.ReadyState(ctx)
	if err != nil {
		return fmt.Errorf("datastore: %w", err)
	}
	if !state.IsReady {
		return fmt.Errorf("datastore not ready: %s", state.Message)
	}
	return nil
}

// Close stops SpiceDB and releases its resources. It closes the datastore
// only when the Engine created it.
func (e *Engine) Close() error {
	var errs []error
	if e.embedded != nil {
		errs = append(errs, e.embedded.Close())
	}
	if e.conn != nil {
		errs = append(errs, e.conn.Close())
	}
	e.cancel()
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		errs = append(errs, errors.New("spicedb did not stop within 10s"))
	}
	if e.pool != nil {
		e.pool.Close()
	}
	errs = append(errs, e.closeDatastore())
	return errors.Join(errs...)
}

// stateReader returns the reader of the datastore state for the result
// cache, opening a pool for it when url is set, and whether its states
// tell orgs apart.
func (e *Engine) stateReader(ctx context.Context, url string, registry prometheus.Registerer) (stateReader, bool, error) {
	if url == "" {
		if e.counts != nil {
			return counted{ds: e.ds, counts: e.counts}, true, nil
		}
		// A datastore of the caller's may have writers the engine cannot
		// see, such as other processes.
		return headRevision{e.ds}, false, nil
	}
	poolConfig, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors can repeat the URL, password included.
		return nil, false, errors.New("result cache: database URL is not a valid PostgreSQL connection string")
	}
	poolConfig.MaxConns = 8
	poolConfig.ConnConfig.RuntimeParams["application_name"] = "gatehouse-result-cache"
	if e.pool, err = pgxpool.NewWithConfig(ctx, poolConfig); err != nil {
		return nil, false, fmt.Errorf("result cache: connect to postgres: %w", err)
	}
	states, err := newPGTransactions(ctx, e.pool)
	if err != nil {
		return nil, false, err
	}
	durations, err := stateReadHistogram(registry)
	if err != nil {
		return nil, false, err
	}
	return &coalesced{reader: states, durations: durations}, true, nil
}

func (e *Engine) closeDatastore() error {
	if !e.ownsDS || e.ds == nil {
		return nil
	}
	return e.ds.Close()
}

// Datastore returns the datastore SpiceDB runs on. Writing to it directly
// bypasses the schema's validation, so use it only for bulk loading and for
// serving the same data through a second SpiceDB, as the benchmark does.
func (e *Engine) Datastore() datastore.Datastore { return e.ds }
