// Package authn verifies the bearer access tokens that callers send to
// Gatehouse and maps each valid token to a Principal.
//
// Tokens are JWS compact serializations (RFC 7515, section 7.1) signed by one
// of the configured issuers. github.com/coreos/go-oidc/v3 checks the
// signature, "iss", "exp" and "nbf". This package adds the routing by issuer,
// the audience check, the header restrictions and the mapping of claims to a
// principal.
//
// What it deliberately does not check: the "typ" header (RFC 9068 "at+jwt"),
// because common identity providers such as Microsoft Entra ID send "JWT";
// "iat"; and "azp". An ID token whose "aud" contains a configured audience is
// therefore accepted like an access token, so configured audiences must not
// be OAuth client ids of applications that receive ID tokens.
package authn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/config"
)

// MaxTokenSize is the longest token, in bytes, that Authenticate accepts.
const MaxTokenSize = 8 << 10

// ErrInvalidToken is wrapped by every error that Authenticate returns. The
// rest of the message gives the reason, for server logs only: clients should
// see one uniform message for every token failure.
var ErrInvalidToken = errors.New("invalid token")

// forbiddenHeaders are JWS header parameters that make a token invalid.
// "jku", "x5u" and "jwk" point at or carry a key chosen by the token's
// sender (RFC 7515, sections 4.1.2 to 4.1.5), and Gatehouse trusts only the
// issuer's key set. "crit" asks the verifier to understand extensions that
// Gatehouse does not implement (RFC 7515, section 4.1.11).
var forbiddenHeaders = []string{"crit", "jku", "x5u", "jwk"}

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
}

// Authenticator verifies access tokens against a fixed set of issuers. It is
// safe for concurrent use.
type Authenticator struct {
	verifiers map[string]*issuerVerifier // by exact "iss" value
}

// New returns an Authenticator for issuers, which must pass
// config.File.Validate. New makes no network request: each issuer's
// discovery document is fetched when its first token arrives, so an issuer
// served by the same process (such as the dev issuer) works. New keeps only
// the values of ctx, as the parent of background key set fetches, and
// ignores its cancellation.
func New(ctx context.Context, issuers []config.Issuer, opts Options) (*Authenticator, error) {
	if err := (&config.File{Issuers: issuers}).Validate(); err != nil {
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

	a := &Authenticator{verifiers: make(map[string]*issuerVerifier, len(issuers))}
	for _, iss := range issuers {
		a.verifiers[iss.Issuer] = newIssuerVerifier(ctx, cloneIssuer(iss), opts)
	}
	return a, nil
}

// Authenticate verifies rawToken, the value after "Bearer " in an
// Authorization header, and returns the principal it identifies. Every error
// wraps ErrInvalidToken and never contains the token. ctx cancels waiting for
// an issuer's discovery or key set. A fetch that has started still runs to
// completion in the background, bounded by the HTTP client's timeout.
func (a *Authenticator) Authenticate(ctx context.Context, rawToken string) (*Principal, error) {
	// Shape: cheap checks before any decoding.
	if rawToken == "" {
		return nil, invalid("missing token")
	}
	if len(rawToken) > MaxTokenSize {
		return nil, invalid("token is %d bytes, max %d", len(rawToken), MaxTokenSize)
	}
	header, payload, err := splitCompact(rawToken)
	if err != nil {
		return nil, invalid("%v", err)
	}

	if err := checkHeader(header); err != nil {
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

	// Signature, "iss", "exp" and "nbf", by go-oidc.
	token, err := v.verify(ctx, rawToken)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer %q: %w", ErrInvalidToken, v.cfg.Name, shortError{err})
	}

	// Audience: go-oidc checks a single client id, so this package checks
	// the configured list itself.
	if len(token.Audience) == 0 {
		return nil, invalid("issuer %q: token has no aud claim", v.cfg.Name)
	}
	if !slices.ContainsFunc(token.Audience, func(aud string) bool { return slices.Contains(v.cfg.Audiences, aud) }) {
		return nil, invalid("issuer %q: aud %q contains none of the configured audiences %q",
			v.cfg.Name, truncateAll(token.Audience), v.cfg.Audiences)
	}

	p, err := v.principal(token)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer %q: %w", ErrInvalidToken, v.cfg.Name, err)
	}
	return p, nil
}

// splitCompact returns the decoded header and payload of a JWS compact
// serialization. It does not verify anything.
func splitCompact(raw string) (header, payload []byte, err error) {
	parts := strings.Split(raw, ".")
	switch len(parts) {
	case 3:
	case 5:
		return nil, nil, errors.New("token is a JWE (5 parts), only signed tokens are accepted")
	default:
		return nil, nil, fmt.Errorf("token has %d parts, expected a JWS compact serialization with 3", len(parts))
	}

	header, err = base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, nil, errors.New("header is not unpadded base64url")
	}
	payload, err = base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, nil, errors.New("payload is not unpadded base64url")
	}
	return header, payload, nil
}

// checkHeader rejects headers that carry one of forbiddenHeaders.
func checkHeader(header []byte) error {
	var params map[string]json.RawMessage
	if err := json.Unmarshal(header, &params); err != nil {
		return errors.New("header is not a JSON object")
	}
	for _, name := range forbiddenHeaders {
		if _, ok := params[name]; ok {
			return fmt.Errorf("header parameter %q is not accepted", name)
		}
	}
	return nil
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
	if iss.AppTokens != nil {
		app := *iss.AppTokens
		app.Values = slices.Clone(app.Values)
		iss.AppTokens = &app
	}
	return iss
}
