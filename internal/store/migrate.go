package store

import (
	"context"

	"fmt"
	"github.com/jackc/pgx/v5"
	"log/slog"
	"time"

	dsconfig "github.com/authzed/spicedb/pkg/cmd/datastore"
	"github.com/authzed/spicedb/pkg/datastore/migration"
)

// migrateLockID is the advisory lock that serializes migrations across
// instances. SpiceDB's Postgres datastore uses lock ids 1 and 2.
const migrateLockID = 0x67617465 // "gate"

// Migrate brings SpiceDB's tables and Gatehouse's own tables to the version
// this build needs. It is idempotent, and concurrent runs from several
// instances take turns on an advisory lock. ctx bounds the whole run.
func Migrate(ctx context.Context, cfg Config, logger *slog.Logger) error {
	s, err := Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()

	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Release()
	if err := lockForMigration(ctx, conn.Conn()); err != nil {
		return err
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLockID)
	}()

	logger.Info("migrating spicedb tables")
	err = migration.Run(ctx, &migration.Config{
		DatastoreEngine: dsconfig.PostgresEngine,
		DatastoreURI:    cfg.URL,
		Timeout:         time.Hour,
		BatchSize:       1000,
	}, "head")
	if err != nil {
		return fmt.Errorf("migrate spicedb tables: %w", err)
	}

	logger.Info("migrating gatehouse tables", "schema", SchemaName)
	return s.migrateOwn(ctx, logger)
}

// CheckSpiceDBMigrated returns ErrNotMigrated unless SpiceDB's tables are at
// the head revision of the embedded SpiceDB version.
func CheckSpiceDBMigrated(ctx context.Context, cfg Config) error {
	head, err := migration.HeadRevision(dsconfig.PostgresEngine)
	if err != nil {
		return err
	}
	current, err := migration.Version(ctx, &migration.Config{DatastoreEngine: dsconfig.PostgresEngine, DatastoreURI: cfg.URL})
	if err != nil {
		return fmt.Errorf("read spicedb migration state: %w", redactError(err, cfg.URL))
	}
	if current != head {
		return fmt.Errorf("%w (spicedb tables at %q, need %q)", ErrNotMigrated, current, head)
	}
	return nil
}

// lockForMigration takes the session-level migration lock on conn, which
// the server releases if the process dies. It polls pg_try_advisory_lock
// rather than waiting in pg_advisory_lock, because a statement that waits
// holds a transaction open, and SpiceDB's CREATE INDEX CONCURRENTLY in the
// other instance's migration waits for every open transaction: the two
// would wait for each other forever. ctx bounds the wait.
func lockForMigration(ctx context.Context, conn *pgx.Conn) error {
	for {
		var locked bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", migrateLockID).Scan(&locked); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if locked {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for another instance's migration: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
