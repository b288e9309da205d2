package integration

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-authz/gatehouse/internal/config"
)

// testIssuer is an OpenID Connect provider on loopback that serves a
// discovery document and an RS256 key set, and signs tokens with its key.
type testIssuer struct {
	url string // the "iss" of its tokens, without a trailing slash
	key *rsa.PrivateKey
	kid string
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate RSA key: %v", err)
	}
	iss := &testIssuer{key: key, kid: "test-key-1"}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, map[string]any{
			"issuer":                                iss.url,
			"jwks_uri":                              iss.url + "/jwks.json",
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"response_types_supported":              []string{"token"},
			"subject_types_supported":               []string{"public"},
		})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		writeTestJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
			Key: &key.PublicKey, KeyID: iss.kid, Algorithm: string(jose.RS256), Use: "sig",
		}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss.url = srv.URL
	return iss
}

func writeTestJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// config returns the issuer entry that makes Gatehouse trust iss.
func (iss *testIssuer) config() config.Issuer {
	return config.Issuer{Name: "test", Issuer: iss.url, Audiences: []string{"gatehouse"}}
}

// claims returns valid claims for subject, valid for an hour.
func (iss *testIssuer) claims(subject string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss.url,
		"sub": subject,
		"aud": "gatehouse",
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		// An access token of a provider that types its tokens "JWT" is
		// recognised by its scope claim.
		"scope": "gatehouse",
	}
}

// sign signs claims with key under alg, with iss's key id in the header
// plus extra header parameters.
func (iss *testIssuer) sign(t *testing.T, alg jose.SignatureAlgorithm, key any, claims map[string]any, extra map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", iss.kid)
	for k, v := range extra {
		opts = opts.WithHeader(k, v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("new %s signer: %v", alg, err)
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return token
}

// token returns a valid RS256 token with claims changed by edit.
func (iss *testIssuer) token(t *testing.T, subject string, edit func(map[string]any)) string {
	t.Helper()
	claims := iss.claims(subject)
	if edit != nil {
		edit(claims)
	}
	return iss.sign(t, jose.RS256, iss.key, claims, nil)
}

// unsigned returns a compact JWS with the given header and claims and an
// empty signature.
func unsigned(t *testing.T, header string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(payload) + "."
}

func TestTokenRejected(t *testing.T) {
	iss := newTestIssuer(t)
	g := startGatehouse(t, iss.config())

	// A valid token first, so that the issuer's discovery has run and the
	// rejections below are about the tokens themselves.
	r := g.send(t, request{Method: "GET", Path: "/v1/me", Token: iss.token(t, "alice", nil)})
	wantStatus(t, r, http.StatusOK)

	publicDER, err := x509.MarshalPKIXPublicKey(&iss.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	publicPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: publicDER})
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := json.Marshal(jose.JSONWebKey{Key: &otherKey.PublicKey, KeyID: iss.kid})
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Hour

	cases := []struct {
		name          string
		authorization []string // Authorization header values; nil sends none
		wantError     bool     // whether WWW-Authenticate carries error="invalid_token"
	}{
		{"missing header", nil, false},
		{"basic scheme", []string{"Basic YWxpY2U6c2VjcmV0"}, false},
		{"empty bearer", []string{"Bearer "}, false},
		{"scheme only", []string{"Bearer"}, false},
		{"two headers", []string{"Bearer " + iss.token(t, "alice", nil), "Bearer " + iss.token(t, "alice", nil)}, false},
		{"garbage", []string{"Bearer garbage"}, true},
		{"two parts", []string{"Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"}, true},
		{"five parts", []string{"Bearer a.b.c.d.e"}, true},
		{"expired", []string{"Bearer " + iss.token(t, "alice", func(c map[string]any) {
			c["iat"] = time.Now().Add(-2 * hour).Unix()
			c["nbf"] = time.Now().Add(-2 * hour).Unix()
			c["exp"] = time.Now().Add(-hour).Unix()
		})}, true},
		{"not yet valid", []string{"Bearer " + iss.token(t, "alice", func(c map[string]any) {
			c["nbf"] = time.Now().Add(hour).Unix()
		})}, true},
		{"no exp", []string{"Bearer " + iss.token(t, "alice", func(c map[string]any) { delete(c, "exp") })}, true},
		{"wrong audience", []string{"Bearer " + iss.token(t, "alice", func(c map[string]any) { c["aud"] = "other-service" })}, true},
		{"no audience", []string{"Bearer " + iss.token(t, "alice", func(c map[string]any) { delete(c, "aud") })}, true},
		{"no subject", []string{"Bearer " + iss.token(t, "alice", func(c map[string]any) { delete(c, "sub") })}, true},
		{"numeric subject", []string{"Bearer " + iss.token(t, "alice", func(c map[string]any) { c["sub"] = 42 })}, true},
		{"unknown issuer", []string{"Bearer " + iss.token(t, "alice", func(c map[string]any) { c["iss"] = "http://127.0.0.1:1/other" })}, true},
		{"trailing slash issuer", []string{"Bearer " + iss.token(t, "alice", func(c map[string]any) { c["iss"] = iss.url + "/" })}, true},
		{"dev issuer claimed", []string{"Bearer " + iss.token(t, "alice", func(c map[string]any) { c["iss"] = g.url + "/dev/oidc" })}, true},
		{"alg none", []string{"Bearer " + unsigned(t, `{"alg":"none","typ":"JWT"}`, iss.claims("alice"))}, true},
		{"alg none with kid", []string{"Bearer " + unsigned(t, `{"alg":"none","kid":"`+iss.kid+`"}`, iss.claims("alice"))}, true},
		{"HS256 with public key", []string{"Bearer " + iss.sign(t, jose.HS256, publicPEM, iss.claims("alice"), nil)}, true},
		{"HS256 with public DER", []string{"Bearer " + iss.sign(t, jose.HS256, publicDER, iss.claims("alice"), nil)}, true},
		{"other key same kid", []string{"Bearer " + iss.sign(t, jose.RS256, otherKey, iss.claims("alice"), nil)}, true},
		{"embedded jwk", []string{"Bearer " + iss.sign(t, jose.RS256, otherKey, iss.claims("alice"), map[jose.HeaderKey]any{"jwk": json.RawMessage(jwk)})}, true},
		{"jku header", []string{"Bearer " + iss.sign(t, jose.RS256, iss.key, iss.claims("alice"), map[jose.HeaderKey]any{"jku": iss.url + "/jwks.json"})}, true},
		{"cut signature", []string{"Bearer " + strings.TrimRight(iss.token(t, "alice", nil), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}, true},
		{"oversized token", []string{"Bearer " + iss.token(t, "alice", func(c map[string]any) { c["pad"] = strings.Repeat("p", 8<<10) })}, true},
	}

	var details []string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, req := range []request{
				{Method: "GET", Path: "/v1/me"},
				{Method: "POST", Path: "/v1/resources", Body: createReq("org:intruder", "")},
			} {
				req.Header = http.Header{}
				for _, v := range c.authorization {
					req.Header.Add("Authorization", v)
				}
				r := g.send(t, req)
				p := wantProblem(t, r, http.StatusUnauthorized)
				details = append(details, p.Detail)

				challenge := r.header.Get("WWW-Authenticate")
				if !strings.HasPrefix(challenge, "Bearer ") {
					t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge", req.Path, challenge)
				}
				if got := strings.Contains(challenge, `error="invalid_token"`); got != c.wantError {
					t.Errorf("%s: WWW-Authenticate %q, want error=\"invalid_token\": %v", req.Path, challenge, c.wantError)
				}
			}
		})
	}

	if uniform := slices.Compact(slices.Sorted(slices.Values(details))); len(uniform) != 1 {
		t.Errorf("token failures have %d different details: %q", len(uniform), uniform)
	}
	alice := &caller{g: g, token: iss.token(t, "alice", nil)}
	if got := alice.lookupResources(t, "", "view", "org"); len(got) != 0 {
		t.Errorf("a rejected token created %v", got)
	}
}

// TestSameSubjectTwoIssuers checks that "alice" from the dev issuer and
// "alice" from the test issuer are two principals that share nothing.
func TestSameSubjectTwoIssuers(t *testing.T) {
	iss := newTestIssuer(t)
	g := startGatehouse(t, iss.config())
	devAlice := g.user(t, "alice")
	testAlice := &caller{g: g, token: iss.token(t, "alice", nil), ref: "user:test|alice"}

	type me struct {
		Principal string `json:"principal"`
		Issuer    string `json:"issuer"`
		Subject   string `json:"subject"`
		Tenant    string `json:"tenant"`
	}
	var devMe, testMe me
	r := devAlice.do(t, http.MethodGet, "/v1/me", nil)
	wantStatus(t, r, http.StatusOK)
	decodeJSON(t, r, &devMe)
	r = testAlice.do(t, http.MethodGet, "/v1/me", nil)
	wantStatus(t, r, http.StatusOK)
	decodeJSON(t, r, &testMe)

	if devMe.Principal != devAlice.ref || testMe.Principal != testAlice.ref {
		t.Errorf("principals %q and %q, want %q and %q", devMe.Principal, testMe.Principal, devAlice.ref, testAlice.ref)
	}
	if devMe.Subject != "alice" || testMe.Subject != "alice" {
		t.Errorf("subjects %q and %q, want alice for both", devMe.Subject, testMe.Subject)
	}
	if testMe.Issuer != iss.url || devMe.Issuer == iss.url {
		t.Errorf("issuers %q and %q, want the dev issuer and %q", devMe.Issuer, testMe.Issuer, iss.url)
	}

	devAlice.create(t, "org:dev-acme", "")
	devAlice.create(t, "workspace:dev-w", "org:dev-acme")
	testAlice.create(t, "org:test-acme", "")

	cases := []struct {
		name   string
		by     *caller
		theirs []string
	}{
		{"test alice on dev org", testAlice, []string{"org:dev-acme", "workspace:dev-w"}},
		{"dev alice on test org", devAlice, []string{"org:test-acme"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, res := range c.theirs {
				if c.by.allowed(t, "", "view", res) {
					t.Errorf("%s can view %s", c.by.ref, res)
				}
				wantProblem(t, c.by.do(t, http.MethodGet, resourcePath(res)+"/members", nil), http.StatusNotFound)
				wantProblem(t, c.by.do(t, http.MethodDelete, resourcePath(res), nil), http.StatusNotFound)
			}
			for _, typ := range []string{"org", "workspace"} {
				for _, res := range c.by.lookupResources(t, "", "view", typ) {
					if slices.Contains(c.theirs, res) {
						t.Errorf("%s's lookup returns %s", c.by.ref, res)
					}
				}
			}
		})
	}

	if got := devAlice.members(t, "org:dev-acme"); !slices.Equal(got, []string{devAlice.ref + "=owner"}) {
		t.Errorf("members of org:dev-acme: %v", got)
	}
}
