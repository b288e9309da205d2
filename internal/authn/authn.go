// Package authn verifies the bearer access tokens that callers send to
// Gatehouse and maps each valid token to a Principal.
//
// Tokens are JWS compact serializations (RFC 7515, section 7.1) signed by one
// of the configured issuers. github.com/coreos/go-oidc/v3 checks the
// signature, the "alg" allow-list, "iss" and "exp". This package routes each
// token to its issuer, restricts the header and caches key sets. It checks
// "nbf" and "iat" against the issuer's clock skew, the access token markers,
// the audience and the tenant, and maps the claims to a principal.
//
// What it deliberately does not check: "azp", except as an ID token marker
// when an issuer has no access_tokens config, and scopes or roles beyond
// their presence. Authorization decisions belong to the caller.
package authn

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-authz/gatehouse/internal/config"
)

// MaxTokenSize is the longest token, in bytes, that Authenticate accepts.
const MaxTokenSize = 8 << 10

// ErrInvalidToken is wrapped by every error that Authenticate returns. The
// rest of the message gives the reason, for server logs only: clients should
// see one uniform message for every token failure.
var ErrInvalidToken = errors.New("invalid token")

// ErrStaleToken is wrapped, together with ErrInvalidToken, by the error of
// Authenticate when a LocalIssuer's Check reports that a validly signed
// token no longer reflects the current state and the caller should obtain a
// new one.
var ErrStaleToken = errors.New("token is stale")

// Options configures an Authenticator. The zero value is valid.
type Options struct {
	// Logger receives discovery results and key set fetch notices, never a
	// token. Default: a logger that discards everything.
	Logger *slog.Logger

	// HTTPClient fetches discovery documents and key sets. It should set a
	// Timeout, because a request to an issuer that never responds holds up
	// every token of that issuer. Every response body is limited to 1 MiB
	// whatever the client. Default: an http.Client with a 10-second timeout.
	HTTPClient *http.Client

	// Now returns the current time, for tests. Default: time.Now.
	Now func() time.Time

	// Local are issuers whose keys live in this process, such as
	// Gatehouse's own token issuer. They are routed by exact "iss" like the
	// configured issuers, and their names and issuer URLs must differ from
	// those. Default: none.
	Local []LocalIssuer

	// TokenCacheSize bounds the cache of verified tokens, in tokens. A
	// token that passed every check is served from the cache until it
	// expires, for at most five minutes, and until the issuer's key set is
	// fetched again, without checking its signature again. A local
	// issuer's Check still runs on every request. Negative turns
	// the cache off. Default: DefaultTokenCacheSize.
	TokenCacheSize int

	// Registerer receives the key set metrics (gatehouse_jwks_fetches_total).
	// When it already holds a collector of that name, for example from an
	// earlier Authenticator, that collector is reused. Default: nil, so no
	// metrics are recorded.
	Registerer prometheus.Registerer
}

// Authenticator verifies access tokens against a fixed set of issuers. It is
// safe for concurrent use.
type Authenticator struct {
	verifiers map[string]*issuerVerifier // by exact "iss" value
	cache     *tokenCache                // nil when off
	now       func() time.Time
}

// New returns an Authenticator for issuers, which must pass
// config.File.Validate, and for opts.Local. A multi-tenant issuer becomes
// one verifier per tenant. New makes no network request: each issuer's
// discovery document is fetched when its first token arrives, so an issuer
// served by the same process (such as the dev issuer) works. New keeps only
// the values of ctx, as the parent of background key set fetches, and
// ignores its cancellation.
func New(ctx context.Context, issuers []config.Issuer, opts Options) (*Authenticator, error) {
	if err := (&config.File{Issuers: issuers}).Validate(); err != nil {
		return nil, fmt.Errorf("authn: %w", err)
	}
	if err := validateLocal(issuers, opts.Local); err != nil {
		return nil, fmt.Errorf("authn: %w", err)
	}

	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	fetches, err := newFetchCounter(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("authn: register metrics: %w", err)
	}

	a := &Authenticator{verifiers: make(map[string]*issuerVerifier, len(issuers)+len(opts.Local)), now: opts.Now}
	if size := opts.TokenCacheSize; size >= 0 {
		if size == 0 {
			size = DefaultTokenCacheSize
		}
		if a.cache, err = newTokenCache(size); err != nil {
			return nil, fmt.Errorf("authn: create token cache: %w", err)
		}
	}
	for _, iss := range issuers {
		iss = cloneIssuer(iss)
		if !iss.MultiTenant() {
			a.verifiers[iss.Issuer] = newIssuerVerifier(ctx, iss, "", opts, fetches)
			continue
		}
		for _, tenant := range iss.Tenants {
			expanded := iss.ForTenant(tenant)
			a.verifiers[expanded.Issuer] = newIssuerVerifier(ctx, expanded, tenant, opts, fetches)
		}
	}
	for _, local := range opts.Local {
		local.Config = cloneIssuer(local.Config)
		a.verifiers[local.Config.Issuer] = newLocalVerifier(local, opts)
	}
	return a, nil
}

// Authenticate verifies rawToken, the value after "Bearer " in an
// Authorization header, and returns the principal it identifies. Every error
// wraps ErrInvalidToken and never contains the token. An error of a local
// issuer's Check that wraps ErrStaleToken is wrapped too. ctx cancels
// waiting for an issuer's discovery or key set. A fetch that has started
// still runs to completion in the background, bounded by the HTTP client's
// timeout.
//
// The checks run in this order. First the size and shape, the forbidden
// header parameters and the routing by "iss". Then go-oidc checks the "alg"
// allow-list, the signature, "iss" and "exp". Then come "exp", "nbf" and
// "iat" against the issuer's clock skew, the access token markers, the
// audience, the principal claims and tenant, and last a local issuer's Check.
func (a *Authenticator) Authenticate(ctx context.Context, rawToken string) (*Principal, error) {
	// Shape: cheap checks before any decoding.
	if rawToken == "" {
		return nil, invalid("missing token")
	}
	if len(rawToken) > MaxTokenSize {
		return nil, invalid("token is %d bytes, max %d", len(rawToken), MaxTokenSize)
	}
	var key [sha256.Size]byte
	if a.cache != nil {
		key = sha256.Sum256([]byte(rawToken))
		if vt, ok := a.cache.get(key, a.now()); ok {
			return vt.verifier.finish(ctx, vt.principal, vt.claims)
		}
	}

	rawHeader, payload, err := splitCompact(rawToken)
	if err != nil {
		return nil, invalid("%v", err)
	}

	header, err := parseHeader(rawHeader)
	if err != nil {
		return nil, invalid("%v", err)
	}

	// Routing: the unverified "iss" only selects the one verifier configured
	// for exactly that string. That verifier checks "iss" again after the
	// signature, and no other verifier is ever tried.
	issuer, err := unverifiedIssuer(payload)
	if err != nil {
		return nil, invalid("%v", err)
	}
	v, ok := a.verifiers[issuer]
	if !ok {
		return nil, invalid("unknown issuer %q", truncate(issuer))
	}

	// Signature, "alg", "iss" and "exp", by go-oidc. The key set count is
	// read first, so a fetch during verification makes the cached entry
	// stale.
	keys := v.keysReplaced.Load()
	token, err := v.verify(ctx, rawToken)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer %q: %w", ErrInvalidToken, v.name, shortError{err})
	}

	// Claims: every check below reads only signed data.
	var claims map[string]json.RawMessage
	if err := token.Claims(&claims); err != nil {
		return nil, v.invalid(fmt.Errorf("decode claims: %w", err))
	}
	if err := v.checkTimes(token, claims); err != nil {
		return nil, v.invalid(err)
	}
	if err := v.checkAccessToken(header, token, claims); err != nil {
		return nil, v.invalid(err)
	}
	if err := v.checkAudience(token); err != nil {
		return nil, v.invalid(err)
	}

	p, err := v.principal(token, claims)
	if err != nil {
		return nil, v.invalid(err)
	}

	if a.cache != nil {
		vt := &verifiedToken{verifier: v, principal: *p, until: token.Expiry, keys: keys}
		if v.local != nil {
			vt.claims = claims
		}
		a.cache.put(key, vt, a.now())
	}
	return v.finish(ctx, *p, claims)
}

// finish runs a local issuer's Check on a verified token and returns its
// own copy of the principal.
func (v *issuerVerifier) finish(ctx context.Context, p Principal, claims map[string]json.RawMessage) (*Principal, error) {
	if v.local != nil && v.local.Check != nil {
		if err := v.local.Check(ctx, claims, &p); err != nil {
			return nil, v.invalid(err)
		}
	}
	return &p, nil
}

// unverifiedIssuer reads "iss" from a payload whose signature has not been
// checked yet. It decodes into a struct, like go-oidc, so that both read the
// same value when a payload has several keys that differ only in case.
func unverifiedIssuer(payload []byte) (string, error) {
	var claims struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", errors.New("payload is not a JSON object with a string iss claim")
	}
	if claims.Issuer == "" {
		return "", errors.New("token has no iss claim")
	}
	return claims.Issuer, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, args...))
}

// truncate shortens a token-supplied value before it goes into an error
// message, so that a large claim cannot flood the logs.
func truncate(s string) string {
	const maxLength = 128
	if len(s) <= maxLength {
		return s
	}
	return s[:maxLength] + "..."
}

// shortError cuts the message of an error from go-oidc, which can contain a
// whole discovery document or key set that an issuer sent with an error
// status.
type shortError struct{ err error }

func (e shortError) Error() string {
	const maxLength = 512
	msg := e.err.Error()
	if len(msg) <= maxLength {
		return msg
	}
	return msg[:maxLength] + "..."
}

func (e shortError) Unwrap() error { return e.err }

func truncateAll(values []string) []string {
	const maxValues = 8
	out := make([]string, 0, min(len(values), maxValues))
	for _, v := range values[:min(len(values), maxValues)] {
		out = append(out, truncate(v))
	}
	return out
}

func cloneIssuer(iss config.Issuer) config.Issuer {
	iss.Audiences = slices.Clone(iss.Audiences)
	iss.Algorithms = slices.Clone(iss.Algorithms)
	iss.Tenants = slices.Clone(iss.Tenants)
	if iss.AppTokens != nil {
		app := *iss.AppTokens
		app.Values = slices.Clone(app.Values)
		iss.AppTokens = &app
	}
	if iss.AccessTokens != nil {
		access := *iss.AccessTokens
		access.Types = slices.Clone(access.Types)
		access.RequireClaims = slices.Clone(access.RequireClaims)
		iss.AccessTokens = &access
	}
	return iss
}
