package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-authz/gatehouse/internal/config"
)

// keyTypesIssuer is a test issuer whose key set holds its RSA key and an EC
// P-256 key, and which counts key set requests. Its tokens are signed by
// the testIssuer methods of tokens_test.go.
type keyTypesIssuer struct {
	*testIssuer
	ecKey       *ecdsa.PrivateKey
	ecKid       string
	keyRequests atomic.Int32
}

func newKeyTypesIssuer(t *testing.T) *keyTypesIssuer {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss := &keyTypesIssuer{testIssuer: &testIssuer{key: rsaKey, kid: "rsa-1"}, ecKey: ecKey, ecKid: "ec-1"}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, map[string]any{
			"issuer":                                iss.url,
			"jwks_uri":                              iss.url + "/jwks.json",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
		})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		iss.keyRequests.Add(1)
		writeTestJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &rsaKey.PublicKey, KeyID: iss.kid, Use: "sig"},
			{Key: &ecKey.PublicKey, KeyID: iss.ecKid, Use: "sig"},
		}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss.url = srv.URL
	return iss
}

// accessClaims returns valid claims with a "scp" claim, the access token
// marker that Gatehouse accepts with typ "JWT".
func (iss *keyTypesIssuer) accessClaims(subject string, edit func(map[string]any)) map[string]any {
	claims := iss.claims(subject)
	claims["scp"] = "gatehouse.check"
	if edit != nil {
		edit(claims)
	}
	return claims
}

// signWithKid signs claims with key and alg under kid.
func signWithKid(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any, extra map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
	for k, v := range extra {
		opts = opts.WithHeader(k, v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("new %s signer: %v", alg, err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func TestBadTokens(t *testing.T) {
	iss := newKeyTypesIssuer(t)
	const tenant = "tenant-1"
	tenants := config.Issuer{
		Name:      "tenants",
		Issuer:    iss.url + "/" + config.TenantPlaceholder + "/v2.0",
		JWKSURI:   iss.url + "/jwks.json",
		Tenants:   []string{tenant},
		Audiences: []string{"gatehouse"},
		Claims:    config.Claims{Tenant: "tid"},
	}
	g := startGatehouse(t, iss.config(), tenants)

	valid := func(edit func(map[string]any)) string {
		return iss.sign(t, jose.RS256, iss.key, iss.accessClaims("alice", edit), nil)
	}
	tenantToken := func(issTenant, tid string) string {
		return valid(func(c map[string]any) {
			c["iss"] = iss.url + "/" + issTenant + "/v2.0"
			c["tid"] = tid
		})
	}

	// The baseline tokens pass, so each rejection below is about its own
	// defect.
	wantPrincipal(t, g, valid(nil), "user:test|alice")
	wantPrincipal(t, g, tenantToken(tenant, tenant), "user:tenants|alice")
	wantPrincipal(t, g, signWithKid(t, jose.ES256, iss.ecKey, iss.ecKid, iss.accessClaims("alice", nil), nil), "user:test|alice")

	publicDER, err := x509.MarshalPKIXPublicKey(&iss.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	publicPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: publicDER})
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forgerJWK, err := json.Marshal(jose.JSONWebKey{Key: &forger.PublicKey, KeyID: iss.kid})
	if err != nil {
		t.Fatal(err)
	}
	oneCharOff := iss.url[:len(iss.url)-1] + string(iss.url[len(iss.url)-1]^1)
	now := time.Now()

	cases := []struct {
		name  string
		token string
	}{
		{"alg none", unsigned(t, `{"alg":"none","typ":"JWT","kid":"rsa-1"}`, iss.accessClaims("alice", nil))},
		{"HS256 with the public key", iss.sign(t, jose.HS256, publicPEM, iss.accessClaims("alice", nil), nil)},
		{"alg not allowed", iss.sign(t, jose.RS512, iss.key, iss.accessClaims("alice", nil), nil)},
		{"RS256 kid of EC key", signWithKid(t, jose.RS256, iss.key, iss.ecKid, iss.accessClaims("alice", nil), nil)},
		{"ES256 kid of RSA key", signWithKid(t, jose.ES256, iss.ecKey, iss.kid, iss.accessClaims("alice", nil), nil)},
		{"issuer one character off", valid(func(c map[string]any) { c["iss"] = oneCharOff })},
		{"issuer with trailing slash", valid(func(c map[string]any) { c["iss"] = iss.url + "/" })},
		{"tenant not allowed", tenantToken("tenant-2", "tenant-2")},
		{"tid of other tenant", tenantToken(tenant, "tenant-2")},
		{"tenant placeholder as iss", tenantToken(config.TenantPlaceholder, tenant)},
		{"expired", valid(func(c map[string]any) {
			c["iat"] = now.Add(-2 * time.Hour).Unix()
			c["exp"] = now.Add(-time.Minute).Unix()
		})},
		{"nbf 10 minutes ahead", valid(func(c map[string]any) { c["nbf"] = now.Add(10 * time.Minute).Unix() })},
		{"iat 10 minutes ahead", valid(func(c map[string]any) { c["iat"] = now.Add(10 * time.Minute).Unix() })},
		{"ID token", iss.sign(t, jose.RS256, iss.key, iss.accessClaims("alice", func(c map[string]any) {
			delete(c, "scp")
			delete(c, "scope")
			c["nonce"] = "n-0S6_WzA2Mj"
			c["azp"] = "web-client"
		}), nil)},
		{"ID token with aud equal to azp", iss.sign(t, jose.RS256, iss.key, iss.accessClaims("alice", func(c map[string]any) {
			c["azp"] = "gatehouse"
		}), nil)},
		{"no access token marker", valid(func(c map[string]any) {
			delete(c, "scp")
			delete(c, "scope")
		})},
		{"aud array without ours", valid(func(c map[string]any) { c["aud"] = []string{"billing", "reports"} })},
		{"missing aud", valid(func(c map[string]any) { delete(c, "aud") })},
		{"Microsoft Graph token", iss.sign(t, jose.RS256, iss.key, iss.accessClaims("alice", func(c map[string]any) {
			c["aud"] = "https://graph.microsoft.com"
		}), map[jose.HeaderKey]any{"nonce": "AQABAAAAAAD"})},
		{"Graph nonce header with our aud", iss.sign(t, jose.RS256, iss.key, iss.accessClaims("alice", nil),
			map[jose.HeaderKey]any{"nonce": "AQABAAAAAAD"})},
		{"crit with unknown extension", iss.sign(t, jose.RS256, iss.key, iss.accessClaims("alice", nil),
			map[jose.HeaderKey]any{"crit": []string{"urn:example:ext"}, "urn:example:ext": true})},
		{"jku header", iss.sign(t, jose.RS256, iss.key, iss.accessClaims("alice", nil), map[jose.HeaderKey]any{"jku": iss.url + "/jwks.json"})},
		{"x5u header", iss.sign(t, jose.RS256, iss.key, iss.accessClaims("alice", nil), map[jose.HeaderKey]any{"x5u": iss.url + "/cert.pem"})},
		{"jwk header", iss.sign(t, jose.RS256, forger, iss.accessClaims("alice", nil), map[jose.HeaderKey]any{"jwk": json.RawMessage(forgerJWK)})},
		{"x5c header", iss.sign(t, jose.RS256, iss.key, iss.accessClaims("alice", nil), map[jose.HeaderKey]any{"x5c": []string{"MIIBIjAN"}})},
		{"oversized", valid(func(c map[string]any) { c["pad"] = strings.Repeat("p", 8<<10) })},
		{"JWE", encryptedToken(t, &iss.key.PublicKey, iss.accessClaims("alice", nil))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantRejected(t, g, c.token)
		})
	}
}

// encryptedToken returns claims as a compact JWE (5 parts) for key.
func encryptedToken(t *testing.T, key *rsa.PublicKey, claims map[string]any) string {
	t.Helper()
	encrypter, err := jose.NewEncrypter(jose.A128GCM, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: key},
		(&jose.EncrypterOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jwe, err := encrypter.Encrypt(payload)
	if err != nil {
		t.Fatal(err)
	}
	token, err := jwe.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(token, ".") + 1; n != 5 {
		t.Fatalf("JWE has %d parts, want 5", n)
	}
	return token
}

// TestBadTokensSameSubjectOtherIssuer checks that "alice" of a second
// issuer is another principal, with no access to the first alice's org.
func TestBadTokensSameSubjectOtherIssuer(t *testing.T) {
	first := newKeyTypesIssuer(t)
	second := newKeyTypesIssuer(t)
	secondConfig := second.config()
	secondConfig.Name = "partner"
	g := startGatehouse(t, first.config(), secondConfig)

	firstAlice := &caller{g: g, ref: "user:test|alice",
		token: first.sign(t, jose.RS256, first.key, first.accessClaims("alice", nil), nil)}
	secondAlice := &caller{g: g, ref: "user:partner|alice",
		token: second.sign(t, jose.RS256, second.key, second.accessClaims("alice", nil), nil)}
	wantPrincipal(t, g, firstAlice.token, firstAlice.ref)
	wantPrincipal(t, g, secondAlice.token, secondAlice.ref)

	firstAlice.create(t, "org:first-acme", "")
	if secondAlice.allowed(t, "", "view", "org:first-acme") {
		t.Errorf("%s can view org:first-acme", secondAlice.ref)
	}
	wantProblem(t, secondAlice.do(t, http.MethodGet, resourcePath("org:first-acme")+"/members", nil), http.StatusNotFound)
	wantProblem(t, secondAlice.do(t, http.MethodDelete, resourcePath("org:first-acme"), nil), http.StatusNotFound)

	// The first issuer's claims signed by the second issuer's key fail.
	crossed := signWithKid(t, jose.RS256, second.key, first.kid, first.accessClaims("alice", nil), nil)
	wantRejected(t, g, crossed)
}

// TestBadTokensRandomKids sends 200 tokens with random kids between valid
// tokens. The unknown kids cause no key set fetch within the default
// refresh interval (30s) after the first one, and valid tokens keep passing.
func TestBadTokensRandomKids(t *testing.T) {
	iss := newKeyTypesIssuer(t)
	g := startGatehouse(t, iss.config())
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	validToken := iss.sign(t, jose.RS256, iss.key, iss.accessClaims("alice", nil), nil)
	wantPrincipal(t, g, validToken, "user:test|alice")
	if got := iss.keyRequests.Load(); got != 1 {
		t.Fatalf("first token: got %d key set requests, want 1", got)
	}

	start := time.Now()
	for i := range 200 {
		kid := fmt.Sprintf("random-%d-%s", i, randomHex(t, 8))
		wantRejected(t, g, signWithKid(t, jose.RS256, forger, kid, iss.accessClaims("alice", nil), nil))
		if i%10 == 0 {
			wantPrincipal(t, g, validToken, "user:test|alice")
		}
	}
	if elapsed := time.Since(start); elapsed >= config.DefaultJWKSRefreshInterval {
		t.Fatalf("200 tokens took %s, longer than the refresh interval, so the count below proves nothing", elapsed)
	}
	if got := iss.keyRequests.Load(); got != 1 {
		t.Errorf("after 200 random kids: got %d key set requests, want 1", got)
	}
}
