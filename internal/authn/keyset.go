package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-authz/gatehouse/internal/config"
)

// remoteKeySetConfig configures a remoteKeySet.
type remoteKeySetConfig struct {
	issuer   string // issuer name, for logs and metrics
	jwksURI  string
	client   *http.Client
	interval time.Duration // minimum time between two fetches
	now      func() time.Time
	logger   *slog.Logger
	fetches  *prometheus.CounterVec // nil when metrics are off
	replaced *atomic.Uint64         // raised whenever the cached keys are replaced; may be nil
}

// remoteKeySet is an issuer's JSON Web Key Set (RFC 7517, section 5),
// fetched from its jwks_uri and cached. It is safe for concurrent use.
//
// It fetches the set on first use and again when a token's "kid" is not in
// the cache (or a token without "kid" verifies with no cached key), at most
// once per interval. Every fetch counts, failed or not, so that neither
// forged tokens nor an issuer that is down cause a request per token. A
// fetch that fails or returns no usable key keeps the cached keys, so
// tokens signed with known keys keep working while the issuer is down. A
// token whose "kid" is cached but whose signature does not verify fails
// without a fetch, because a rotation adds keys under new ids.
//
// It replaces go-oidc's RemoteKeySet, which refetches on every signature
// failure and replaces the cache with an empty set.
type remoteKeySet struct {
	remoteKeySetConfig
	ctx context.Context // parent of fetches: values only, no cancellation

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	lastFetch time.Time
	inflight  *keyFetch // the running fetch, or nil
}

var _ oidc.KeySet = (*remoteKeySet)(nil)

// keyFetch is one fetch that several tokens may wait for.
type keyFetch struct {
	done chan struct{} // closed when keys and err are set
	keys []jose.JSONWebKey
	err  error
}

// Results of a key set fetch, the values of the "result" label.
const (
	fetchSuccess = "success"
	fetchError   = "error"
	fetchEmpty   = "empty"
)

var errKeyFetchThrottled = errors.New("key set fetch skipped: the previous fetch was too recent")

// supportedJOSEAlgorithms are config.SupportedAlgorithms as go-jose values.
var supportedJOSEAlgorithms = func() []jose.SignatureAlgorithm {
	var algs []jose.SignatureAlgorithm
	for _, alg := range config.SupportedAlgorithms() {
		algs = append(algs, jose.SignatureAlgorithm(alg))
	}
	return algs
}()

func newRemoteKeySet(ctx context.Context, cfg remoteKeySetConfig) *remoteKeySet {
	return &remoteKeySet{remoteKeySetConfig: cfg, ctx: context.WithoutCancel(ctx)}
}

// VerifySignature returns the payload of rawToken if a key of the set
// verifies its signature. go-oidc calls it after checking "alg" against the
// issuer's allow-list, so it accepts every supported algorithm. ctx cancels
// waiting for a fetch, not the fetch.
func (k *remoteKeySet) VerifySignature(ctx context.Context, rawToken string) ([]byte, error) {
	jws, err := jose.ParseSigned(rawToken, supportedJOSEAlgorithms)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("token has %d signatures, expected 1", len(jws.Signatures))
	}
	kid := jws.Signatures[0].Header.KeyID
	alg := jws.Signatures[0].Header.Algorithm

	k.mu.Lock()
	cached := k.keys
	k.mu.Unlock()

	payload, known, err := verifyWithKeys(jws, cached, kid, alg)
	if err == nil {
		return payload, nil
	}
	if known && kid != "" {
		return nil, err
	}

	keys, err := k.refresh(ctx)
	if errors.Is(err, errKeyFetchThrottled) {
		// A fetch may have completed since the cache was read above: try
		// the keys it stored before giving up.
		if payload, known, verr := verifyWithKeys(jws, keys, kid, alg); verr == nil || known {
			return payload, verr
		}
	}
	if err != nil {
		return nil, fmt.Errorf("key id %q is not in the cached key set: %w", truncate(kid), err)
	}
	payload, _, err = verifyWithKeys(jws, keys, kid, alg)
	return payload, err
}

// refresh fetches the key set unless a fetch started less than interval ago,
// and returns the cached keys after it (also, with the error, when it skips
// the fetch). A caller that arrives during a fetch waits for that fetch
// instead of starting one.
func (k *remoteKeySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	fetch := k.inflight
	if fetch == nil {
		now := k.now()
		if !k.lastFetch.IsZero() && now.Sub(k.lastFetch) < k.interval {
			next := k.lastFetch.Add(k.interval)
			cached := k.keys
			k.mu.Unlock()
			k.logger.DebugContext(ctx, "key set fetch skipped", slog.String("issuer", k.issuer),
				slog.Duration("min_interval", k.interval))
			return cached, fmt.Errorf("%w, next at %s", errKeyFetchThrottled, next.UTC().Format(time.RFC3339))
		}
		k.lastFetch = now
		fetch = &keyFetch{done: make(chan struct{})}
		k.inflight = fetch
		go k.fetch(fetch)
	}
	k.mu.Unlock()

	select {
	case <-fetch.done:
		return fetch.keys, fetch.err
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for key set: %w", ctx.Err())
	}
}

// fetch downloads the key set, stores it unless the download failed or
// found no usable key, and completes f.
func (k *remoteKeySet) fetch(f *keyFetch) {
	keys, err := k.download()
	result := fetchSuccess
	switch {
	case err != nil:
		result = fetchError
	case len(keys) == 0:
		result = fetchEmpty
		err = errors.New("key set contains no usable signing key")
	}

	// The counter, the cache and inflight change before done closes, so
	// that a caller woken by done already reads all three.
	if k.fetches != nil {
		k.fetches.WithLabelValues(k.issuer, result).Inc()
	}
	k.mu.Lock()
	if err == nil {
		k.keys = keys
		if k.replaced != nil {
			k.replaced.Add(1)
		}
	}
	f.keys, f.err = k.keys, err
	k.inflight = nil
	cachedCount := len(k.keys)
	k.mu.Unlock()
	close(f.done)

	if err != nil {
		k.logger.Warn("key set fetch failed, keeping the cached keys", slog.String("issuer", k.issuer),
			slog.String("result", result), slog.Int("cached_keys", cachedCount),
			slog.Duration("retry_after", k.interval), slog.Any("error", err))
		return
	}
	k.logger.Info("key set fetched", slog.String("issuer", k.issuer), slog.Int("keys", len(keys)))
}

func (k *remoteKeySet) download() ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(k.ctx, http.MethodGet, k.jwksURI, nil)
	if err != nil {
		return nil, fmt.Errorf("key set request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cache-Control", "no-cache")

	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch key set: %w", err)
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read key set from %s: %w", req.URL.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch key set from %s: status %s", req.URL.Redacted(), resp.Status)
	}
	return parseKeySet(body)
}

// parseKeySet returns the public signing keys of a JWK Set document.
// Following RFC 7517, section 5, it skips keys that it does not understand,
// and it also skips symmetric keys and keys whose "use" is not "sig". A
// private key is reduced to its public part.
func parseKeySet(body []byte) ([]jose.JSONWebKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, errors.New("key set is not a JSON object with a keys array")
	}

	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil || !key.Valid() {
			continue
		}
		if !key.IsPublic() {
			key = key.Public()
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		switch key.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, key)
		}
	}
	return keys, nil
}

// verifyWithKeys verifies jws with the keys whose id is kid, or with every
// key when kid is empty. known reports whether any key had that id.
func verifyWithKeys(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid, alg string) (payload []byte, known bool, err error) {
	err = fmt.Errorf("no key with id %q", truncate(kid))
	for i := range keys {
		key := &keys[i]
		if kid != "" && key.KeyID != kid {
			continue
		}
		known = true
		if err = keyFitsAlgorithm(key, alg); err != nil {
			continue
		}
		if payload, verr := jws.Verify(key); verr == nil {
			return payload, true, nil
		}
		err = fmt.Errorf("signature does not verify with key %q", truncate(key.KeyID))
	}
	return nil, known, err
}

// keyFitsAlgorithm returns an error unless key can verify signatures made
// with alg (RFC 7518, section 3.1), so that a "kid" naming a key of another
// type fails with a clear reason.
func keyFitsAlgorithm(key *jose.JSONWebKey, alg string) error {
	if key.Algorithm != "" && key.Algorithm != alg {
		return fmt.Errorf("key %q is for alg %q, the token uses %q", truncate(key.KeyID), key.Algorithm, alg)
	}

	fits := false
	keyType := fmt.Sprintf("%T", key.Key)
	switch pub := key.Key.(type) {
	case *rsa.PublicKey:
		keyType = "RSA"
		fits = strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		keyType = "EC " + pub.Curve.Params().Name
		switch alg {
		case "ES256":
			fits = pub.Curve == elliptic.P256()
		case "ES384":
			fits = pub.Curve == elliptic.P384()
		case "ES512":
			fits = pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		keyType = "Ed25519"
		fits = alg == "EdDSA"
	}
	if !fits {
		return fmt.Errorf("key %q is a %s key, which cannot verify alg %q", truncate(key.KeyID), keyType, alg)
	}
	return nil
}
