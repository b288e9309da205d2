// Package store owns Gatehouse's PostgreSQL database: the connection pool
// for Gatehouse's own tables, which live in their own Postgres schema, and
// the migrations of both those tables and SpiceDB's.
package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// SchemaName is the Postgres schema that holds Gatehouse's own tables;
// SpiceDB's tables stay in the connection's default schema.
const SchemaName = "gatehouse"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrNotMigrated means the database lacks migrations this build needs.
var ErrNotMigrated = errors.New("database is not migrated to this version of gatehouse; run `gatehouse migrate` (or start with --migrate)")

// Config configures the pool of Gatehouse's own tables.
type Config struct {
	// URL is a PostgreSQL connection URL or keyword/value string. Required.
	URL string

	// MaxConns bounds the pool. Default: 10.
	MaxConns int32

	// StatementTimeout bounds every statement on the server side. Default: 10s.
	StatementTimeout time.Duration
}

// Store is a connection pool to Gatehouse's tables. It is safe for
// concurrent use.
type Store struct {
	Pool *pgxpool.Pool
}

// Open connects to PostgreSQL. It does not check migrations; call
// CheckMigrated for that. ctx bounds the first connection.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	poolConfig, err := PoolConfig(cfg)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return &Store{Pool: pool}, nil
}

// PoolConfig parses cfg into a pgx pool configuration that searches
// SchemaName first and applies the statement timeout.
func PoolConfig(cfg Config) (*pgxpool.Config, error) {
	if cfg.URL == "" {
		return nil, errors.New("database URL is required")
	}
	poolConfig, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgx's parse errors can repeat the URL, password included.
		return nil, errors.New("database URL is not a valid PostgreSQL connection string")
	}
	if cfg.MaxConns > 0 {
		poolConfig.MaxConns = cfg.MaxConns
	} else {
		poolConfig.MaxConns = 10
	}
	timeout := cfg.StatementTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	params := poolConfig.ConnConfig.RuntimeParams
	params["search_path"] = SchemaName
	params["statement_timeout"] = fmt.Sprint(timeout.Milliseconds())
	params["application_name"] = "gatehouse"
	return poolConfig, nil
}

// Close closes the pool.
func (s *Store) Close() { s.Pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.Pool.Ping(ctx) }

// CheckMigrated returns ErrNotMigrated unless every migration of this build
// has been applied.
func (s *Store) CheckMigrated(ctx context.Context) error {
	// goose creates its version table when it is missing, even to read it,
	// so look for the table first and keep this check read-only.
	var table *string
	if err := s.Pool.QueryRow(ctx, "SELECT to_regclass($1)::text", SchemaName+".goose_db_version").Scan(&table); err != nil {
		return fmt.Errorf("read migration state: %w", err)
	}
	if table == nil {
		return ErrNotMigrated
	}

	db := stdlib.OpenDBFromPool(s.Pool)
	defer db.Close()

	provider, err := newProvider(db)
	if err != nil {
		return err
	}
	pending, err := provider.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("read migration state: %w", err)
	}
	if pending {
		return ErrNotMigrated
	}
	return nil
}

// migrateOwn applies Gatehouse's pending migrations in SchemaName.
func (s *Store) migrateOwn(ctx context.Context, logger *slog.Logger) error {
	if _, err := s.Pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{SchemaName}.Sanitize()); err != nil {
		return fmt.Errorf("create schema %q: %w", SchemaName, err)
	}
	db := stdlib.OpenDBFromPool(s.Pool)
	defer db.Close()

	provider, err := newProvider(db)
	if err != nil {
		return err
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply gatehouse migrations: %w", err)
	}
	for _, r := range results {
		logger.Info("applied gatehouse migration", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	return nil
}

func newProvider(db *sql.DB) (*goose.Provider, error) {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, files,
		// The pool's search_path is SchemaName, so the table lives there.
		goose.WithTableName("goose_db_version"),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("load gatehouse migrations: %w", err)
	}
	return provider, nil
}

// RedactURL returns a PostgreSQL connection string, URL or keyword/value
// form, with its password replaced, for logs and errors.
func RedactURL(raw string) string {
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "(unparsable database URL)"
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return keywordPassword.ReplaceAllString(raw, "password=xxxxx")
}

// keywordPassword matches the password of a keyword/value connection
// string, quoted or not.
var keywordPassword = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// RecordSchema notes that this instance wrote the SpiceDB schema text,
// identified by its SHA-256, at start-up.
func (s *Store) RecordSchema(ctx context.Context, text, version string) error {
	sum := sha256.Sum256([]byte(text))
	_, err := s.Pool.Exec(ctx, `
		INSERT INTO schema_writes (schema_sha256, version) VALUES ($1, $2)
		ON CONFLICT (schema_sha256) DO UPDATE SET written_at = now(), version = EXCLUDED.version`,
		hex.EncodeToString(sum[:]), version)
	return err
}
