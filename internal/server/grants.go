package server

import (
	"context"

	"github.com/gatehouse-authz/gatehouse/internal/grants"
)

// openGrants creates the temporary grant service on the chosen storage.
func (s *Server) openGrants(cfg Config) error {
	var store grants.Store = grants.NewMemory()
	if s.store != nil {
		store = grants.NewPostgres(s.store.Pool)
	}
	s.grants = grants.New(s.authz, store, grants.Config{
		MaxDuration:           cfg.Grants.MaxDuration,
		BreakGlassMaxDuration: cfg.Grants.BreakGlassMaxDuration,
		BreakGlass:            cfg.BreakGlass,
		Auditors:              cfg.PlatformAuditors,
		Logger:                s.logger.With("component", "grants"),
	})
	return nil
}

// runGrants runs the grant scheduler until ctx ends.
func (s *Server) runGrants(ctx context.Context) { s.grants.Run(ctx) }
