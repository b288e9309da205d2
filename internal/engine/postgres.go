package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	dsconfig "github.com/authzed/spicedb/pkg/cmd/datastore"
	"github.com/authzed/spicedb/pkg/datastore"
)

// PostgresConfig configures SpiceDB's PostgreSQL datastore. Zero fields take
// the defaults given per field.
type PostgresConfig struct {
	// URL is the PostgreSQL connection URL. Required. It is never logged.
	URL string

	// MaxReadConns and MaxWriteConns bound SpiceDB's two connection pools.
	// Default: 20 and 10.
	MaxReadConns  int
	MaxWriteConns int

	// MaxRetries bounds SpiceDB's retries of a write that hit a
	// serialization failure or a dropped connection. Default: 10.
	MaxRetries int

	// GCWindow is how far into the past a consistency token may point;
	// older revisions are garbage collected. At least MinGCWindow.
	// Default: 24h.
	GCWindow time.Duration

	// GCInterval is how often old revisions are deleted. Only one instance
	// runs the collector at a time: SpiceDB serializes it with a Postgres
	// advisory lock. Default: 3m.
	GCInterval time.Duration

	// RevisionQuantization is how stale a "minimize_latency" read may be.
	// Default: 5s.
	RevisionQuantization time.Duration

	// EnableMetrics registers SpiceDB's connection pool metrics with the
	// process-wide Prometheus registry. Leave it off when several
	// datastores share a process, as in tests. Default: false.
	EnableMetrics bool
}

// MinGCWindow is the shortest garbage collection window that the result
// cache allows: twice the age at which its horizon moves.
const MinGCWindow = 2 * MaxHorizonAge

// NewPostgresDatastore connects SpiceDB's PostgreSQL datastore. The caller
// owns it and closes it after the Engine. The tables must already be
// migrated. ctx bounds the first connection.
func NewPostgresDatastore(ctx context.Context, cfg PostgresConfig) (datastore.Datastore, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("postgres datastore: URL is required")
	}
	if cfg.GCWindow != 0 && cfg.GCWindow < MinGCWindow {
		return nil, fmt.Errorf("postgres datastore: the garbage collection window %s is shorter than the minimum, %s, that the check cache needs; set --database-gc-window to %s or more", cfg.GCWindow, MinGCWindow, MinGCWindow)
	}
	uri := withQueryExecMode(cfg.URL)
	readPool := dsconfig.DefaultReadConnPool()
	readPool.MaxOpenConns = orDefault(cfg.MaxReadConns, 20)
	readPool.MinOpenConns = min(readPool.MinOpenConns, readPool.MaxOpenConns)
	writePool := dsconfig.DefaultWriteConnPool()
	writePool.MaxOpenConns = orDefault(cfg.MaxWriteConns, 10)
	writePool.MinOpenConns = min(writePool.MinOpenConns, writePool.MaxOpenConns)

	ds, err := dsconfig.NewDatastore(contextWithDiscardLogger(ctx),
		dsconfig.WithEngine(dsconfig.PostgresEngine),
		dsconfig.WithURI(uri),
		dsconfig.WithReadConnPool(*readPool),
		dsconfig.WithWriteConnPool(*writePool),
		dsconfig.WithMaxRetries(orDefault(cfg.MaxRetries, 10)),
		dsconfig.WithGCWindow(orDefaultDuration(cfg.GCWindow, 24*time.Hour)),
		dsconfig.WithGCInterval(orDefaultDuration(cfg.GCInterval, 3*time.Minute)),
		dsconfig.WithRevisionQuantization(orDefaultDuration(cfg.RevisionQuantization, 5*time.Second)),
		dsconfig.WithEnableDatastoreMetrics(cfg.EnableMetrics),
		dsconfig.WithDisableStats(true),
	)
	if err != nil {
		return nil, fmt.Errorf("open spicedb postgres datastore: %w", err)
	}
	return ds, nil
}

// DefaultQueryExecMode is the pgx query mode of SpiceDB's connections
// unless the connection string sets default_query_exec_mode. It prepares
// each query shape once per connection, so PostgreSQL parses and plans it
// once. SpiceDB's own default, exec, has the server plan every query
// again. On the benchmark's 1M relationships that planning took more than
// half of PostgreSQL's CPU per cold check. Set
// default_query_exec_mode=exec in the URL behind a pooler that cannot keep
// prepared statements, such as PgBouncer in transaction mode before
// version 1.21.
const DefaultQueryExecMode = "cache_statement"

// withQueryExecMode adds DefaultQueryExecMode to a connection string, in
// URL or keyword/value form, that does not choose a mode. Like SpiceDB, it
// takes any mention of the parameter as a choice. It adds text and changes
// none: pgx parses URLs as libpq does, which differs from net/url on
// socket directories, several hosts and '#', so a string rebuilt by
// net/url could mean something else.
func withQueryExecMode(conn string) string {
	const param = "default_query_exec_mode=" + DefaultQueryExecMode
	if strings.Contains(conn, "default_query_exec_mode") {
		return conn
	}
	if !strings.HasPrefix(conn, "postgres://") && !strings.HasPrefix(conn, "postgresql://") {
		// In front, so that a last keyword with an empty value cannot
		// take the parameter as its value.
		return param + " " + conn
	}
	switch {
	case !strings.Contains(conn, "?"):
		return conn + "?" + param
	case strings.HasSuffix(conn, "?"), strings.HasSuffix(conn, "&"):
		return conn + param
	default:
		return conn + "&" + param
	}
}

func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func orDefaultDuration(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}
