package middleware_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/server"
	"github.com/gatehouse-authz/gatehouse/pkg/client"
	"github.com/gatehouse-authz/gatehouse/pkg/middleware"
)

const (
	gateway        = "service:dev|gateway"
	staleChallenge = `Bearer error="invalid_token", error_description="token is stale; exchange it again"`
)

// testServer is an in-process dev Gatehouse on a loopback port.
type testServer struct {
	url string
	srv *server.Server
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, server.Config{
		Listener: ln,
		Dev:      true,
		Gateways: []string{gateway},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		cancel()
		t.Fatalf("start server: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &testServer{url: srv.URL(), srv: srv}
}

// idpToken returns a dev identity provider token for user:dev|name, or for
// service:dev|name when service is true.
func (s *testServer) idpToken(t *testing.T, name string, service bool) string {
	t.Helper()
	token, err := s.srv.DevIssuer().Mint(name, service)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// exchange trades an identity provider token for a Gatehouse token at
// POST /oauth2/token.
func (s *testServer) exchange(t *testing.T, subjectToken string) string {
	t.Helper()
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subjectToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
	}
	resp, err := http.PostForm(s.url+"/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken     string `json:"access_token"`
		IssuedTokenType string `json:"issued_token_type"`
		TokenType       string `json:"token_type"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || body.AccessToken == "" || body.TokenType != "Bearer" {
		t.Fatalf("token exchange: status %d, token_type %q", resp.StatusCode, body.TokenType)
	}
	return body.AccessToken
}

// apiClient returns a Gatehouse client authenticated by a dev identity
// provider token.
func (s *testServer) apiClient(t *testing.T, name string, service bool) *client.Client {
	t.Helper()
	c, err := client.New(s.url, client.WithToken(s.idpToken(t, name, service)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// revokeSessions calls POST /v1/principals/{principal}/revoke-sessions as
// the dev user name, on that user's own sessions.
func (s *testServer) revokeSessions(t *testing.T, name string) {
	t.Helper()
	endpoint := s.url + "/v1/principals/" + url.PathEscape("user:dev|"+name) + "/revoke-sessions"
	req, _ := http.NewRequest(http.MethodPost, endpoint, nil)
	req.Header.Set("Authorization", "Bearer "+s.idpToken(t, name, false))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke sessions of %q: status %d", name, resp.StatusCode)
	}
}

// countingTransport counts auth version reads and fails them while broken
// is set.
type countingTransport struct {
	reads  atomic.Int64
	broken atomic.Bool
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/auth-version") {
		c.reads.Add(1)
		if c.broken.Load() {
			return nil, errors.New("connection refused (test)")
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

func newVerifier(t *testing.T, cfg middleware.Config) *middleware.Verifier {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	v, err := middleware.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// waitForStream waits until v follows the auth version stream.
func waitForStream(t *testing.T, v *middleware.Verifier) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !v.StreamConnected() {
		if time.Now().After(deadline) {
			t.Fatal("the verifier did not connect to the auth version stream within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// principalEcho responds with the principal in the request context.
var principalEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := middleware.PrincipalFrom(r.Context())
	if !ok {
		http.Error(w, "no principal", http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(p)
})

// get sends GET / with the bearer token (none when empty) to h.
func get(h http.Handler, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// waitForStatus sends token to h until it gets status, for at most limit.
func waitForStatus(t *testing.T, h http.Handler, token string, status int, limit time.Duration) *httptest.ResponseRecorder {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		rec := get(h, token)
		if rec.Code == status {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("got status %d after %s, want %d", rec.Code, limit, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHandlerAcceptsExchangedToken(t *testing.T) {
	s := startServer(t)
	v := newVerifier(t, middleware.Config{GatehouseURL: s.url})
	token := s.exchange(t, s.idpToken(t, "alice", false))

	rec := get(v.Handler(principalEcho), token)
	if rec.Code != http.StatusOK {
		t.Fatalf("got status %d, want 200: %s", rec.Code, rec.Body)
	}
	var p middleware.Principal
	if err := json.NewDecoder(rec.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p.ID != "user:dev|alice" {
		t.Errorf("got principal %q, want %q", p.ID, "user:dev|alice")
	}
	if p.AuthVersion < 1 {
		t.Errorf("got auth version %d, want at least 1", p.AuthVersion)
	}
	if p.TokenID == "" {
		t.Error("got an empty token id")
	}
	if !p.Expiry.After(time.Now()) {
		t.Errorf("got expiry %s, want a future time", p.Expiry)
	}
}

func TestHandlerRejectsInvalidTokens(t *testing.T) {
	s := startServer(t)
	other := startServer(t)
	v := newVerifier(t, middleware.Config{GatehouseURL: s.url})
	valid := s.exchange(t, s.idpToken(t, "alice", false))
	header, payload, signature := splitToken(t, valid)

	var claims map[string]any
	if err := json.Unmarshal(decodeSegment(t, payload), &claims); err != nil {
		t.Fatal(err)
	}
	claims["sub"] = "user:dev|mallory"
	forgedPayload := encodeSegment(t, claims)
	noneHeader := encodeSegment(t, map[string]string{"alg": "none", "typ": "at+jwt", "kid": "k"})

	tests := []struct {
		name          string
		authorization string
		challenge     string
	}{
		{"missing header", "", "Bearer"},
		{"basic scheme", "Basic YWxpY2U6c2VjcmV0", "Bearer"},
		{"empty bearer", "Bearer ", "Bearer"},
		{"not a JWT", "Bearer opaque-token", invalidChallenge},
		{"changed claims", "Bearer " + header + "." + forgedPayload + "." + signature, invalidChallenge},
		{"changed signature", "Bearer " + header + "." + payload + "." + flipLastChar(signature), invalidChallenge},
		{"alg none", "Bearer " + noneHeader + "." + payload + ".", invalidChallenge},
		{"identity provider token", "Bearer " + s.idpToken(t, "alice", false), invalidChallenge},
		{"other Gatehouse's token", "Bearer " + other.exchange(t, other.idpToken(t, "alice", false)), invalidChallenge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.authorization != "" {
				req.Header.Set("Authorization", tt.authorization)
			}
			rec := httptest.NewRecorder()
			v.Handler(principalEcho).ServeHTTP(rec, req)

			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("got status %d, want 401", rec.Code)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("got WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/problem+json" {
				t.Errorf("got Content-Type %q, want application/problem+json", got)
			}
		})
	}
}

const invalidChallenge = `Bearer error="invalid_token", error_description="the access token is missing, malformed, expired or not trusted"`

func TestHandlerChecksExpiryAndAudience(t *testing.T) {
	s := startServer(t)
	token := s.exchange(t, s.idpToken(t, "alice", false))
	_, payload, _ := splitToken(t, token)
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(decodeSegment(t, payload), &claims); err != nil {
		t.Fatal(err)
	}
	expiry := time.Unix(claims.Exp, 0)

	tests := []struct {
		name string
		cfg  middleware.Config
		want int
	}{
		{"before expiry", middleware.Config{Now: func() time.Time { return expiry.Add(-time.Second) }}, http.StatusOK},
		{"at expiry", middleware.Config{Now: func() time.Time { return expiry }}, http.StatusUnauthorized},
		{"after expiry", middleware.Config{Now: func() time.Time { return expiry.Add(time.Hour) }}, http.StatusUnauthorized},
		{"other audience", middleware.Config{Audience: "billing"}, http.StatusUnauthorized},
		{"explicit default audience", middleware.Config{Audience: "gatehouse"}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.GatehouseURL = s.url
			v := newVerifier(t, tt.cfg)
			if rec := get(v.Handler(principalEcho), token); rec.Code != tt.want {
				t.Errorf("got status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	s := startServer(t)
	tests := []struct {
		name string
		url  string
	}{
		{"missing URL", ""},
		{"trailing slash", s.url + "/"},
		{"other path", s.url + "/dev"},
		{"no scheme", strings.TrimPrefix(s.url, "http://")},
		{"query", s.url + "?x=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := middleware.New(context.Background(), middleware.Config{GatehouseURL: tt.url})
			if err == nil {
				v.Close()
				t.Fatalf("New(%q) returned no error", tt.url)
			}
		})
	}
}

// freshnessModes are the two ways a Verifier learns auth versions.
var freshnessModes = []struct {
	name   string
	stream bool
}{
	{"stream", true},
	{"per-request read", false},
}

// newFreshnessVerifier returns a verifier in the given mode and the
// transport that counts its auth version reads.
func newFreshnessVerifier(t *testing.T, s *testServer, stream bool) (*middleware.Verifier, *countingTransport) {
	t.Helper()
	transport := &countingTransport{}
	cfg := middleware.Config{GatehouseURL: s.url, HTTPClient: &http.Client{Transport: transport, Timeout: 10 * time.Second}}
	if stream {
		gatewayToken := s.idpToken(t, "gateway", true)
		cfg.StreamToken = func(context.Context) (string, error) { return gatewayToken, nil }
	}
	v := newVerifier(t, cfg)
	if stream {
		waitForStream(t, v)
	}
	return v, transport
}

func TestStaleAfterRelationshipChange(t *testing.T) {
	for _, mode := range freshnessModes {
		t.Run(mode.name, func(t *testing.T) {
			s := startServer(t)
			v, transport := newFreshnessVerifier(t, s, mode.stream)
			h := v.Handler(principalEcho)
			old := s.exchange(t, s.idpToken(t, "alice", false))
			for range 3 {
				if rec := get(h, old); rec.Code != http.StatusOK {
					t.Fatalf("before the change: got status %d, want 200: %s", rec.Code, rec.Body)
				}
			}
			readsBefore := transport.reads.Load()
			if mode.stream && readsBefore != 1 {
				t.Errorf("got %d auth version reads for 3 requests, want 1 (the first sight)", readsBefore)
			}

			bob := s.apiClient(t, "bob", false)
			ctx := context.Background()
			if _, err := bob.CreateResource(ctx, client.CreateResourceRequest{Resource: "org:acme"}); err != nil {
				t.Fatal(err)
			}
			if _, err := bob.SetMember(ctx, "org:acme", "user:dev|alice", "member"); err != nil {
				t.Fatal(err)
			}

			rec := waitForStatus(t, h, old, http.StatusUnauthorized, time.Second)
			if got := rec.Header().Get("WWW-Authenticate"); got != staleChallenge {
				t.Errorf("got WWW-Authenticate %q, want %q", got, staleChallenge)
			}
			if mode.stream && transport.reads.Load() != readsBefore {
				t.Errorf("got %d auth version reads after the change, want none: the stream event must suffice", transport.reads.Load()-readsBefore)
			}

			fresh := s.exchange(t, s.idpToken(t, "alice", false))
			if rec := get(h, fresh); rec.Code != http.StatusOK {
				t.Errorf("re-exchanged token: got status %d, want 200: %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestStaleAfterRevokeSessions(t *testing.T) {
	for _, mode := range freshnessModes {
		t.Run(mode.name, func(t *testing.T) {
			s := startServer(t)
			v, _ := newFreshnessVerifier(t, s, mode.stream)
			h := v.Handler(principalEcho)
			old := s.exchange(t, s.idpToken(t, "alice", false))
			if rec := get(h, old); rec.Code != http.StatusOK {
				t.Fatalf("before revocation: got status %d, want 200: %s", rec.Code, rec.Body)
			}

			s.revokeSessions(t, "alice")

			rec := waitForStatus(t, h, old, http.StatusUnauthorized, time.Second)
			if got := rec.Header().Get("WWW-Authenticate"); got != staleChallenge {
				t.Errorf("got WWW-Authenticate %q, want %q", got, staleChallenge)
			}
			fresh := s.exchange(t, s.idpToken(t, "alice", false))
			if rec := get(h, fresh); rec.Code != http.StatusOK {
				t.Errorf("re-exchanged token: got status %d, want 200: %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestOtherPrincipalsStayFresh(t *testing.T) {
	s := startServer(t)
	v, _ := newFreshnessVerifier(t, s, true)
	h := v.Handler(principalEcho)
	carol := s.exchange(t, s.idpToken(t, "carol", false))

	s.revokeSessions(t, "alice")
	time.Sleep(200 * time.Millisecond)

	if rec := get(h, carol); rec.Code != http.StatusOK {
		t.Errorf("got status %d for another principal's token, want 200: %s", rec.Code, rec.Body)
	}
}

func TestFailsClosedWithoutVersions(t *testing.T) {
	t.Run("Gatehouse unreachable", func(t *testing.T) {
		s := startServer(t)
		v, transport := newFreshnessVerifier(t, s, false)
		token := s.exchange(t, s.idpToken(t, "alice", false))
		transport.broken.Store(true)

		rec := get(v.Handler(principalEcho), token)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("got status %d, want 503: %s", rec.Code, rec.Body)
		}
		if got := rec.Header().Get("Retry-After"); got == "" {
			t.Error("got no Retry-After header")
		}
	})
	t.Run("stream token not a gateway", func(t *testing.T) {
		s := startServer(t)
		aliceIDP := s.idpToken(t, "alice", false)
		v := newVerifier(t, middleware.Config{
			GatehouseURL: s.url,
			StreamToken:  func(context.Context) (string, error) { return aliceIDP, nil },
		})
		bob := s.exchange(t, s.idpToken(t, "bob", false))

		if rec := get(v.Handler(principalEcho), bob); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("got status %d, want 503: %s", rec.Code, rec.Body)
		}
	})
	t.Run("stream token source fails", func(t *testing.T) {
		s := startServer(t)
		v := newVerifier(t, middleware.Config{
			GatehouseURL: s.url,
			StreamToken:  func(context.Context) (string, error) { return "", errors.New("vault sealed (test)") },
		})
		token := s.exchange(t, s.idpToken(t, "alice", false))

		if rec := get(v.Handler(principalEcho), token); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("got status %d, want 503: %s", rec.Code, rec.Body)
		}
	})
}

func TestVerifyErrors(t *testing.T) {
	s := startServer(t)
	v, _ := newFreshnessVerifier(t, s, true)
	old := s.exchange(t, s.idpToken(t, "alice", false))
	s.revokeSessions(t, "alice")

	deadline := time.Now().Add(time.Second)
	var err error
	for {
		_, err = v.Verify(context.Background(), old)
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(err, middleware.ErrStale) {
		t.Errorf("stale token: got %v, want ErrStale", err)
	}
	if _, err := v.Verify(context.Background(), "x.y.z"); !errors.Is(err, middleware.ErrInvalidToken) {
		t.Errorf("malformed token: got %v, want ErrInvalidToken", err)
	}
}

func TestCloseStopsStream(t *testing.T) {
	s := startServer(t)
	v, _ := newFreshnessVerifier(t, s, true)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if v.StreamConnected() {
		t.Error("the stream is still connected after Close")
	}

	// Without the stream, freshness comes from per-request reads.
	h := v.Handler(principalEcho)
	old := s.exchange(t, s.idpToken(t, "alice", false))
	s.revokeSessions(t, "alice")
	if rec := get(h, old); rec.Code != http.StatusUnauthorized {
		t.Errorf("stale token after Close: got status %d, want 401", rec.Code)
	}
}

func TestRequirePermission(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	bob := s.apiClient(t, "bob", false)
	if _, err := bob.CreateResource(ctx, client.CreateResourceRequest{Resource: "org:acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SetMember(ctx, "org:acme", "user:dev|alice", "member"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SetMember(ctx, "org:acme", "service:dev|app", "app"); err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, middleware.Config{GatehouseURL: s.url})
	alice := s.exchange(t, s.idpToken(t, "alice", false))
	app := s.apiClient(t, "app", true)
	rejected, err := client.New(s.url, client.WithToken("not-a-token"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		client     *client.Client
		permission string
		resource   string
		want       int
	}{
		{"allowed", app, "view", "org:acme", http.StatusOK},
		{"denied", app, "manage", "org:acme", http.StatusForbidden},
		{"unknown resource", app, "view", "org:nope", http.StatusForbidden},
		{"invalid resource", app, "view", "nope", http.StatusForbidden},
		{"empty resource", app, "view", "", http.StatusForbidden},
		{"client token rejected", rejected, "view", "org:acme", http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require := middleware.RequirePermission(tt.client, tt.permission, func(*http.Request) string { return tt.resource })
			rec := get(v.Handler(require(principalEcho)), alice)
			if rec.Code != tt.want {
				t.Errorf("got status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
		})
	}

	t.Run("without Handler", func(t *testing.T) {
		require := middleware.RequirePermission(app, "view", func(*http.Request) string { return "org:acme" })
		if rec := get(require(principalEcho), alice); rec.Code != http.StatusInternalServerError {
			t.Errorf("got status %d, want 500", rec.Code)
		}
	})
}

func splitToken(t *testing.T, token string) (header, payload, signature string) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	return parts[0], parts[1], parts[2]
}

func decodeSegment(t *testing.T, segment string) []byte {
	t.Helper()
	data, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func encodeSegment(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// flipLastChar changes the last character of a base64url segment, which
// changes the decoded bytes.
func flipLastChar(s string) string {
	last := s[len(s)-1]
	replacement := byte('A')
	if last == 'A' {
		replacement = 'Q'
	}
	return s[:len(s)-1] + string(replacement)
}
