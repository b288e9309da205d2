package server

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

// openStorage connects to PostgreSQL when cfg names it, after applying
// or checking migrations. Memory needs nothing here: the engine creates it.
func (s *Server) openStorage(ctx context.Context, cfg Config) error {
	switch cfg.Datastore {
	case "", DatastoreMemory:
		return nil
	case DatastorePostgres:
	default:
		return fmt.Errorf("unknown datastore %q: use memory or postgres", cfg.Datastore)
	}
	if cfg.Postgres.URL == "" {
		return errors.New("--datastore postgres needs --database-url or GATEHOUSE_DATABASE_URL")
	}
	storeConfig := store.Config{URL: cfg.Postgres.URL}

	if cfg.Migrate {
		if err := store.Migrate(ctx, storeConfig, s.logger); err != nil {
			return err
		}
	} else if err := store.CheckSpiceDBMigrated(ctx, storeConfig); err != nil {
		return err
	}

	st, err := store.Open(ctx, storeConfig)
	if err != nil {
		return err
	}
	if err := st.CheckMigrated(ctx); err != nil {
		st.Close()
		return err
	}
	ds, err := engine.NewPostgresDatastore(ctx, cfg.Postgres)
	if err != nil {
		st.Close()
		return err
	}
	s.store, s.datastore = st, ds
	return nil
}

func (s *Server) closeStorage() {
	if s.datastore != nil {
		if err := s.datastore.Close(); err != nil {
			s.logger.Warn("close spicedb datastore", "error", err)
		}
		s.datastore = nil
	}
	if s.store != nil {
		s.store.Close()
		s.store = nil
	}
}

// Ready reports whether SpiceDB and, with PostgreSQL, Gatehouse's own
// tables respond. It backs /readyz and turns failures during an outage into
// 503 responses.
func (s *Server) Ready(ctx context.Context) error {
	if err := s.engine.Ready(ctx); err != nil {
		return err
	}
	if s.store != nil {
		if err := s.store.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
	return nil
}

// Version returns the module version of this build, or "(devel)".
func Version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}
