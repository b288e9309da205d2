package server

import (
	"context"

	"github.com/gatehouse-authz/gatehouse/internal/links"
)

// openLinks creates the share link service on the chosen storage.
func (s *Server) openLinks(cfg Config) error {
	var store links.Store = links.NewMemoryStore()
	if s.store != nil {
		store = links.NewPostgresStore(s.store.Pool)
	}
	svc, err := links.New(links.Config{Authz: s.authz, Store: store, Logger: s.logger})
	if err != nil {
		return err
	}
	s.links = svc
	return nil
}

// runLinks runs the share link scheduler until ctx ends.
func (s *Server) runLinks(ctx context.Context) {
	if s.links != nil {
		s.links.Run(ctx)
	}
}

// Links returns the share link service, for tests that drive its
// scheduler directly.
func (s *Server) Links() *links.Service { return s.links }
