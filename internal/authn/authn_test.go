package authn_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/config"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// issuerConfig returns the configuration of idp under name.
func issuerConfig(idp *testIdP, name string) config.Issuer {
	return config.Issuer{
		Name:      name,
		Issuer:    idp.issuer,
		Audiences: []string{"gatehouse"},
		AppTokens: &config.AppTokens{Claim: "idtyp", Values: []string{"app"}},
	}
}

func newAuthenticator(t *testing.T, clock *testClock, issuers ...config.Issuer) *authn.Authenticator {
	t.Helper()
	a, err := authn.New(context.Background(), issuers, authn.Options{Now: clock.Now})
	if err != nil {
		t.Fatalf("authn.New: %v", err)
	}
	return a
}

// otherKey returns a test RSA key that is not key.
func otherKey(t *testing.T, key *rsa.PrivateKey) *rsa.PrivateKey {
	t.Helper()
	for {
		if k := rsaKey(t); k != key {
			return k
		}
	}
}

// rawToken builds a compact JWS from a header and claims without signing it.
func rawToken(t *testing.T, header string, claims map[string]any, signature string) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(payload) + "." + signature
}

func TestAuthenticateValid(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	a := newAuthenticator(t, clock, issuerConfig(idp, "corp"))

	tests := []struct {
		name        string
		edit        func(map[string]any)
		wantRef     string
		wantSubject string
	}{
		{"user token", func(map[string]any) {}, "user:corp|alice", "alice"},
		{"app token", func(c map[string]any) { c["sub"] = "billing"; c["idtyp"] = "app" }, "service:corp|billing", "billing"},
		{"other marker value", func(c map[string]any) { c["idtyp"] = "user" }, "user:corp|alice", "alice"},
		{"aud array with ours", func(c map[string]any) { c["aud"] = []string{"other", "gatehouse"} }, "user:corp|alice", "alice"},
		{"nbf within leeway", func(c map[string]any) { c["nbf"] = clock.Now().Add(time.Minute).Unix() }, "user:corp|alice", "alice"},
		{"subject with email", func(c map[string]any) { c["sub"] = "alice@example.com" },
			"user:corp|=" + base64.RawURLEncoding.EncodeToString([]byte("alice@example.com")), "alice@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims := idp.claims(clock.Now())
			tt.edit(claims)

			p, err := a.Authenticate(context.Background(), idp.sign(t, claims))
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if got := p.Ref.String(); got != tt.wantRef {
				t.Errorf("ref: got %q, want %q", got, tt.wantRef)
			}
			if p.Subject != tt.wantSubject {
				t.Errorf("subject: got %q, want %q", p.Subject, tt.wantSubject)
			}
			if p.IssuerName != "corp" {
				t.Errorf("issuer name: got %q, want %q", p.IssuerName, "corp")
			}
			if p.Issuer != idp.issuer {
				t.Errorf("issuer: got %q, want %q", p.Issuer, idp.issuer)
			}
			if p.TokenID != "token-1" {
				t.Errorf("token id: got %q, want %q", p.TokenID, "token-1")
			}
			if want := clock.Now().Add(time.Hour); !p.Expiry.Equal(want) {
				t.Errorf("expiry: got %v, want %v", p.Expiry, want)
			}
			if _, err := object.ParseSubject(p.Ref.String()); err != nil {
				t.Errorf("ref %q is not a valid subject: %v", p.Ref, err)
			}
		})
	}
}

func TestAuthenticateRejects(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	strict := issuerConfig(idp, "corp")
	strict.Algorithms = []string{"RS256"}
	a := newAuthenticator(t, clock, strict)

	// Warm the key cache, so that the cases below also show that a bad
	// token fails with the right keys at hand.
	if _, err := a.Authenticate(context.Background(), idp.sign(t, idp.claims(clock.Now()))); err != nil {
		t.Fatalf("warm-up token: %v", err)
	}

	signed := func(edit func(map[string]any)) func(*testing.T) string {
		return func(t *testing.T) string {
			claims := idp.claims(clock.Now())
			edit(claims)
			return idp.sign(t, claims)
		}
	}
	withHeader := func(opts *jose.SignerOptions) func(*testing.T) string {
		return func(t *testing.T) string {
			key := &jose.JSONWebKey{Key: idp.key, KeyID: idp.kid}
			return signToken(t, jose.RS256, key, idp.claims(clock.Now()), opts)
		}
	}
	literal := func(token string) func(*testing.T) string {
		return func(*testing.T) string { return token }
	}

	tests := []struct {
		name   string
		token  func(t *testing.T) string
		reason string // substring of the error message
	}{
		{"missing token", literal(""), "missing token"},
		{"garbage", literal("not a token"), "1 parts"},
		{"two parts", literal("eyJhbGciOiJSUzI1NiJ9.e30"), "2 parts"},
		{"JWE five parts", literal("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"), "JWE"},
		{"padded base64", func(t *testing.T) string {
			parts := strings.Split(idp.sign(t, idp.claims(clock.Now())), ".")
			return parts[0] + "==." + parts[1] + "." + parts[2]
		}, "base64url"},
		{"header not JSON", literal("bm90IGpzb24.e30.c2ln"), "header is not a JSON object"},
		{"payload not JSON", literal("eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln"), "payload is not a JSON object"},
		{"iss not a string", literal(rawToken(t, `{"alg":"RS256"}`, map[string]any{"iss": 7}, "c2ln")), "string iss"},
		{"missing iss", signed(func(c map[string]any) { delete(c, "iss") }), "no iss claim"},
		{"expired", signed(func(c map[string]any) { c["exp"] = clock.Now().Add(-time.Minute).Unix() }), "expired"},
		{"missing exp", signed(func(c map[string]any) { delete(c, "exp") }), "expired"},
		{"nbf in future", signed(func(c map[string]any) { c["nbf"] = clock.Now().Add(10 * time.Minute).Unix() }), "nbf"},
		{"wrong audience", signed(func(c map[string]any) { c["aud"] = "other" }), "none of the configured audiences"},
		{"aud array without ours", signed(func(c map[string]any) { c["aud"] = []string{"a", "b"} }), "none of the configured audiences"},
		{"missing aud", signed(func(c map[string]any) { delete(c, "aud") }), "no aud claim"},
		{"empty aud array", signed(func(c map[string]any) { c["aud"] = []string{} }), "no aud claim"},
		{"unknown issuer", signed(func(c map[string]any) { c["iss"] = "https://evil.example.com" }), "unknown issuer"},
		{"issuer with trailing slash", signed(func(c map[string]any) { c["iss"] = idp.issuer + "/" }), "unknown issuer"},
		{"issuer in other case", signed(func(c map[string]any) { c["iss"] = strings.ToUpper(idp.issuer) }), "unknown issuer"},
		{"alg none", func(t *testing.T) string {
			return rawToken(t, `{"alg":"none","typ":"JWT"}`, idp.claims(clock.Now()), "")
		}, "malformed jwt"},
		{"HS256 with public key", func(t *testing.T) string {
			der, err := x509.MarshalPKIXPublicKey(&idp.key.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			return signToken(t, jose.HS256, &jose.JSONWebKey{Key: secret, KeyID: idp.kid}, idp.claims(clock.Now()), nil)
		}, "malformed jwt"},
		{"alg not allowed", func(t *testing.T) string {
			key := &jose.JSONWebKey{Key: idp.key, KeyID: idp.kid}
			return signToken(t, jose.RS512, key, idp.claims(clock.Now()), nil)
		}, "malformed jwt"},
		{"crit header", withHeader((&jose.SignerOptions{}).WithCritical("exp")), `"crit"`},
		{"jku header", withHeader((&jose.SignerOptions{}).WithHeader("jku", idp.issuer+"/jwks.json")), `"jku"`},
		{"x5u header", withHeader((&jose.SignerOptions{}).WithHeader("x5u", idp.issuer+"/cert.pem")), `"x5u"`},
		{"jwk header", func(t *testing.T) string {
			forger := otherKey(t, idp.key)
			opts := &jose.SignerOptions{EmbedJWK: true}
			return signToken(t, jose.RS256, &jose.JSONWebKey{Key: forger, KeyID: idp.kid}, idp.claims(clock.Now()), opts)
		}, `"jwk"`},
		{"oversized token", signed(func(c map[string]any) { c["pad"] = strings.Repeat("x", authn.MaxTokenSize) }), "max 8192"},
		{"signed by other key", func(t *testing.T) string {
			forger := otherKey(t, idp.key)
			return signToken(t, jose.RS256, &jose.JSONWebKey{Key: forger, KeyID: idp.kid}, idp.claims(clock.Now()), nil)
		}, "signature"},
		{"signature of other token", func(t *testing.T) string {
			good := strings.Split(idp.sign(t, idp.claims(clock.Now())), ".")
			other := idp.claims(clock.Now())
			other["sub"] = "mallory"
			forged := strings.Split(idp.sign(t, other), ".")
			return good[0] + "." + forged[1] + "." + good[2]
		}, "signature"},
		{"missing subject", signed(func(c map[string]any) { delete(c, "sub") }), `subject claim "sub" is missing`},
		{"empty subject", signed(func(c map[string]any) { c["sub"] = "" }), `subject claim "sub" is missing`},
		{"subject not a string", signed(func(c map[string]any) { c["sub"] = 42 }), "sub"},
		{"subject too long", signed(func(c map[string]any) { c["sub"] = strings.Repeat("a", 300) }), "subject must be"},
		{"app marker not a string", signed(func(c map[string]any) { c["idtyp"] = []string{"app"} }), `claim "idtyp" is not a string`},
		{"jti not a string", signed(func(c map[string]any) { c["jti"] = 1 }), `claim "jti" is not a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := tt.token(t)

			p, err := a.Authenticate(context.Background(), token)
			if err == nil {
				t.Fatalf("Authenticate succeeded with principal %q, want error", p.Ref)
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, authn.ErrInvalidToken) {
				t.Errorf("got %v, want it to wrap ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("got %q, want it to contain %q", err, tt.reason)
			}
			if len(token) > 16 && strings.Contains(err.Error(), token) {
				t.Errorf("error contains the token")
			}
		})
	}
}

func TestAuthenticateSameSubjectTwoIssuers(t *testing.T) {
	clock := newTestClock()
	corp, partner := newTestIdP(t), newTestIdP(t)
	partner.key = otherKey(t, corp.key)
	a := newAuthenticator(t, clock, issuerConfig(corp, "corp"), issuerConfig(partner, "partner"))

	p1, err := a.Authenticate(context.Background(), corp.sign(t, corp.claims(clock.Now())))
	if err != nil {
		t.Fatalf("corp token: %v", err)
	}
	p2, err := a.Authenticate(context.Background(), partner.sign(t, partner.claims(clock.Now())))
	if err != nil {
		t.Fatalf("partner token: %v", err)
	}

	if p1.Subject != p2.Subject {
		t.Fatalf("subjects differ: %q and %q", p1.Subject, p2.Subject)
	}
	if p1.Ref == p2.Ref {
		t.Errorf("both issuers map sub %q to %q", p1.Subject, p1.Ref)
	}
	if got := p2.Ref.String(); got != "user:partner|alice" {
		t.Errorf("partner ref: got %q, want %q", got, "user:partner|alice")
	}

	// A token of one issuer signed with the other issuer's key fails.
	crossed := signToken(t, jose.RS256, &jose.JSONWebKey{Key: partner.key, KeyID: corp.kid}, corp.claims(clock.Now()), nil)
	if _, err := a.Authenticate(context.Background(), crossed); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("corp claims signed by partner key: got %v, want ErrInvalidToken", err)
	}
}

func TestAuthenticateSubjectClaim(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	cfg := issuerConfig(idp, "entra")
	cfg.Claims = config.Claims{Subject: "oid", Tenant: "tid"}
	a := newAuthenticator(t, clock, cfg)

	claims := idp.claims(clock.Now())
	claims["sub"] = "pairwise-sub"
	claims["oid"] = "00000000-0000-0000-0000-000000000001"
	claims["tid"] = "tenant-1"

	p, err := a.Authenticate(context.Background(), idp.sign(t, claims))
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if want := "user:entra|00000000-0000-0000-0000-000000000001"; p.Ref.String() != want {
		t.Errorf("ref: got %q, want %q", p.Ref, want)
	}
	if p.Tenant != "tenant-1" {
		t.Errorf("tenant: got %q, want %q", p.Tenant, "tenant-1")
	}

	delete(claims, "oid")
	if _, err := a.Authenticate(context.Background(), idp.sign(t, claims)); err == nil || !strings.Contains(err.Error(), `"oid" is missing`) {
		t.Errorf("token without oid: got %v, want missing subject claim", err)
	}

	claims["oid"] = 42
	if _, err := a.Authenticate(context.Background(), idp.sign(t, claims)); err == nil || !strings.Contains(err.Error(), `"oid" is not a string`) {
		t.Errorf("token with numeric oid: got %v, want a type error", err)
	}

	claims["oid"] = "x"
	delete(claims, "tid")
	if _, err := a.Authenticate(context.Background(), idp.sign(t, claims)); err == nil || !strings.Contains(err.Error(), `"tid" is missing`) {
		t.Errorf("token without tid: got %v, want missing tenant claim", err)
	}
}

func TestDiscoveryIsLazy(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	a := newAuthenticator(t, clock, issuerConfig(idp, "corp"))

	if got := idp.discoveryHits.Load(); got != 0 {
		t.Fatalf("New made %d discovery requests, want 0", got)
	}
	for range 3 {
		if _, err := a.Authenticate(context.Background(), idp.sign(t, idp.claims(clock.Now()))); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
	}
	if got := idp.discoveryHits.Load(); got != 1 {
		t.Errorf("got %d discovery requests, want 1", got)
	}
	if got := idp.jwksHits.Load(); got != 1 {
		t.Errorf("got %d key set requests, want 1", got)
	}
}

func TestDiscoveryConcurrent(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	a := newAuthenticator(t, clock, issuerConfig(idp, "corp"))
	token := idp.sign(t, idp.claims(clock.Now()))

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := a.Authenticate(context.Background(), token)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)

	for err := range errs {
		if err != nil {
			t.Errorf("Authenticate: %v", err)
		}
	}
	if got := idp.discoveryHits.Load(); got != 1 {
		t.Errorf("got %d discovery requests, want 1", got)
	}
}

func TestDiscoveryRetryInterval(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	idp.failDiscovery.Store(true)
	a := newAuthenticator(t, clock, issuerConfig(idp, "corp"))

	authenticate := func() error {
		_, err := a.Authenticate(context.Background(), idp.sign(t, idp.claims(clock.Now())))
		return err
	}

	if err := authenticate(); !errors.Is(err, authn.ErrInvalidToken) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("first token: got %v, want a discovery failure", err)
	}
	idp.failDiscovery.Store(false)

	clock.Advance(29 * time.Second)
	if err := authenticate(); err == nil || !strings.Contains(err.Error(), "discovery failed less than 30s ago") {
		t.Errorf("token within 30s: got %v, want the cached discovery failure", err)
	}
	if got := idp.discoveryHits.Load(); got != 1 {
		t.Errorf("got %d discovery requests within 30s, want 1", got)
	}

	clock.Advance(time.Second)
	if err := authenticate(); err != nil {
		t.Errorf("token after 30s: %v", err)
	}
	if got := idp.discoveryHits.Load(); got != 2 {
		t.Errorf("got %d discovery requests, want 2", got)
	}
}

func TestDiscoveryRejects(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(idp *testIdP)
		reason string
	}{
		{"issuer with trailing slash", func(idp *testIdP) { idp.discoveryIssuer = idp.issuer + "/" }, "did not match"},
		{"other issuer", func(idp *testIdP) { idp.discoveryIssuer = "https://evil.example.com" }, "did not match"},
		{"only forbidden algorithms", func(idp *testIdP) { idp.algorithms = []string{"HS256", "none"} }, "lists no supported algorithm"},
		{"algorithm not listed", func(idp *testIdP) { idp.algorithms = []string{"ES256"} }, "malformed jwt"},
		{"oversized key set", func(idp *testIdP) { idp.jwksPadding = 1 << 20 }, "larger than 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newTestClock()
			idp := newTestIdP(t)
			tt.setup(idp)
			a := newAuthenticator(t, clock, issuerConfig(idp, "corp"))

			_, err := a.Authenticate(context.Background(), idp.sign(t, idp.claims(clock.Now())))
			if !errors.Is(err, authn.ErrInvalidToken) {
				t.Fatalf("got %v, want ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("got %q, want it to contain %q", err, tt.reason)
			}
		})
	}
}

func TestConfiguredJWKSURISkipsDiscovery(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	cfg := issuerConfig(idp, "corp")
	cfg.JWKSURI = idp.issuer + "/jwks.json"
	a := newAuthenticator(t, clock, cfg)

	if _, err := a.Authenticate(context.Background(), idp.sign(t, idp.claims(clock.Now()))); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if got := idp.discoveryHits.Load(); got != 0 {
		t.Errorf("got %d discovery requests, want 0", got)
	}

	// Without configured algorithms, only RS256 is accepted.
	rs512 := signToken(t, jose.RS512, &jose.JSONWebKey{Key: idp.key, KeyID: idp.kid}, idp.claims(clock.Now()), nil)
	if _, err := a.Authenticate(context.Background(), rs512); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("RS512 token: got %v, want ErrInvalidToken", err)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	_, err := authn.New(context.Background(), []config.Issuer{{
		Name: "corp", Issuer: "https://idp.example.com", Audiences: []string{"gatehouse"}, Algorithms: []string{"HS256"},
	}}, authn.Options{})
	if err == nil || !strings.Contains(err.Error(), "HS256") {
		t.Errorf("got %v, want an error naming HS256", err)
	}
}

func TestPrincipalContext(t *testing.T) {
	if _, ok := authn.PrincipalFromContext(context.Background()); ok {
		t.Error("empty context: got a principal")
	}
	if _, ok := authn.PrincipalFromContext(authn.ContextWithPrincipal(context.Background(), nil)); ok {
		t.Error("nil principal: got ok")
	}

	want := &authn.Principal{Ref: object.Ref{Type: object.TypeUser, ID: "corp|alice"}}
	got, ok := authn.PrincipalFromContext(authn.ContextWithPrincipal(context.Background(), want))
	if !ok || got != want {
		t.Errorf("got %v, %v, want %v, true", got, ok, want)
	}
}
