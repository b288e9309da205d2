package store

import (
	"context"
	"fmt"
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
	// Session-level lock on this connection: released below, or by the
	// server if the process dies.
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0; SELECT pg_advisory_lock($1)", migrateLockID); err != nil {
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockID); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
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
