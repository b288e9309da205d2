package server

import (
	"context"
	"encoding/json"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/authversion"
	"github.com/gatehouse-authz/gatehouse/internal/config"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/tokens"
)

// TokensName is the issuer name of Gatehouse's own tokens in logs.
const TokensName = "gatehouse"

// openTokens creates the auth version store and, when an issuer URL is
// configured (or implied by Dev), Gatehouse's token issuer, both on the
// storage that openStorage chose.
func (s *Server) openTokens(cfg Config) error {
	var keys tokens.KeyStore
	if s.store != nil {
		s.versions = authversion.NewPostgres(s.store.Pool, s.logger)
		keys = tokens.NewPostgresKeys(s.store.Pool)
	} else {
		s.versions = authversion.NewMemory()
		keys = tokens.NewMemoryKeys()
	}

	issuerURL := cfg.Tokens.Issuer
	if issuerURL == "" && cfg.Dev {
		issuerURL = s.url
	}
	if issuerURL == "" {
		return nil
	}
	issuer, err := tokens.NewIssuer(tokens.Config{URL: issuerURL, Audiences: cfg.Tokens.Audiences, TTL: cfg.Tokens.TTL}, keys, s.versions)
	if err != nil {
		return err
	}
	s.tokens = issuer
	return nil
}

// localIssuers returns Gatehouse itself as an issuer that authn routes its
// own tokens to, verified with the in-process key set and checked for a
// current auth version.
func (s *Server) localIssuers() []authn.LocalIssuer {
	if s.tokens == nil {
		return nil
	}
	return []authn.LocalIssuer{{
		Config: config.Issuer{
			Name:       TokensName,
			Issuer:     s.tokens.URL(),
			Audiences:  s.tokens.Audiences(),
			Algorithms: []string{tokens.Algorithm},
		},
		KeySet:      s.tokens.KeySet(),
		RequireType: "at+jwt",
		Check: func(ctx context.Context, claims map[string]json.RawMessage, p *authn.Principal) error {
			return s.tokens.CheckVersionClaims(ctx, claims, p.Ref.String())
		},
	}}
}

// Tokens returns the token issuer, or nil when token exchange is off.
func (s *Server) Tokens() *tokens.Issuer { return s.tokens }

// Engine returns the embedded SpiceDB, for tools that load data in bulk or
// compare with raw SpiceDB on the same datastore.
func (s *Server) Engine() *engine.Engine { return s.engine }
