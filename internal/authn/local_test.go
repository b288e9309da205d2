package authn_test

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/config"
)

const localIssuerURL = "https://gatehouse.example.com"

// localSetup is a local issuer signing with an RSA key, next to a
// configured issuer that uses the same key pair.
type localSetup struct {
	clock *testClock
	idp   *testIdP
	key   *jose.JSONWebKey
	auth  *authn.Authenticator
}

func newLocalSetup(t *testing.T, check func(context.Context, map[string]json.RawMessage, *authn.Principal) error) *localSetup {
	t.Helper()
	clock := newTestClock()
	idp := newTestIdP(t)
	local := authn.LocalIssuer{
		Config: config.Issuer{
			Name:       "gatehouse",
			Issuer:     localIssuerURL,
			Audiences:  []string{"gatehouse"},
			Algorithms: []string{"RS256"},
		},
		KeySet:      &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&idp.key.PublicKey}},
		RequireType: "at+jwt",
		Check:       check,
	}
	a, err := authn.New(context.Background(), []config.Issuer{issuerConfig(idp, "corp")},
		authn.Options{Now: clock.Now, Local: []authn.LocalIssuer{local}})
	if err != nil {
		t.Fatalf("authn.New: %v", err)
	}
	return &localSetup{clock: clock, idp: idp, key: &jose.JSONWebKey{Key: idp.key, KeyID: "local-1"}, auth: a}
}

func (s *localSetup) claims(sub string) map[string]any {
	now := s.clock.Now()
	return map[string]any{
		"iss": localIssuerURL, "sub": sub, "aud": "gatehouse",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "local-token-1",
	}
}

func TestLocalIssuerValid(t *testing.T) {
	tests := []struct {
		name    string
		sub     string
		typ     string
		wantRef string
	}{
		{"user", "user:corp|alice", "at+jwt", "user:corp|alice"},
		{"service", "service:corp|billing", "at+jwt", "service:corp|billing"},
		{"typ with media type prefix", "user:corp|alice", "application/AT+JWT", "user:corp|alice"},
		{"encoded subject", "user:corp|=YWxpY2VAZXhhbXBsZS5jb20", "at+jwt", "user:corp|=YWxpY2VAZXhhbXBsZS5jb20"},
	}
	s := newLocalSetup(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := (&jose.SignerOptions{}).WithType(jose.ContentType(tt.typ))
			token := signToken(t, jose.RS256, s.key, s.claims(tt.sub), opts)

			p, err := s.auth.Authenticate(context.Background(), token)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if got := p.Ref.String(); got != tt.wantRef {
				t.Errorf("ref: got %q, want %q", got, tt.wantRef)
			}
			if p.IssuerName != "gatehouse" {
				t.Errorf("issuer name: got %q, want %q", p.IssuerName, "gatehouse")
			}
			if p.Subject != tt.sub {
				t.Errorf("subject: got %q, want %q", p.Subject, tt.sub)
			}
			if p.TokenID != "local-token-1" {
				t.Errorf("token id: got %q, want %q", p.TokenID, "local-token-1")
			}
		})
	}
}

func TestLocalIssuerRejects(t *testing.T) {
	s := newLocalSetup(t, nil)
	sign := func(t *testing.T, typ string, claims map[string]any) string {
		return signToken(t, jose.RS256, s.key, claims, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	}

	tests := []struct {
		name   string
		token  func(t *testing.T) string
		reason string
	}{
		{"typ JWT", func(t *testing.T) string { return sign(t, "JWT", s.claims("user:corp|alice")) }, `typ "JWT", expected "at+jwt"`},
		{"sub without type", func(t *testing.T) string { return sign(t, "at+jwt", s.claims("alice")) }, "principal reference"},
		{"group sub", func(t *testing.T) string { return sign(t, "at+jwt", s.claims("group:admins")) }, "principal reference"},
		{"invalid principal id", func(t *testing.T) string { return sign(t, "at+jwt", s.claims("user:alice")) }, "principal reference"},
		{"wrong audience", func(t *testing.T) string {
			c := s.claims("user:corp|alice")
			c["aud"] = "other"
			return sign(t, "at+jwt", c)
		}, "none of the configured audiences"},
		{"expired", func(t *testing.T) string {
			c := s.claims("user:corp|alice")
			c["exp"] = s.clock.Now().Add(-time.Second).Unix()
			return sign(t, "at+jwt", c)
		}, "expired"},
		{"signed by other key", func(t *testing.T) string {
			forger := &jose.JSONWebKey{Key: otherKey(t, s.idp.key), KeyID: "local-1"}
			return signToken(t, jose.RS256, forger, s.claims("user:corp|alice"), nil)
		}, "signature"},
		{"ES256 not allowed", func(t *testing.T) string {
			return signToken(t, jose.ES256, ecKey(t), s.claims("user:corp|alice"), nil)
		}, "malformed jwt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.auth.Authenticate(context.Background(), tt.token(t))
			if !errors.Is(err, authn.ErrInvalidToken) {
				t.Fatalf("got %v, want ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("got %q, want it to contain %q", err, tt.reason)
			}
		})
	}
}

// TestLocalIssuerRoutedByIss shows that a token of the configured issuer is
// never verified by the local issuer, even though both share a key.
func TestLocalIssuerRoutedByIss(t *testing.T) {
	s := newLocalSetup(t, nil)

	claims := s.idp.claims(s.clock.Now())
	claims["sub"] = "user:corp|alice"
	p, err := s.auth.Authenticate(context.Background(), s.idp.sign(t, claims))
	if err != nil {
		t.Fatalf("configured issuer token: %v", err)
	}
	if want := "user:corp|=" + "dXNlcjpjb3JwfGFsaWNl"; p.Ref.String() != want {
		t.Errorf("ref: got %q, want %q (the configured issuer's mapping)", p.Ref, want)
	}
	if p.IssuerName != "corp" {
		t.Errorf("issuer name: got %q, want %q", p.IssuerName, "corp")
	}
}

func TestLocalIssuerCheck(t *testing.T) {
	errRevoked := errors.New("session revoked")
	tests := []struct {
		name      string
		checkErr  error
		wantStale bool
	}{
		{"stale", fmt.Errorf("grant changed: %w", authn.ErrStaleToken), true},
		{"other failure", errRevoked, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen *authn.Principal
			s := newLocalSetup(t, func(ctx context.Context, claims map[string]json.RawMessage, p *authn.Principal) error {
				if sub := string(claims["sub"]); sub != `"user:corp|alice"` {
					return fmt.Errorf("unexpected token subject %s", sub)
				}
				seen = p
				return tt.checkErr
			})
			token := signToken(t, jose.RS256, s.key, s.claims("user:corp|alice"), nil)

			_, err := s.auth.Authenticate(context.Background(), token)
			if !errors.Is(err, authn.ErrInvalidToken) {
				t.Errorf("got %v, want ErrInvalidToken", err)
			}
			if got := errors.Is(err, authn.ErrStaleToken); got != tt.wantStale {
				t.Errorf("errors.Is(err, ErrStaleToken): got %v, want %v (err %v)", got, tt.wantStale, err)
			}
			if !errors.Is(err, tt.checkErr) {
				t.Errorf("got %v, want it to wrap %v", err, tt.checkErr)
			}
			if seen == nil || seen.Ref.String() != "user:corp|alice" {
				t.Errorf("Check got principal %+v, want user:corp|alice", seen)
			}
		})
	}
}

func TestLocalIssuerConfigRejects(t *testing.T) {
	idp := newTestIdP(t)
	keySet := &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&idp.key.PublicKey}}
	base := config.Issuer{Name: "gatehouse", Issuer: localIssuerURL, Audiences: []string{"gatehouse"}}

	tests := []struct {
		name   string
		local  authn.LocalIssuer
		reason string
	}{
		{"missing key set", authn.LocalIssuer{Config: base}, "KeySet is required"},
		{"name of configured issuer", authn.LocalIssuer{Config: config.Issuer{Name: "corp", Issuer: localIssuerURL, Audiences: []string{"g"}}, KeySet: keySet},
			`"corp" is already used`},
		{"issuer URL of configured issuer", authn.LocalIssuer{Config: config.Issuer{Name: "gatehouse", Issuer: idp.issuer, Audiences: []string{"g"}}, KeySet: keySet},
			"is already used"},
		{"other subject claim", authn.LocalIssuer{Config: config.Issuer{Name: "gatehouse", Issuer: localIssuerURL, Audiences: []string{"g"},
			Claims: config.Claims{Subject: "oid"}}, KeySet: keySet}, "subject claim"},
		{"jwks_uri", authn.LocalIssuer{Config: config.Issuer{Name: "gatehouse", Issuer: localIssuerURL, Audiences: []string{"g"},
			JWKSURI: localIssuerURL + "/jwks"}, KeySet: keySet}, "must be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := authn.New(context.Background(), []config.Issuer{issuerConfig(idp, "corp")},
				authn.Options{Local: []authn.LocalIssuer{tt.local}})
			if err == nil || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("got %v, want an error containing %q", err, tt.reason)
			}
		})
	}
}

// TestLocalIssuerCheckEveryRequest checks that a cached token still goes
// through the local issuer's Check, so a token turns stale at once.
func TestLocalIssuerCheckEveryRequest(t *testing.T) {
	var stale atomic.Bool
	calls := 0
	s := newLocalSetup(t, func(ctx context.Context, claims map[string]json.RawMessage, p *authn.Principal) error {
		calls++
		if stale.Load() {
			return authn.ErrStaleToken
		}
		return nil
	})
	token := signToken(t, jose.RS256, s.key, s.claims("user:corp|alice"), nil)

	for i := range 3 {
		if _, err := s.auth.Authenticate(context.Background(), token); err != nil {
			t.Fatalf("authenticate %d: %v", i, err)
		}
	}
	stale.Store(true)
	_, err := s.auth.Authenticate(context.Background(), token)
	if !errors.Is(err, authn.ErrStaleToken) {
		t.Errorf("got %v after Check turned stale, want ErrStaleToken", err)
	}
	if calls != 4 {
		t.Errorf("Check ran %d times for 4 requests, want 4", calls)
	}
}
