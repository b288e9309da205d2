// Package middleware verifies Gatehouse access tokens in net/http servers.
//
// Gatehouse issues its own short-lived access tokens by token exchange (RFC
// 8693): JWTs of type "at+jwt" (RFC 9068) signed with ES256, whose "av"
// claim is the principal's auth version at the time of issue. A Verifier
// checks these tokens locally against the key set that Gatehouse publishes.
// It rejects a token as stale once the principal's auth version has risen
// above its "av". Gatehouse raises the version whenever the principal's
// relationships change or its sessions are revoked.
//
// Verifier.Handler puts the verified Principal in the request context, and
// RequirePermission checks with Gatehouse whether that principal has a
// permission on the resource that a request names.
//
// The package accepts only Gatehouse's own tokens. Tokens of the identity
// provider must first be exchanged at Gatehouse's /oauth2/token endpoint.
package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// TokenSource returns the bearer access token for a request to Gatehouse.
// It has the signature that client.WithTokenSource takes, so one source can
// serve both. It must be safe for concurrent use.
type TokenSource func(ctx context.Context) (string, error)

// Config configures a Verifier.
type Config struct {
	// GatehouseURL is Gatehouse's issuer URL, such as
	// "https://gatehouse.example.com". It must equal the "iss" claim of
	// the tokens and the "issuer" of the discovery document exactly, with
	// no trailing slash added or removed. It is also the base URL of the
	// auth version requests. Required.
	GatehouseURL string

	// Audience is the value that the "aud" claim must contain. Default:
	// "gatehouse".
	Audience string

	// HTTPClient sends discovery, key set and auth version requests, and,
	// without its Timeout, the auth version stream. Default: an
	// http.Client with a 10-second timeout on http.DefaultTransport.
	HTTPClient *http.Client

	// StreamToken returns the access token of a principal listed in
	// Gatehouse's platform.gateways config. With it, the Verifier follows
	// Gatehouse's auth version stream and caches versions, so a request
	// usually needs no round trip to Gatehouse. Without it, every request
	// reads the principal's auth version from Gatehouse with the request's
	// own token. Default: nil.
	StreamToken TokenSource

	// Logger receives the stream's lifecycle and errors, and the reasons
	// of rejected tokens at debug level. Tokens are never logged. Default:
	// slog.Default().
	Logger *slog.Logger

	// Now returns the current time for expiry checks. Default: time.Now.
	Now func() time.Time
}

// DefaultAudience is the audience of Gatehouse tokens when Config.Audience
// is empty.
const DefaultAudience = "gatehouse"

// defaultHTTPTimeout bounds each request of the default HTTP client.
const defaultHTTPTimeout = 10 * time.Second

// Errors that Verify wraps. Handler maps ErrInvalidToken and ErrStale to
// 401 and ErrUnavailable to 503.
var (
	// ErrInvalidToken means the token is malformed, expired, meant for
	// another audience, not issued by Gatehouse or not signed by one of
	// its published keys.
	ErrInvalidToken = errors.New("invalid access token")

	// ErrStale means the principal's auth version rose after the token
	// was issued. The client must exchange its identity provider token
	// for a new Gatehouse token.
	ErrStale = errors.New("token is stale; exchange it again")

	// ErrUnavailable means the token's freshness could not be determined
	// because Gatehouse did not return the principal's auth version. The
	// request may be retried.
	ErrUnavailable = errors.New("auth version unavailable")
)

// Principal is the verified caller of a request.
type Principal struct {
	// ID is the principal's subject string, such as "user:corp|alice" or
	// "service:corp|billing": the token's "sub" claim.
	ID string

	// AuthVersion is the token's "av" claim.
	AuthVersion int64

	// TokenID is the token's "jti" claim, or empty when the token has none.
	TokenID string

	// Expiry is the token's "exp" claim.
	Expiry time.Time
}

type principalKey struct{}

// ContextWithPrincipal returns a copy of ctx that carries p, for tests of
// handlers that run behind Verifier.Handler.
func ContextWithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal that Verifier.Handler stored in ctx,
// and false when there is none.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Verifier verifies Gatehouse access tokens. It is safe for concurrent use.
type Verifier struct {
	issuer     string
	audience   string
	httpClient *http.Client

	// streamClient is httpClient without its Timeout, which would end the
	// stream.
	streamClient *http.Client

	stream   TokenSource
	logger   *slog.Logger
	now      func() time.Time
	oidc     *oidc.IDTokenVerifier
	versions *versionCache

	// gatewayErrors limits the log of a StreamToken that Gatehouse rejects
	// on every read.
	gatewayErrors sparseLog

	// unavailableErrors limits the log of failed auth version reads, which
	// every request repeats while Gatehouse is unreachable.
	unavailableErrors sparseLog

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// New discovers Gatehouse's key set at cfg.GatehouseURL and returns a
// Verifier. With cfg.StreamToken, it starts a goroutine that follows the
// auth version stream until ctx ends or Close is called.
//
// ctx bounds the discovery request and is the lifetime of the stream
// follower, so pass a context that lives as long as the Verifier, not a
// start-up timeout. Once the follower stops, every request reads its auth
// version from Gatehouse, as without StreamToken.
//
// The discovery document's jwks_uri must have the scheme and host of
// GatehouseURL, as Gatehouse's own document does.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := validateIssuerURL(cfg.GatehouseURL); err != nil {
		return nil, err
	}
	v := &Verifier{
		issuer:     cfg.GatehouseURL,
		audience:   cfg.Audience,
		httpClient: cfg.HTTPClient,
		stream:     cfg.StreamToken,
		logger:     cfg.Logger,
		now:        cfg.Now,
		versions:   newVersionCache(),
		done:       make(chan struct{}),
	}
	v.gatewayErrors.interval = time.Minute
	v.unavailableErrors.interval = 10 * time.Second
	if v.audience == "" {
		v.audience = DefaultAudience
	}
	if v.httpClient == nil {
		v.httpClient = &http.Client{Timeout: defaultHTTPTimeout}
	}
	streamClient := *v.httpClient
	streamClient.Timeout = 0
	v.streamClient = &streamClient
	if v.logger == nil {
		v.logger = slog.Default()
	}
	if v.now == nil {
		v.now = time.Now
	}

	clientCtx := oidc.ClientContext(ctx, v.httpClient)
	provider, err := oidc.NewProvider(clientCtx, v.issuer)
	if err != nil {
		return nil, fmt.Errorf("discover Gatehouse at %q: %w", v.issuer, err)
	}
	var metadata struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := provider.Claims(&metadata); err != nil {
		return nil, fmt.Errorf("decode discovery document of %q: %w", v.issuer, err)
	}
	if err := checkSameOrigin(v.issuer, metadata.JWKSURI); err != nil {
		return nil, err
	}

	// RemoteKeySet caches the keys and fetches them again when a token
	// names an unknown kid or fails to verify with the cached keys.
	// NOTE: so every forged token that passes checkHeader costs one JWKS
	// request to Gatehouse. go-oidc v3.21.0 merges concurrent fetches but
	// does not rate-limit them.
	keySet := oidc.NewRemoteKeySet(clientCtx, metadata.JWKSURI)
	v.oidc = oidc.NewVerifier(v.issuer, keySet, &oidc.Config{
		ClientID:             v.audience,
		SupportedSigningAlgs: []string{signingAlgorithm},
		Now:                  v.now,
	})

	followCtx, stop := context.WithCancel(ctx)
	v.stop = stop
	if v.stream == nil {
		close(v.done)
		return v, nil
	}
	go func() {
		defer close(v.done)
		v.follow(followCtx)
	}()
	return v, nil
}

// Close stops the stream follower and waits for it to return. The
// Verifier keeps verifying tokens afterwards, reading each principal's auth
// version from Gatehouse per request. Close always returns nil.
func (v *Verifier) Close() error {
	v.closeOnce.Do(v.stop)
	<-v.done
	return nil
}

// validateIssuerURL rejects an issuer URL that cannot be Gatehouse's.
func validateIssuerURL(issuer string) error {
	if issuer == "" {
		return errors.New("GatehouseURL is required")
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("GatehouseURL %q: %w", issuer, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("GatehouseURL %q: expected http:// or https:// and a host", issuer)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("GatehouseURL %q: must not contain user info, a query or a fragment", issuer)
	}
	return nil
}

// checkSameOrigin rejects a jwks_uri on another scheme or host than the
// issuer. Gatehouse serves its key set itself, so a different origin means
// a misconfigured proxy or a tampered discovery document.
func checkSameOrigin(issuer, jwksURI string) error {
	iss, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("GatehouseURL %q: %w", issuer, err)
	}
	keys, err := url.Parse(jwksURI)
	if err != nil || jwksURI == "" {
		return fmt.Errorf("discovery document of %q: jwks_uri %q is not a URL", issuer, jwksURI)
	}
	if keys.Scheme != iss.Scheme || !strings.EqualFold(keys.Host, iss.Host) {
		return fmt.Errorf("discovery document of %q: jwks_uri %q must be on %s://%s", issuer, jwksURI, iss.Scheme, iss.Host)
	}
	return nil
}
