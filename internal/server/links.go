package server

import "context"

// openLinks creates the share link service on the chosen storage.
func (s *Server) openLinks(cfg Config) error { return nil }

// runLinks runs the share link scheduler until ctx ends.
func (s *Server) runLinks(ctx context.Context) {}
