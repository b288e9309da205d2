package devissuer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/config"
	"github.com/gatehouse-authz/gatehouse/internal/devissuer"
	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

// startIssuer serves a dev issuer at <server>/dev/oidc and its token
// endpoint at <server>/dev/token, the layout of `gatehouse serve --dev`.
func startIssuer(t *testing.T) (*devissuer.Issuer, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	iss, err := devissuer.New(srv.URL+"/dev/oidc", "gatehouse", 0)
	if err != nil {
		t.Fatalf("devissuer.New: %v", err)
	}
	mux.Handle("/dev/oidc/", iss.Handler())
	mux.Handle("/dev/token", iss.TokenHandler())
	return iss, srv
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", url, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q, want application/json", url, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", url, err)
	}
}

func TestDiscoveryAndKeySet(t *testing.T) {
	_, srv := startIssuer(t)
	issuer := srv.URL + "/dev/oidc"

	var doc struct {
		Issuer     string   `json:"issuer"`
		JWKSURI    string   `json:"jwks_uri"`
		Algorithms []string `json:"id_token_signing_alg_values_supported"`
	}
	getJSON(t, issuer+"/.well-known/openid-configuration", &doc)
	if doc.Issuer != issuer {
		t.Errorf("issuer: got %q, want %q", doc.Issuer, issuer)
	}
	if doc.JWKSURI != issuer+"/jwks.json" {
		t.Errorf("jwks_uri: got %q, want %q", doc.JWKSURI, issuer+"/jwks.json")
	}
	if len(doc.Algorithms) != 1 || doc.Algorithms[0] != "ES256" {
		t.Errorf("algorithms: got %q, want [ES256]", doc.Algorithms)
	}

	var keys jose.JSONWebKeySet
	getJSON(t, doc.JWKSURI, &keys)
	if len(keys.Keys) != 1 {
		t.Fatalf("got %d keys, want 1", len(keys.Keys))
	}
	key := keys.Keys[0]
	if key.KeyID == "" {
		t.Error("key has no kid")
	}
	if key.Algorithm != "ES256" || key.Use != "sig" {
		t.Errorf("key alg %q use %q, want ES256 sig", key.Algorithm, key.Use)
	}
	if !key.IsPublic() {
		t.Error("key set contains a private key")
	}
	if pub, ok := key.Key.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key: got %T, want a P-256 public key", key.Key)
	}
}

func TestMintedTokenVerifies(t *testing.T) {
	iss, _ := startIssuer(t)
	a, err := authn.New(context.Background(), []config.Issuer{iss.Config()}, authn.Options{})
	if err != nil {
		t.Fatalf("authn.New: %v", err)
	}

	tests := []struct {
		name    string
		subject string
		service bool
		wantRef string
	}{
		{"user token", "alice", false, "user:dev|alice"},
		{"service token", "billing", true, "service:dev|billing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, err := iss.Mint(tt.subject, tt.service)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}

			jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatalf("parse token: %v", err)
			}
			if typ := jws.Signatures[0].Header.ExtraHeaders["typ"]; typ != "at+jwt" {
				t.Errorf("typ: got %v, want at+jwt", typ)
			}

			p, err := a.Authenticate(context.Background(), token)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if got := p.Ref.String(); got != tt.wantRef {
				t.Errorf("ref: got %q, want %q", got, tt.wantRef)
			}
			if p.TokenID == "" {
				t.Error("token has no jti")
			}
			if ttl := time.Until(p.Expiry); ttl < 59*time.Minute || ttl > time.Hour {
				t.Errorf("expiry in %s, want about 1h", ttl)
			}
		})
	}

	other, err := devissuer.New(iss.Config().Issuer, "gatehouse", 0)
	if err != nil {
		t.Fatalf("devissuer.New: %v", err)
	}
	foreign, err := other.Mint("alice", false)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	if _, err := a.Authenticate(context.Background(), foreign); err == nil {
		t.Error("token signed by another dev issuer's key verified")
	}
}

func postToken(t *testing.T, srv *httptest.Server, contentType, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/dev/token", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /dev/token: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestTokenHandler(t *testing.T) {
	iss, srv := startIssuer(t)
	a, err := authn.New(context.Background(), []config.Issuer{iss.Config()}, authn.Options{})
	if err != nil {
		t.Fatalf("authn.New: %v", err)
	}

	resp := postToken(t, srv, "application/json", `{"service":"billing"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control: got %q, want no-store", got)
	}

	var body struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		Principal   string `json:"principal"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode response: %v", err)
	}
	if body.TokenType != "Bearer" || body.ExpiresIn != 3600 || body.Principal != "service:dev|billing" {
		t.Errorf("got token_type %q, expires_in %d, principal %q", body.TokenType, body.ExpiresIn, body.Principal)
	}

	p, err := a.Authenticate(context.Background(), body.AccessToken)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if p.Ref.String() != body.Principal {
		t.Errorf("verified principal %q, response says %q", p.Ref, body.Principal)
	}
}

func TestTokenHandlerRejects(t *testing.T) {
	_, srv := startIssuer(t)

	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
	}{
		{"empty body", "application/json", "", http.StatusBadRequest},
		{"malformed JSON", "application/json", `{"subject":`, http.StatusBadRequest},
		{"array", "application/json", `["alice"]`, http.StatusBadRequest},
		{"null", "application/json", `null`, http.StatusBadRequest},
		{"unknown field", "application/json", `{"subject":"alice","admin":true}`, http.StatusBadRequest},
		{"both set", "application/json", `{"subject":"alice","service":"billing"}`, http.StatusBadRequest},
		{"neither set", "application/json", `{}`, http.StatusBadRequest},
		{"empty subject", "application/json", `{"subject":""}`, http.StatusBadRequest},
		{"subject with pipe", "application/json", `{"subject":"a|b"}`, http.StatusBadRequest},
		{"subject with space", "application/json", `{"subject":"alice smith"}`, http.StatusBadRequest},
		{"subject not a string", "application/json", `{"subject":1}`, http.StatusBadRequest},
		{"name too long", "application/json", `{"service":"` + strings.Repeat("a", 65) + `"}`, http.StatusBadRequest},
		{"trailing object", "application/json", `{"subject":"alice"}{"subject":"bob"}`, http.StatusBadRequest},
		{"trailing garbage", "application/json", `{"subject":"alice"} x`, http.StatusBadRequest},
		{"oversized body", "application/json", `{"subject":"alice","pad":"` + strings.Repeat("x", 5000) + `"}`, http.StatusRequestEntityTooLarge},
		{"form body", "application/x-www-form-urlencoded", "subject=alice", http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := postToken(t, srv, tt.contentType, tt.body)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("Content-Type: got %q, want %q", ct, problem.ContentType)
			}
			body, _ := io.ReadAll(resp.Body)
			if strings.Contains(string(body), "access_token") {
				t.Errorf("error response contains a token: %s", body)
			}
		})
	}

	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/dev/token")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("status: got %d, want 405", resp.StatusCode)
		}
	})

	t.Run("no content type", func(t *testing.T) {
		resp := postToken(t, srv, "", `{"subject":"alice"}`)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status: got %d, want 200", resp.StatusCode)
		}
	})
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name      string
		issuerURL string
		audience  string
		ttl       time.Duration
	}{
		{"http non-loopback issuer", "http://dev.example.com/dev/oidc", "gatehouse", 0},
		{"relative issuer", "/dev/oidc", "gatehouse", 0},
		{"issuer path with brace", "http://127.0.0.1:8080/dev/{x}", "gatehouse", 0},
		{"empty audience", "http://127.0.0.1:8080/dev/oidc", "", 0},
		{"negative ttl", "http://127.0.0.1:8080/dev/oidc", "gatehouse", -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := devissuer.New(tt.issuerURL, tt.audience, tt.ttl); err == nil {
				t.Error("New succeeded, want error")
			}
		})
	}
}

func TestConfigIsValid(t *testing.T) {
	iss, err := devissuer.New("http://127.0.0.1:8080/dev/oidc", "gatehouse", 0)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	cfg := iss.Config()
	if err := (&config.File{Issuers: []config.Issuer{cfg}}).Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if cfg.Name != "dev" || cfg.Issuer != "http://127.0.0.1:8080/dev/oidc" {
		t.Errorf("got name %q issuer %q", cfg.Name, cfg.Issuer)
	}
}
