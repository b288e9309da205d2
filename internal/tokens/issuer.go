// Package tokens issues Gatehouse's own access tokens: short-lived JWTs
// (RFC 9068) signed with ES256, minted by token exchange (RFC 8693), that
// carry the principal's auth version in the "av" claim.
package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/authversion"
)

// Config configures an Issuer.
type Config struct {
	// URL is Gatehouse's issuer URL, the "iss" of its tokens and the base
	// of its discovery document. Required.
	URL string

	// Audiences are the "aud" of every token. Default: ["gatehouse"].
	Audiences []string

	// TTL is how long a token lives. Default: 15 minutes; at most 24 hours.
	TTL time.Duration
}

// DefaultTTL is the lifetime of a token when Config.TTL is zero.
const DefaultTTL = 15 * time.Minute

// Issuer mints and verifies Gatehouse tokens. It is safe for concurrent use.
type Issuer struct {
	url       string
	audiences []string
	ttl       time.Duration
	keys      KeyStore
	versions  authversion.Store
	now       func() time.Time

	reload      sync.Mutex // held while reading keys from the store
	mu          sync.Mutex // guards the fields below
	public      map[string]*ecdsa.PublicKey
	loadedAt    time.Time
	lastRefresh time.Time
}

// NewIssuer returns an Issuer that signs with keys and stamps versions.
func NewIssuer(cfg Config, keys KeyStore, versions authversion.Store) (*Issuer, error) {
	if cfg.URL == "" {
		return nil, errors.New("token issuer URL is required")
	}
	if cfg.TTL < 0 || cfg.TTL > 24*time.Hour {
		return nil, fmt.Errorf("token TTL %s must be between 0 and 24h", cfg.TTL)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if len(cfg.Audiences) == 0 {
		cfg.Audiences = []string{"gatehouse"}
	}
	return &Issuer{url: cfg.URL, audiences: cfg.Audiences, ttl: cfg.TTL, keys: keys, versions: versions, now: time.Now}, nil
}

// URL returns the issuer URL.
func (i *Issuer) URL() string { return i.url }

// Audiences returns the audiences of every token.
func (i *Issuer) Audiences() []string { return i.audiences }

// TTL returns the lifetime of new tokens.
func (i *Issuer) TTL() time.Duration { return i.ttl }

// Claims are the claims of a Gatehouse token. Audience is always written
// as an array, even with one value (RFC 7519 allows either form).
type Claims struct {
	jwt.Claims
	Audience    []string `json:"aud"`
	ClientID    string   `json:"client_id"`
	AuthVersion int64    `json:"av"`
}

// Minted describes a new token.
type Minted struct {
	Token       string
	ID          string
	Expiry      time.Time
	AuthVersion int64
}

// Mint signs a token for principal (such as "user:corp|alice") that
// expires after the TTL or at notAfter, whichever comes first, and carries
// the principal's current auth version. Its "aud" is audience alone when
// given (it must be one of the configured audiences), otherwise every
// configured audience.
func (i *Issuer) Mint(ctx context.Context, principal string, notAfter time.Time, audience string) (Minted, error) {
	audiences := i.audiences
	if audience != "" {
		if !slices.Contains(i.audiences, audience) {
			return Minted{}, fmt.Errorf("audience %q is not configured", audience)
		}
		audiences = []string{audience}
	}
	key, err := i.keys.Active(ctx)
	if err != nil {
		return Minted{}, err
	}
	// Mint with the database's version, not this instance's cache. A
	// change made on another instance may not have reached the cache yet,
	// and a token minted with the older version would go stale when it did.
	version, err := i.versions.Latest(ctx, principal)
	if err != nil {
		return Minted{}, err
	}

	now := i.now().Truncate(time.Second)
	expiry := now.Add(i.ttl)
	if !notAfter.IsZero() && notAfter.Before(expiry) {
		expiry = notAfter.Truncate(time.Second)
	}
	if !expiry.After(now) {
		return Minted{}, errors.New("the subject token expires too soon to exchange")
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Minted{}, err
	}
	jti := base64.RawURLEncoding.EncodeToString(id[:])

	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key.Private, KeyID: key.ID}},
		(&jose.SignerOptions{}).WithType("at+jwt"),
	)
	if err != nil {
		return Minted{}, fmt.Errorf("create signer: %w", err)
	}
	claims := Claims{
		Claims: jwt.Claims{
			Issuer:   i.url,
			Subject:  principal,
			Expiry:   jwt.NewNumericDate(expiry),
			IssuedAt: jwt.NewNumericDate(now),
			ID:       jti,
		},
		Audience:    audiences,
		ClientID:    principal,
		AuthVersion: version,
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return Minted{}, fmt.Errorf("sign token: %w", err)
	}
	i.learn(key)
	return Minted{Token: token, ID: jti, Expiry: expiry, AuthVersion: version}, nil
}

// JWKS returns the public keys that may have signed an unexpired token.
func (i *Issuer) JWKS(ctx context.Context) (jose.JSONWebKeySet, error) {
	keys, err := i.keys.Published(ctx, i.now().Add(-i.ttl))
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.Private.PublicKey, KeyID: k.ID, Algorithm: Algorithm, Use: "sig"})
	}
	return set, nil
}

// Discovery returns the OpenID Provider metadata of Gatehouse's issuer.
func (i *Issuer) Discovery() map[string]any {
	return map[string]any{
		"issuer":                                i.url,
		"jwks_uri":                              i.url + "/.well-known/jwks.json",
		"token_endpoint":                        i.url + "/oauth2/token",
		"introspection_endpoint":                i.url + "/oauth2/introspect",
		"grant_types_supported":                 []string{"urn:ietf:params:oauth:grant-type:token-exchange"},
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{Algorithm},
		"token_endpoint_auth_methods_supported": []string{"none"},
	}
}

// KeySet returns the key set that verifies Gatehouse tokens in-process.
func (i *Issuer) KeySet() oidc.KeySet { return keySet{i} }

type keySet struct{ i *Issuer }

// keyRefresh bounds how often an unknown kid reloads the published keys,
// so that a flood of forged kids costs at most one store read per interval
// while a key rotated on another instance is picked up almost at once.
// keyMaxAge is how long loaded keys are trusted without a reload.
const (
	keyRefresh = 10 * time.Millisecond
	keyMaxAge  = 30 * time.Second
)

func (k keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, fmt.Errorf("parse token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("token must have exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	public, err := k.i.publicKey(ctx, kid)
	if err != nil {
		return nil, err
	}
	return jws.Verify(public)
}

// learn adds key to the verification cache, so that this instance verifies
// its own new tokens without reloading the store.
func (i *Issuer) learn(key Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if _, ok := i.public[key.ID]; ok {
		return
	}
	if i.public == nil {
		i.public = map[string]*ecdsa.PublicKey{}
	}
	i.public[key.ID] = &key.Private.PublicKey
}

func (i *Issuer) publicKey(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	i.mu.Lock()
	key, ok := i.public[kid]
	fresh := i.now().Sub(i.loadedAt) <= keyMaxAge
	i.mu.Unlock()
	if ok && fresh {
		return key, nil
	}

	// One reload at a time, outside i.mu, so that verifications of known
	// keys never wait for the store.
	i.reload.Lock()
	defer i.reload.Unlock()
	i.mu.Lock()
	key, ok = i.public[kid]
	fresh = i.now().Sub(i.loadedAt) <= keyMaxAge
	recent := i.now().Sub(i.lastRefresh) < keyRefresh
	i.mu.Unlock()
	if ok && fresh {
		return key, nil // another reload found it
	}
	if fresh && recent {
		return nil, fmt.Errorf("no signing key with kid %q", kid)
	}

	now := i.now()
	keys, err := i.keys.Published(ctx, now.Add(-i.ttl))
	i.mu.Lock()
	defer i.mu.Unlock()
	i.lastRefresh = now
	if err != nil {
		if ok {
			return key, nil // keep serving the known key while the store is down
		}
		return nil, fmt.Errorf("load signing keys: %w", err)
	}
	i.public = make(map[string]*ecdsa.PublicKey, len(keys))
	for _, k := range keys {
		i.public[k.ID] = &k.Private.PublicKey
	}
	i.loadedAt = now
	if key, ok = i.public[kid]; !ok {
		return nil, fmt.Errorf("no signing key with kid %q", kid)
	}
	return key, nil
}

// ErrStale means a token's auth version is older than its principal's.
var ErrStale = errors.New("the principal's relationships or sessions changed after it was issued; exchange a new one")

// CheckVersion returns an error wrapping ErrStale unless the token's "av"
// claim equals principal's current version.
func (i *Issuer) CheckVersion(ctx context.Context, token *oidc.IDToken, principal string) error {
	var claims map[string]json.RawMessage
	if err := token.Claims(&claims); err != nil {
		return fmt.Errorf("decode claims: %w", err)
	}
	return i.CheckVersionClaims(ctx, claims, principal)
}

// CheckVersionClaims is CheckVersion for the decoded claims of a token
// whose signature has already been verified.
func (i *Issuer) CheckVersionClaims(ctx context.Context, claims map[string]json.RawMessage, principal string) error {
	raw, ok := claims["av"]
	if !ok {
		return errors.New("token has no av claim")
	}
	var version int64
	if err := json.Unmarshal(raw, &version); err != nil {
		return fmt.Errorf("av claim is not an integer: %w", err)
	}
	current, err := i.versions.Get(ctx, principal)
	if err != nil {
		return fmt.Errorf("read auth version: %w", err)
	}
	if version > current {
		// Another instance minted the token after a change that has not
		// reached this instance's cache yet, so ask the database.
		if current, err = i.versions.Latest(ctx, principal); err != nil {
			return fmt.Errorf("read auth version: %w", err)
		}
	}
	switch {
	case version < current:
		return fmt.Errorf("%w: %w (token av %d, current %d)", authn.ErrStaleToken, ErrStale, version, current)
	case version > current:
		return fmt.Errorf("token av %d is newer than the current version %d", version, current)
	}
	return nil
}
