package authn

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-authz/gatehouse/internal/config"
)

const (
	defaultHTTPTimeout = 10 * time.Second

	// maxResponseSize limits every response body from an issuer, in bytes.
	maxResponseSize = 1 << 20

	// discoveryRetryInterval is the minimum time between two discovery
	// attempts for one issuer. Tokens of that issuer fail in between.
	discoveryRetryInterval = 30 * time.Second
)

// issuerVerifier verifies the tokens of one issuer. Its go-oidc verifier is
// built on first use, after discovery when no jwks_uri is configured.
type issuerVerifier struct {
	cfg     config.Issuer // for a multi-tenant issuer, expanded for tenant
	name    string        // cfg.Name, with "/<tenant>" for a multi-tenant issuer
	tenant  string        // the tenant of a multi-tenant issuer, or empty
	local   *LocalIssuer  // nil unless a local issuer
	opts    Options
	keyCtx  context.Context // parent of key set fetches: values only, no cancellation
	fetches *prometheus.CounterVec

	ready atomic.Pointer[oidc.IDTokenVerifier]

	// keysReplaced counts the key set fetches that replaced the cached
	// keys. A token verified before the latest one is verified again.
	keysReplaced atomic.Uint64

	// discoveryLock is a one-slot semaphore held during discovery. It is a
	// channel instead of a sync.Mutex so that waiting for it can be cancelled.
	discoveryLock chan struct{}
	lastAttempt   time.Time // guarded by discoveryLock
	lastErr       error     // guarded by discoveryLock
}

// newIssuerVerifier returns the verifier of a configured issuer. For a
// multi-tenant issuer, cfg is already expanded for tenant.
func newIssuerVerifier(ctx context.Context, cfg config.Issuer, tenant string, opts Options, fetches *prometheus.CounterVec) *issuerVerifier {
	name := cfg.Name
	if tenant != "" {
		name += "/" + tenant
	}
	v := &issuerVerifier{
		cfg:           cfg,
		name:          name,
		tenant:        tenant,
		opts:          opts,
		keyCtx:        context.WithoutCancel(ctx),
		fetches:       fetches,
		discoveryLock: make(chan struct{}, 1),
	}
	if cfg.JWKSURI != "" {
		algorithms := cfg.Algorithms
		if len(algorithms) == 0 {
			// RS256 is the algorithm that OpenID Connect Discovery 1.0,
			// section 3, requires every provider to support.
			algorithms = []string{"RS256"}
		}
		v.ready.Store(v.newOIDCVerifier(cfg.JWKSURI, algorithms))
	}
	return v
}

// invalid wraps err, a reason to reject a token of this issuer, in
// ErrInvalidToken.
func (v *issuerVerifier) invalid(err error) error {
	return fmt.Errorf("%w: issuer %q: %w", ErrInvalidToken, v.name, err)
}

// verify checks the "alg", signature, "iss" and "exp" of rawToken, and
// "nbf" with go-oidc's fixed leeway of five minutes.
func (v *issuerVerifier) verify(ctx context.Context, rawToken string) (*oidc.IDToken, error) {
	verifier, err := v.verifier(ctx)
	if err != nil {
		return nil, err
	}
	return verifier.Verify(ctx, rawToken)
}

// verifier returns the go-oidc verifier, running discovery first if no
// earlier attempt has succeeded and the last one is at least
// discoveryRetryInterval old.
func (v *issuerVerifier) verifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	if verifier := v.ready.Load(); verifier != nil {
		return verifier, nil
	}

	select {
	case v.discoveryLock <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for discovery: %w", ctx.Err())
	}
	defer func() { <-v.discoveryLock }()

	if verifier := v.ready.Load(); verifier != nil {
		return verifier, nil
	}
	now := v.opts.Now()
	if !v.lastAttempt.IsZero() && now.Sub(v.lastAttempt) < discoveryRetryInterval {
		return nil, fmt.Errorf("discovery failed less than %s ago, next attempt at %s: %w",
			discoveryRetryInterval, v.lastAttempt.Add(discoveryRetryInterval).Format(time.RFC3339), v.lastErr)
	}
	v.lastAttempt = now

	// Discovery ignores the request's cancellation so that one impatient
	// client cannot cause the retry delay for everyone. The HTTP client's
	// timeout bounds it.
	verifier, err := v.discover(context.WithoutCancel(ctx))
	if err != nil {
		v.lastErr = err
		v.opts.Logger.WarnContext(ctx, "issuer discovery failed",
			slog.String("issuer", v.name), slog.Duration("retry_after", discoveryRetryInterval), slog.Any("error", err))
		return nil, err
	}
	v.ready.Store(verifier)
	return verifier, nil
}

// discover fetches the issuer's discovery document (OpenID Connect
// Discovery 1.0, section 4) and builds a verifier from its jwks_uri and
// signing algorithms. go-oidc rejects a document whose "issuer" differs from
// the configured issuer in any byte.
func (v *issuerVerifier) discover(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	client := limitedClient(v.opts.HTTPClient)
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, client), v.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}

	var metadata struct {
		JWKSURI    string   `json:"jwks_uri"`
		Algorithms []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&metadata); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if err := config.CheckURL(metadata.JWKSURI); err != nil {
		return nil, fmt.Errorf("discovery: jwks_uri: %w", err)
	}

	algorithms := v.cfg.Algorithms
	if len(algorithms) == 0 {
		for _, alg := range metadata.Algorithms {
			if config.IsSupportedAlgorithm(alg) {
				algorithms = append(algorithms, alg)
			}
		}
	}
	if len(algorithms) == 0 {
		return nil, fmt.Errorf("discovery: id_token_signing_alg_values_supported %q lists no supported algorithm: set algorithms in the config",
			metadata.Algorithms)
	}

	v.opts.Logger.InfoContext(ctx, "issuer discovered",
		slog.String("issuer", v.name), slog.String("jwks_uri", metadata.JWKSURI), slog.Any("algorithms", algorithms))
	return v.newOIDCVerifier(metadata.JWKSURI, algorithms), nil
}

func (v *issuerVerifier) newOIDCVerifier(jwksURI string, algorithms []string) *oidc.IDTokenVerifier {
	keySet := newRemoteKeySet(v.keyCtx, remoteKeySetConfig{
		issuer:   v.name,
		jwksURI:  jwksURI,
		client:   limitedClient(v.opts.HTTPClient),
		interval: v.cfg.JWKSRefreshIntervalOrDefault(),
		now:      v.opts.Now,
		logger:   v.opts.Logger,
		fetches:  v.fetches,
		replaced: &v.keysReplaced,
	})

	return oidc.NewVerifier(v.cfg.Issuer, keySet, &oidc.Config{
		SupportedSigningAlgs: algorithms,
		// The audience is checked against the configured list in
		// Authenticate, because go-oidc accepts only one client id.
		SkipClientIDCheck: true,
		Now:               v.opts.Now,
	})
}

// limitedClient returns a copy of base whose response bodies are limited to
// maxResponseSize.
func limitedClient(base *http.Client) *http.Client {
	client := *base
	transport := client.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	client.Transport = limitedTransport{base: transport}
	return &client
}

var errResponseTooLarge = fmt.Errorf("response body is larger than %d bytes", maxResponseSize)

// limitedTransport fails responses whose body is larger than
// maxResponseSize.
type limitedTransport struct {
	base http.RoundTripper
}

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > maxResponseSize {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %w", req.URL.Redacted(), errResponseTooLarge)
	}
	resp.Body = &limitedBody{body: resp.Body}
	return resp, nil
}

type limitedBody struct {
	body io.ReadCloser
	read int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if remaining := maxResponseSize - b.read + 1; int64(len(p)) > remaining {
		p = p[:remaining]
	}
	n, err := b.body.Read(p)
	b.read += int64(n)
	if b.read > maxResponseSize {
		return n, errResponseTooLarge
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.body.Close() }
