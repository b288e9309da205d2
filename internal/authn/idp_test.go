package authn_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testIdP is an OpenID Connect provider on loopback that serves a discovery
// document and a key set, and signs tokens with its RSA key.
type testIdP struct {
	server *httptest.Server
	issuer string // the server URL without a trailing slash
	key    *rsa.PrivateKey
	kid    string

	// discoveryIssuer overrides the "issuer" of the discovery document.
	discoveryIssuer string
	// algorithms is id_token_signing_alg_values_supported.
	algorithms []string
	// failDiscovery makes the discovery endpoint return 503.
	failDiscovery atomic.Bool
	// jwksPadding is added to the key set response, to make it large.
	jwksPadding int
	// failJWKS makes the key set endpoint return 503.
	failJWKS atomic.Bool
	// emptyJWKS makes the key set endpoint return a set without keys.
	emptyJWKS atomic.Bool

	mu        sync.Mutex
	extraKeys []jose.JSONWebKey // published after the issuer's own key

	discoveryHits atomic.Int32
	jwksHits      atomic.Int32
}

func newTestIdP(t testing.TB) *testIdP {
	t.Helper()
	idp := &testIdP{key: rsaKey(t), kid: "key-1", algorithms: []string{"RS256", "RS512", "ES256", "HS256", "none"}}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		idp.discoveryHits.Add(1)
		if idp.failDiscovery.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		issuer := idp.issuer
		if idp.discoveryIssuer != "" {
			issuer = idp.discoveryIssuer
		}
		writeJSON(w, map[string]any{
			"issuer":                                issuer,
			"jwks_uri":                              idp.issuer + "/jwks.json",
			"id_token_signing_alg_values_supported": idp.algorithms,
			"response_types_supported":              []string{"token"},
			"subject_types_supported":               []string{"public"},
		})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		idp.jwksHits.Add(1)
		if idp.failJWKS.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		keys := []jose.JSONWebKey{}
		if !idp.emptyJWKS.Load() {
			keys = append(keys, jose.JSONWebKey{Key: &idp.key.PublicKey, KeyID: idp.kid, Use: "sig"})
			idp.mu.Lock()
			keys = append(keys, idp.extraKeys...)
			idp.mu.Unlock()
		}
		body, err := json.Marshal(map[string]any{"keys": keys, "padding": strings.Repeat("x", idp.jwksPadding)})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})

	idp.server = httptest.NewServer(mux)
	t.Cleanup(idp.server.Close)
	idp.issuer = idp.server.URL
	return idp
}

// publish adds the public part of key to the key set under kid.
func (idp *testIdP) publish(kid string, key crypto.Signer) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.extraKeys = append(idp.extraKeys, jose.JSONWebKey{Key: key.Public(), KeyID: kid, Use: "sig"})
}

// claims returns valid claims for a user token that expires in an hour.
func (idp *testIdP) claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": idp.issuer,
		"sub": "alice",
		"aud": "gatehouse",
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		"jti": "token-1",
	}
}

// sign signs claims with the issuer's key and RS256.
func (idp *testIdP) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	return signToken(t, jose.RS256, &jose.JSONWebKey{Key: idp.key, KeyID: idp.kid}, claims, nil)
}

// signToken signs claims with key and alg. The "typ" header is "at+jwt"
// unless opts sets another.
func signToken(t testing.TB, alg jose.SignatureAlgorithm, key any, claims map[string]any, opts *jose.SignerOptions) string {
	t.Helper()
	if opts == nil {
		opts = &jose.SignerOptions{}
	}
	if _, ok := opts.ExtraHeaders[jose.HeaderType]; !ok {
		opts = opts.WithType("at+jwt")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("new signer: %v", err)
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return token
}

var (
	rsaKeysOnce sync.Once
	rsaKeys     []*rsa.PrivateKey
	rsaKeysNext atomic.Int32
)

// rsaKey returns one of a few RSA keys generated once per test binary, so
// that each test IdP and forger has its own key without paying for key
// generation in every test.
func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsaKeysOnce.Do(func() {
		for range 4 {
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys = append(rsaKeys, key)
		}
	})
	return rsaKeys[int(rsaKeysNext.Add(1))%len(rsaKeys)]
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// testClock is a settable clock for Options.Now.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// ecKey returns a new P-256 key.
func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
