package integration

// The tests in this file check Gatehouse's own tokens end to end. They
// cover token exchange (RFC 8693), auth versions and stale tokens, session
// revocation, introspection (RFC 7662), and the auth version endpoint with
// its event stream. On PostgreSQL, they also run two instances that share
// versions and signing keys. Each test runs on memory and, when
// GATEHOUSE_TEST_DATABASE_URL is set, on a PostgreSQL database of its own.
//
// Every relationship change raises the affected principals' versions twice:
// once before the write and once after it. A test therefore never expects a
// particular version after a change, only a higher one.

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gatehouse-authz/gatehouse/internal/config"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/server"
	"github.com/gatehouse-authz/gatehouse/internal/store"
	"github.com/gatehouse-authz/gatehouse/internal/tokens"
)

// Values of RFC 8693 and of the servers these tests start.
const (
	exGrantType     = "urn:ietf:params:oauth:grant-type:token-exchange"
	exAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	exGateway       = "gw"
	exAuditor       = "auditor"
	exFormType      = "application/x-www-form-urlencoded"
	exCrossInstance = time.Second

	// exStreamDeadline bounds the wait for an auth-version event on the
	// instance that made the change. It is generous because -race on a
	// loaded machine slows delivery, and a missing event still fails.
	exStreamDeadline = 5 * time.Second
)

// exOptions configures a server started by exStart.
type exOptions struct {
	// postgresURL selects the Postgres datastore on that database, which
	// the server migrates. Empty means memory.
	postgresURL string

	// issuers are trusted in addition to the dev issuer.
	issuers []config.Issuer

	// tokenIssuer is the "iss" of Gatehouse's tokens. Empty means the
	// server's own URL, the default of Dev.
	tokenIssuer string
}

// exStart starts a dev-mode server with service:dev|gw as gateway and
// user:dev|auditor as platform auditor, and stops it when the test ends.
func exStart(t *testing.T, opts exOptions) *gatehouse {
	t.Helper()
	return runGatehouse(t, server.Config{
		Issuers:          opts.issuers,
		Gateways:         []string{"service:dev|" + exGateway},
		PlatformAuditors: []string{"user:dev|" + exAuditor},
		Tokens:           config.Tokens{Issuer: opts.tokenIssuer},
	}, opts.postgresURL)
}

// exForEachDatastore runs test on memory and on a fresh PostgreSQL
// database; dbURL is empty for memory.
func exForEachDatastore(t *testing.T, test func(t *testing.T, dbURL string)) {
	t.Run("memory", func(t *testing.T) { test(t, "") })
	t.Run("postgres", func(t *testing.T) { test(t, pgtest.NewDatabase(t)) })
}

// exIdPToken returns an access token of iss for subject, with claims
// changed by edit. The "scope" claim marks it as an access token, since
// the test issuer's typ is "JWT".
func exIdPToken(t *testing.T, iss *testIssuer, subject string, edit func(map[string]any)) string {
	t.Helper()
	return iss.token(t, subject, func(c map[string]any) {
		c["scope"] = "gatehouse"
		edit(c)
	})
}

// exExchangeForm returns the form of a valid exchange of subjectToken.
func exExchangeForm(subjectToken string) url.Values {
	return url.Values{
		"grant_type":         {exGrantType},
		"subject_token":      {subjectToken},
		"subject_token_type": {exAccessToken},
	}
}

// exPostForm posts body as a form to path, with a bearer token unless
// token is empty.
func (g *gatehouse) exPostForm(t *testing.T, path, token, body string) response {
	t.Helper()
	return g.send(t, request{Method: http.MethodPost, Path: path, Token: token, Body: body, ContentType: exFormType})
}

// exTokenResponse is the body of a successful POST /oauth2/token.
type exTokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
}

// exExchangeResponse exchanges subjectToken and fails unless Gatehouse
// responds 200.
func (g *gatehouse) exExchangeResponse(t *testing.T, subjectToken string) exTokenResponse {
	t.Helper()
	r := g.exPostForm(t, "/oauth2/token", "", exExchangeForm(subjectToken).Encode())
	wantStatus(t, r, http.StatusOK)
	var out exTokenResponse
	decodeJSON(t, r, &out)
	return out
}

// exExchange returns a Gatehouse token for the principal of subjectToken.
func (g *gatehouse) exExchange(t *testing.T, subjectToken string) string {
	t.Helper()
	return g.exExchangeResponse(t, subjectToken).AccessToken
}

// exSession is a user with a dev IdP token and a Gatehouse token exchanged
// from it.
type exSession struct {
	*caller
	idpToken string
}

// exUser returns user:dev|<name> acting with a freshly exchanged Gatehouse
// token.
func (g *gatehouse) exUser(t *testing.T, name string) *exSession {
	t.Helper()
	c := g.user(t, name)
	s := &exSession{caller: c, idpToken: c.token}
	s.token = g.exExchange(t, s.idpToken)
	return s
}

// reexchange replaces the session's Gatehouse token with a new one.
func (s *exSession) reexchange(t *testing.T) {
	t.Helper()
	s.token = s.g.exExchange(t, s.idpToken)
}

// exJWT is the decoded, unverified header and claims of a compact JWT.
type exJWT struct {
	Header map[string]any
	Claims map[string]any
}

// exDecode decodes token without verifying it.
func exDecode(t *testing.T, token string) exJWT {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	var out exJWT
	for i, dst := range []*map[string]any{&out.Header, &out.Claims} {
		data, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("decode token part %d: %v", i, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.UseNumber()
		if err := dec.Decode(dst); err != nil {
			t.Fatalf("parse token part %d: %v", i, err)
		}
	}
	return out
}

// exInt returns the integer claim name, failing when it is absent or not
// an integer.
func (j exJWT) exInt(t *testing.T, name string) int64 {
	t.Helper()
	n, ok := j.Claims[name].(json.Number)
	if !ok {
		t.Fatalf("claim %q is %v (%T), want an integer", name, j.Claims[name], j.Claims[name])
	}
	v, err := n.Int64()
	if err != nil {
		t.Fatalf("claim %q: %v", name, err)
	}
	return v
}

// exMe is the body of GET /v1/me.
type exMe struct {
	Principal string `json:"principal"`
	Issuer    string `json:"issuer"`
	Subject   string `json:"subject"`
	Tenant    string `json:"tenant"`
}

// exWantAccepted fails unless GET /v1/me on g accepts token as principal,
// issued by Gatehouse at issuer.
func exWantAccepted(t *testing.T, g *gatehouse, token, principal, issuer string) {
	t.Helper()
	r := g.send(t, request{Method: http.MethodGet, Path: "/v1/me", Token: token})
	wantStatus(t, r, http.StatusOK)
	var me exMe
	decodeJSON(t, r, &me)
	if me.Principal != principal || me.Issuer != issuer {
		t.Errorf("GET /v1/me: principal %q issuer %q, want %q and %q", me.Principal, me.Issuer, principal, issuer)
	}
}

// exWantRejected fails unless GET /v1/me on g rejects token with 401 and
// a Bearer challenge with error="invalid_token". It returns the response.
func exWantRejected(t *testing.T, g *gatehouse, token string) response {
	t.Helper()
	r := g.send(t, request{Method: http.MethodGet, Path: "/v1/me", Token: token})
	wantProblem(t, r, http.StatusUnauthorized)
	if challenge := r.header.Get("WWW-Authenticate"); !strings.Contains(challenge, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate %q, want error=\"invalid_token\"", challenge)
	}
	return r
}

// exVersion returns principal's auth version as read by the caller with
// token, failing unless Gatehouse responds 200.
func exVersion(t *testing.T, g *gatehouse, token, principal string) int64 {
	t.Helper()
	r := g.send(t, request{Method: http.MethodGet, Path: exPrincipalPath(principal) + "/auth-version", Token: token})
	wantStatus(t, r, http.StatusOK)
	var out struct {
		Principal string `json:"principal"`
		Version   int64  `json:"version"`
	}
	decodeJSON(t, r, &out)
	if out.Principal != principal {
		t.Errorf("auth-version of %s names %q", principal, out.Principal)
	}
	return out.Version
}

// exPrincipalPath returns /v1/principals/{principal}.
func exPrincipalPath(principal string) string {
	return "/v1/principals/" + url.PathEscape(principal)
}

// exAuditCount returns how many events with action the platform auditor
// reads across all chains.
func exAuditCount(t *testing.T, g *gatehouse, action string) int {
	t.Helper()
	return len(g.user(t, exAuditor).auditEvents(t, "action="+url.QueryEscape(action)))
}

func TestExchangeIssuesGatehouseToken(t *testing.T) {
	exForEachDatastore(t, func(t *testing.T, dbURL string) {
		iss := newTestIssuer(t)
		g := exStart(t, exOptions{postgresURL: dbURL, issuers: []config.Issuer{iss.config()}})
		alice := g.user(t, "alice")

		before := time.Now().Truncate(time.Second)
		out := g.exExchangeResponse(t, alice.token)
		if out.IssuedTokenType != exAccessToken || out.TokenType != "Bearer" {
			t.Errorf("issued_token_type %q token_type %q, want %q and Bearer", out.IssuedTokenType, out.TokenType, exAccessToken)
		}
		if out.ExpiresIn <= 0 || out.ExpiresIn > int64(tokens.DefaultTTL/time.Second) {
			t.Errorf("expires_in %d, want 1 to %d", out.ExpiresIn, int64(tokens.DefaultTTL/time.Second))
		}

		tok := exDecode(t, out.AccessToken)
		idp := exDecode(t, alice.token)
		if tok.Header["typ"] != "at+jwt" || tok.Header["alg"] != "ES256" {
			t.Errorf("header typ %v alg %v, want at+jwt and ES256", tok.Header["typ"], tok.Header["alg"])
		}
		kid, _ := tok.Header["kid"].(string)
		if kid == "" {
			t.Fatalf("header has no kid: %v", tok.Header)
		}

		// The key id is published, and discovery points at the same URLs.
		r := g.send(t, request{Method: http.MethodGet, Path: "/.well-known/jwks.json"})
		wantStatus(t, r, http.StatusOK)
		var jwks jose.JSONWebKeySet
		if err := json.Unmarshal(r.body, &jwks); err != nil {
			t.Fatalf("parse JWKS: %v", err)
		}
		if keys := jwks.Key(kid); len(keys) != 1 || keys[0].Algorithm != "ES256" || !keys[0].IsPublic() {
			t.Errorf("JWKS %s has %d public ES256 keys with kid %q, want 1", r.body, len(keys), kid)
		}
		r = g.send(t, request{Method: http.MethodGet, Path: "/.well-known/openid-configuration"})
		wantStatus(t, r, http.StatusOK)
		var discovery struct {
			Issuer                string `json:"issuer"`
			JWKSURI               string `json:"jwks_uri"`
			TokenEndpoint         string `json:"token_endpoint"`
			IntrospectionEndpoint string `json:"introspection_endpoint"`
		}
		if err := json.Unmarshal(r.body, &discovery); err != nil {
			t.Fatalf("parse discovery: %v", err)
		}
		if discovery.Issuer != g.url || discovery.JWKSURI != g.url+"/.well-known/jwks.json" ||
			discovery.TokenEndpoint != g.url+"/oauth2/token" || discovery.IntrospectionEndpoint != g.url+"/oauth2/introspect" {
			t.Errorf("discovery %s does not match the server URL %s", r.body, g.url)
		}

		// Claims.
		if tok.Claims["iss"] != g.url {
			t.Errorf("iss %v, want %s", tok.Claims["iss"], g.url)
		}
		if tok.Claims["sub"] != "user:dev|alice" || tok.Claims["client_id"] != "user:dev|alice" {
			t.Errorf("sub %v client_id %v, want user:dev|alice for both", tok.Claims["sub"], tok.Claims["client_id"])
		}
		// RFC 7519, section 4.1.3: a single audience may be a string.
		if aud := tok.Claims["aud"]; aud != "gatehouse" && !slices.Equal(asSlice(aud), []any{"gatehouse"}) {
			t.Errorf("aud %v, want gatehouse", aud)
		}
		iat, exp := tok.exInt(t, "iat"), tok.exInt(t, "exp")
		if iat < before.Unix() || iat > time.Now().Unix() {
			t.Errorf("iat %d, want between %d and now", iat, before.Unix())
		}
		if exp-iat != int64(tokens.DefaultTTL/time.Second) {
			t.Errorf("exp - iat = %ds, want %v", exp-iat, tokens.DefaultTTL)
		}
		if exp > idp.exInt(t, "exp") {
			t.Errorf("exp %d is after the subject token's exp %d", exp, idp.exInt(t, "exp"))
		}
		if jti, _ := tok.Claims["jti"].(string); jti == "" || jti == idp.Claims["jti"] {
			t.Errorf("jti %q, want a new non-empty id", jti)
		}
		if av := tok.exInt(t, "av"); av != 1 {
			t.Errorf("av %d, want 1 for a principal that never changed", av)
		}

		exWantAccepted(t, g, out.AccessToken, "user:dev|alice", g.url)

		// Each exchange mints a new token.
		if again := g.exExchange(t, alice.token); again == out.AccessToken {
			t.Error("a second exchange returned the same token")
		}

		// The exchange is recorded in the platform chain.
		events := g.user(t, exAuditor).auditEvents(t, "action=token.exchange&actor="+url.QueryEscape("user:dev|alice"))
		if len(events) != 2 {
			t.Fatalf("%d token.exchange events for two exchanges, want 2: %+v", len(events), events)
		}
		auditWantEvent(t, events[0], auditEvent{
			Org:      "platform",
			Actor:    auditActor{Principal: "user:dev|alice", Issuer: g.url + "/dev/oidc", TokenID: auditTokenID(t, alice.token)},
			Action:   "token.exchange",
			Resource: "user:dev|alice",
			After: map[string]string{
				"token_id":     auditTokenID(t, out.AccessToken),
				"auth_version": "1",
				"expires_at":   time.Unix(exp, 0).UTC().Format(time.RFC3339),
			},
			ClientIP:  "127.0.0.1",
			UserAgent: events[0].UserAgent,
			RequestID: events[0].RequestID,
			Outcome:   "applied",
		})

		// A subject token that expires before the TTL caps the new token.
		short := exIdPToken(t, iss, "alice", func(c map[string]any) { c["exp"] = time.Now().Add(5 * time.Minute).Unix() })
		capped := exDecode(t, g.exExchange(t, short))
		if got, want := capped.exInt(t, "exp"), exDecode(t, short).exInt(t, "exp"); got != want {
			t.Errorf("token from a subject token that expires in 5m: exp %d, want the subject's exp %d", got, want)
		}
		if capped.Claims["sub"] != "user:test|alice" {
			t.Errorf("sub %v, want user:test|alice", capped.Claims["sub"])
		}
	})
}

func TestExchangeRejectsBadRequests(t *testing.T) {
	exForEachDatastore(t, func(t *testing.T, dbURL string) {
		iss := newTestIssuer(t)
		g := exStart(t, exOptions{postgresURL: dbURL, issuers: []config.Issuer{iss.config()}})
		alice := g.user(t, "alice")
		gatehouseToken := g.exExchange(t, alice.token)
		exchangesBefore := exAuditCount(t, g, "token.exchange")

		expired := exIdPToken(t, iss, "alice", func(c map[string]any) {
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
			c["nbf"] = time.Now().Add(-2 * time.Hour).Unix()
			c["exp"] = time.Now().Add(-time.Hour).Unix()
		})
		form := func(edit func(url.Values)) string {
			v := exExchangeForm(alice.token)
			edit(v)
			return v.Encode()
		}

		cases := []struct {
			name        string
			body        string
			contentType string // default: form
			query       string
			status      int
			oauthError  string
		}{
			{name: "wrong grant_type", body: form(func(v url.Values) { v.Set("grant_type", "client_credentials") }),
				status: http.StatusBadRequest, oauthError: "unsupported_grant_type"},
			{name: "missing subject_token", body: form(func(v url.Values) { v.Del("subject_token") }),
				status: http.StatusBadRequest, oauthError: "invalid_request"},
			{name: "empty subject_token", body: form(func(v url.Values) { v.Set("subject_token", "") }),
				status: http.StatusBadRequest, oauthError: "invalid_request"},
			{name: "missing subject_token_type", body: form(func(v url.Values) { v.Del("subject_token_type") }),
				status: http.StatusBadRequest, oauthError: "invalid_request"},
			{name: "id_token subject_token_type", body: form(func(v url.Values) { v.Set("subject_token_type", "urn:ietf:params:oauth:token-type:id_token") }),
				status: http.StatusBadRequest, oauthError: "invalid_request"},
			{name: "refresh_token requested", body: form(func(v url.Values) { v.Set("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token") }),
				status: http.StatusBadRequest, oauthError: "invalid_request"},
			{name: "actor_token", body: form(func(v url.Values) { v.Set("actor_token", alice.token) }),
				status: http.StatusBadRequest, oauthError: "invalid_request"},
			{name: "unknown audience", body: form(func(v url.Values) { v.Set("audience", "billing") }),
				status: http.StatusBadRequest, oauthError: "invalid_target"},
			{name: "garbage subject token", body: form(func(v url.Values) { v.Set("subject_token", "garbage") }),
				status: http.StatusBadRequest, oauthError: "invalid_grant"},
			{name: "expired subject token", body: form(func(v url.Values) { v.Set("subject_token", expired) }),
				status: http.StatusBadRequest, oauthError: "invalid_grant"},
			{name: "untrusted issuer", body: form(func(v url.Values) {
				v.Set("subject_token", exIdPToken(t, iss, "alice", func(c map[string]any) { c["iss"] = "http://127.0.0.1:1/other" }))
			}), status: http.StatusBadRequest, oauthError: "invalid_grant"},
			{name: "gatehouse token as subject", body: form(func(v url.Values) { v.Set("subject_token", gatehouseToken) }),
				status: http.StatusBadRequest, oauthError: "invalid_grant"},
			{name: "JSON body", body: `{"grant_type":"` + exGrantType + `","subject_token":"` + alice.token + `","subject_token_type":"` + exAccessToken + `"}`,
				contentType: "application/json", status: http.StatusBadRequest, oauthError: "invalid_request"},
			{name: "form without content type", body: form(func(url.Values) {}),
				contentType: "text/plain", status: http.StatusBadRequest, oauthError: "invalid_request"},
			{name: "duplicated grant_type", body: form(func(url.Values) {}) + "&grant_type=" + url.QueryEscape(exGrantType),
				status: http.StatusBadRequest, oauthError: "invalid_request"},
			{name: "duplicated subject_token", body: form(func(url.Values) {}) + "&subject_token=" + url.QueryEscape(alice.token),
				status: http.StatusBadRequest, oauthError: "invalid_request"},
			{name: "parameters in the URL", body: form(func(url.Values) {}), query: "subject_token=x",
				status: http.StatusBadRequest, oauthError: "invalid_request"},
			{name: "malformed form", body: "grant_type=%zz",
				status: http.StatusBadRequest, oauthError: "invalid_request"},
			// NOTE: a body over 16 KiB gets 413, not the 400 of RFC 6749,
			// section 5.2, but still with an OAuth error body.
			{name: "oversized body", body: form(func(v url.Values) { v.Set("padding", strings.Repeat("p", 17<<10)) }),
				status: http.StatusRequestEntityTooLarge, oauthError: "invalid_request"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				contentType := cmp.Or(c.contentType, exFormType)
				path := "/oauth2/token"
				if c.query != "" {
					path += "?" + c.query
				}
				r := g.send(t, request{Method: http.MethodPost, Path: path, Body: c.body, ContentType: contentType})
				wantStatus(t, r, c.status)
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q, want application/json", ct)
				}
				if cc := r.header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control %q, want no-store", cc)
				}
				var out struct {
					Error       string `json:"error"`
					Description string `json:"error_description"`
				}
				decodeJSON(t, r, &out)
				if out.Error != c.oauthError {
					t.Errorf("error %q, want %q", out.Error, c.oauthError)
				}
				if out.Description == "" {
					t.Error("error_description is empty")
				}
				if strings.Contains(string(r.body), "eyJ") {
					t.Errorf("error body repeats a token: %s", r.body)
				}
			})
		}

		if got := exAuditCount(t, g, "token.exchange"); got != exchangesBefore {
			t.Errorf("%d token.exchange events after the rejected requests, want %d", got, exchangesBefore)
		}
		if v := exVersion(t, g, alice.token, alice.ref); v != 1 {
			t.Errorf("alice's auth version %d after rejected exchanges, want 1", v)
		}
	})
}

// asSlice returns v as a slice, or nil when it is not one.
func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func TestExchangeStaleAfterMemberChanges(t *testing.T) {
	exForEachDatastore(t, func(t *testing.T, dbURL string) {
		g := exStart(t, exOptions{postgresURL: dbURL})
		carol := g.user(t, "carol")
		carol.create(t, "org:acme", "")
		alice, bob := g.exUser(t, "alice"), g.exUser(t, "bob")

		steps := []struct {
			name   string
			change func(t *testing.T)
		}{
			{"added as member", func(t *testing.T) { carol.setRole(t, "org:acme", alice.ref, "member") }},
			{"role changed to admin", func(t *testing.T) { carol.setRole(t, "org:acme", alice.ref, "admin") }},
			{"removed", func(t *testing.T) { carol.removeRole(t, "org:acme", alice.ref) }},
		}
		for _, step := range steps {
			t.Run(step.name, func(t *testing.T) {
				old := alice.token
				exWantAccepted(t, g, old, alice.ref, g.url)
				step.change(t)

				// The very next request fails: no cache or delay.
				exWantRejected(t, g, old)
				alice.reexchange(t)
				exWantAccepted(t, g, alice.token, alice.ref, g.url)
				exWantAccepted(t, g, bob.token, bob.ref, g.url)
			})
		}
		if alice.allowed(t, "", "view", "org:acme") {
			t.Error("alice's new token can view org:acme after her removal")
		}
	})
}

func TestExchangeStaleThroughGroups(t *testing.T) {
	exForEachDatastore(t, func(t *testing.T, dbURL string) {
		g := exStart(t, exOptions{postgresURL: dbURL})
		carol := g.user(t, "carol")
		carol.create(t, "org:acme", "")
		carol.create(t, "workspace:eng", "org:acme")
		carol.create(t, "group:devs", "org:acme")
		carol.create(t, "group:core", "org:acme")
		carol.setRole(t, "group:core", "user:dev|alice", "member")
		carol.setRole(t, "group:devs", "user:dev|dave", "member")
		carol.setRole(t, "group:devs", "group:core", "member")
		alice, bob, dave := g.exUser(t, "alice"), g.exUser(t, "bob"), g.exUser(t, "dave")

		// A role for devs reaches alice through core, and dave directly.
		carol.setRole(t, "workspace:eng", "group:devs", "viewer")
		exWantRejected(t, g, alice.token)
		exWantRejected(t, g, dave.token)
		exWantAccepted(t, g, bob.token, bob.ref, g.url)
		alice.reexchange(t)
		dave.reexchange(t)
		if !alice.allowed(t, "", "view", "workspace:eng") {
			t.Fatal("alice cannot view workspace:eng through core and devs")
		}

		// Removing core from devs changes alice's access but not dave's.
		carol.removeRole(t, "group:devs", "group:core")
		exWantRejected(t, g, alice.token)
		exWantAccepted(t, g, dave.token, dave.ref, g.url)
		exWantAccepted(t, g, bob.token, bob.ref, g.url)
		alice.reexchange(t)
		if alice.allowed(t, "", "view", "workspace:eng") {
			t.Error("alice can still view workspace:eng after core left devs")
		}
	})
}

func TestExchangeStaleAfterDelete(t *testing.T) {
	exForEachDatastore(t, func(t *testing.T, dbURL string) {
		g := exStart(t, exOptions{postgresURL: dbURL})
		carol := g.user(t, "carol")
		carol.create(t, "org:acme", "")
		carol.create(t, "workspace:eng", "org:acme")
		carol.create(t, "workspace:ops", "org:acme")
		carol.create(t, "group:devs", "org:acme")
		carol.setRole(t, "workspace:eng", "user:dev|alice", "editor")
		carol.setRole(t, "group:devs", "user:dev|dave", "member")
		carol.setRole(t, "workspace:ops", "group:devs", "viewer")
		alice, bob, dave := g.exUser(t, "alice"), g.exUser(t, "bob"), g.exUser(t, "dave")

		wantStatus(t, carol.do(t, http.MethodDelete, resourcePath("workspace:eng"), nil), http.StatusNoContent)
		exWantRejected(t, g, alice.token)
		exWantAccepted(t, g, dave.token, dave.ref, g.url)
		exWantAccepted(t, g, bob.token, bob.ref, g.url)

		// Deleting a group makes its members' tokens stale.
		wantStatus(t, carol.do(t, http.MethodDelete, resourcePath("group:devs"), nil), http.StatusNoContent)
		exWantRejected(t, g, dave.token)
		exWantAccepted(t, g, bob.token, bob.ref, g.url)
	})
}

// TestExchangeStaleAfterOwnCreate documents that creating a resource makes
// the creator's own token stale: the creator gains a role, so its version
// rises like anyone else's. A client must exchange again after it creates
// something.
func TestExchangeStaleAfterOwnCreate(t *testing.T) {
	exForEachDatastore(t, func(t *testing.T, dbURL string) {
		g := exStart(t, exOptions{postgresURL: dbURL})
		alice, bob := g.exUser(t, "alice"), g.exUser(t, "bob")

		alice.create(t, "org:alice-org", "")
		exWantRejected(t, g, alice.token)
		exWantAccepted(t, g, bob.token, bob.ref, g.url)

		alice.reexchange(t)
		if !alice.allowed(t, "", "manage", "org:alice-org") {
			t.Error("alice's new token cannot manage the org she created")
		}
	})
}

// TestExchangeStaleTokenExplained checks that the error_description of a
// stale token's 401 asks the client to exchange again. Every other token
// failure gets one uniform message.
func TestExchangeStaleTokenExplained(t *testing.T) {
	g := exStart(t, exOptions{})
	carol := g.user(t, "carol")
	carol.create(t, "org:acme", "")
	alice := g.exUser(t, "alice")
	carol.setRole(t, "org:acme", alice.ref, "member")

	r := exWantRejected(t, g, alice.token)
	challenge := r.header.Get("WWW-Authenticate")
	if !strings.Contains(challenge, "stale") || !strings.Contains(challenge, "exchange") {
		t.Errorf("WWW-Authenticate %q: error_description does not say that the token is stale and to exchange a new one", challenge)
	}
	var p problemDoc
	decodeJSON(t, r, &p)
	if !strings.Contains(p.Detail, "stale") {
		t.Errorf("problem detail %q does not say that the token is stale", p.Detail)
	}

	// A token that fails for any other reason keeps the uniform message.
	r = exWantRejected(t, g, exForeignToken(t, g.url, alice.ref, "unknown-kid"))
	if challenge := r.header.Get("WWW-Authenticate"); strings.Contains(challenge, "stale") {
		t.Errorf("WWW-Authenticate %q of a forged token mentions staleness", challenge)
	}
}

func TestRevokeSessions(t *testing.T) {
	exForEachDatastore(t, func(t *testing.T, dbURL string) {
		g := exStart(t, exOptions{postgresURL: dbURL})
		carol := g.user(t, "carol")
		carol.create(t, "org:acme", "")
		carol.setRole(t, "org:acme", "user:dev|alice", "member")
		carol.setRole(t, "org:acme", "user:dev|bob", "member")
		carol.setRole(t, "org:acme", "user:dev|dave", "admin")
		alice, bob, dave, erin := g.exUser(t, "alice"), g.exUser(t, "bob"), g.exUser(t, "dave"), g.exUser(t, "erin")
		revokePath := exPrincipalPath(alice.ref) + "/revoke-sessions"
		revokedBefore := exAuditCount(t, g, "sessions.revoke")

		// Strangers and members without manage get 404 and change nothing.
		for _, c := range []*exSession{erin, bob} {
			wantProblem(t, c.do(t, http.MethodPost, revokePath, nil), http.StatusNotFound)
		}
		exWantAccepted(t, g, alice.token, alice.ref, g.url)

		// Alice revokes her own sessions.
		r := alice.do(t, http.MethodPost, revokePath+"?reason=lost+laptop", nil)
		wantStatus(t, r, http.StatusOK)
		var out struct {
			Principal string `json:"principal"`
			Version   int64  `json:"version"`
		}
		decodeJSON(t, r, &out)
		if out.Principal != alice.ref || out.Version != exVersion(t, g, alice.idpToken, alice.ref) {
			t.Errorf("revoke-sessions returned %+v, want %s at her current version", out, alice.ref)
		}
		exWantRejected(t, g, alice.token)
		exWantAccepted(t, g, bob.token, bob.ref, g.url)

		// An admin of an org alice belongs to revokes them too.
		alice.reexchange(t)
		wantStatus(t, dave.do(t, http.MethodPost, revokePath, nil), http.StatusOK)
		exWantRejected(t, g, alice.token)
		exWantAccepted(t, g, dave.token, dave.ref, g.url)

		// Invalid principals.
		wantProblem(t, dave.do(t, http.MethodPost, exPrincipalPath("org:acme")+"/revoke-sessions", nil), http.StatusBadRequest)

		// Both revocations are recorded: the admin's in the org's chain,
		// alice's own in the platform chain; the rejected ones nowhere.
		orgEvents := carol.auditEvents(t, "org=org:acme&action=sessions.revoke")
		if len(orgEvents) != 1 {
			t.Fatalf("%d sessions.revoke events in org:acme, want 1: %+v", len(orgEvents), orgEvents)
		}
		if e := orgEvents[0]; e.Actor.Principal != dave.ref || e.Resource != alice.ref || e.Subject != alice.ref || e.Outcome != "applied" {
			t.Errorf("org:acme sessions.revoke event %+v, want dave revoking alice, applied", e)
		}
		all := g.user(t, exAuditor).auditEvents(t, "action=sessions.revoke")
		if len(all) != revokedBefore+2 {
			t.Fatalf("%d sessions.revoke events in all chains, want %d", len(all), revokedBefore+2)
		}
		self := all[len(all)-2]
		if self.Org != "platform" || self.Actor.Principal != alice.ref || self.Resource != alice.ref || self.Reason != "lost laptop" || self.Outcome != "applied" {
			t.Errorf("self sessions.revoke event %+v, want alice revoking herself in the platform chain, reason \"lost laptop\", applied", self)
		}
	})
}

// exIntrospection is the body of POST /oauth2/introspect.
type exIntrospection struct {
	Active    bool     `json:"active"`
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	ClientID  string   `json:"client_id"`
	TokenType string   `json:"token_type"`
	Expiry    int64    `json:"exp"`
	TokenID   string   `json:"jti"`
	Version   int64    `json:"av"`
	Audience  []string `json:"aud"`
}

// exIntrospect introspects token as the caller with callerToken and fails
// unless Gatehouse responds 200.
func exIntrospect(t *testing.T, g *gatehouse, callerToken, token string) exIntrospection {
	t.Helper()
	r := g.exPostForm(t, "/oauth2/introspect", callerToken, url.Values{"token": {token}}.Encode())
	wantStatus(t, r, http.StatusOK)
	var out exIntrospection
	decodeJSON(t, r, &out)
	return out
}

// exForeignToken returns a token that claims to be Gatehouse's for
// principal, signed by a new ES256 key under kid.
func exForeignToken(t *testing.T, issuer, principal, kid string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatalf("new signer: %v", err)
	}
	now := time.Now()
	claims := map[string]any{
		"iss": issuer, "sub": principal, "client_id": principal, "aud": []string{"gatehouse"},
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": "forged", "av": 1000,
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return token
}

func TestIntrospection(t *testing.T) {
	exForEachDatastore(t, func(t *testing.T, dbURL string) {
		iss := newTestIssuer(t)
		g := exStart(t, exOptions{postgresURL: dbURL, issuers: []config.Issuer{iss.config()}})
		carol := g.user(t, "carol")
		carol.create(t, "org:acme", "")
		alice := g.exUser(t, "alice")
		gateway := g.service(t, exGateway)

		fresh := exIntrospect(t, g, gateway.token, alice.token)
		claims := exDecode(t, alice.token)
		want := exIntrospection{
			Active: true, Issuer: g.url, Subject: alice.ref, ClientID: alice.ref, TokenType: "Bearer",
			Expiry: claims.exInt(t, "exp"), TokenID: claims.Claims["jti"].(string), Version: 1, Audience: []string{"gatehouse"},
		}
		if !exSameIntrospection(fresh, want) {
			t.Errorf("introspection of a fresh token: got %+v, want %+v", fresh, want)
		}

		// A subject token that expires in 2s gives a token that does too.
		soon := exIdPToken(t, iss, "erin", func(c map[string]any) { c["exp"] = time.Now().Add(2 * time.Second).Unix() })
		expiring := g.exExchange(t, soon)
		if got := exIntrospect(t, g, gateway.token, expiring); !got.Active {
			t.Errorf("introspection of a token before its exp: %+v, want active", got)
		}

		kid, _ := claims.Header["kid"].(string)
		stale := alice.token
		carol.setRole(t, "org:acme", alice.ref, "member")
		time.Sleep(time.Until(time.Unix(exDecode(t, expiring).exInt(t, "exp"), 0)) + 100*time.Millisecond)

		cases := []struct {
			name  string
			token string
		}{
			{"stale", stale},
			{"expired", expiring},
			{"garbage", "garbage"},
			{"dev IdP token", alice.idpToken},
			{"unknown key", exForeignToken(t, g.url, alice.ref, "unknown-kid")},
			{"other key same kid", exForeignToken(t, g.url, alice.ref, kid)},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := g.exPostForm(t, "/oauth2/introspect", gateway.token, url.Values{"token": {c.token}}.Encode())
				wantStatus(t, r, http.StatusOK)
				if body := strings.TrimSpace(string(r.body)); body != `{"active":false}` {
					t.Errorf("introspection body %s, want {\"active\":false} and nothing else", body)
				}
			})
		}

		// The caller must authenticate, and name exactly one token.
		r := g.exPostForm(t, "/oauth2/introspect", "", url.Values{"token": {alice.token}}.Encode())
		wantProblem(t, r, http.StatusUnauthorized)
		r = g.exPostForm(t, "/oauth2/introspect", gateway.token, "")
		wantStatus(t, r, http.StatusBadRequest)
		r = g.exPostForm(t, "/oauth2/introspect", gateway.token, url.Values{"token": {alice.token, alice.token}}.Encode())
		wantStatus(t, r, http.StatusBadRequest)
	})
}

// exSameIntrospection reports whether a and b are equal.
func exSameIntrospection(a, b exIntrospection) bool {
	return a.Active == b.Active && a.Issuer == b.Issuer && a.Subject == b.Subject && a.ClientID == b.ClientID &&
		a.TokenType == b.TokenType && a.Expiry == b.Expiry && a.TokenID == b.TokenID && a.Version == b.Version &&
		slices.Equal(a.Audience, b.Audience)
}

func TestAuthVersionEndpoint(t *testing.T) {
	exForEachDatastore(t, func(t *testing.T, dbURL string) {
		g := exStart(t, exOptions{postgresURL: dbURL})
		carol := g.user(t, "carol")
		carol.create(t, "org:acme", "")
		alice, bob := g.exUser(t, "alice"), g.user(t, "bob")
		gateway := g.service(t, exGateway)
		path := exPrincipalPath(alice.ref) + "/auth-version"

		if v := exVersion(t, g, alice.token, alice.ref); v != 1 {
			t.Errorf("alice reads her version %d, want 1", v)
		}
		if v := exVersion(t, g, gateway.token, alice.ref); v != 1 {
			t.Errorf("the gateway reads alice's version %d, want 1", v)
		}
		wantProblem(t, bob.do(t, http.MethodGet, path, nil), http.StatusForbidden)
		wantProblem(t, carol.do(t, http.MethodGet, path, nil), http.StatusForbidden)
		wantProblem(t, bob.do(t, http.MethodGet, exPrincipalPath("org:acme")+"/auth-version", nil), http.StatusBadRequest)
		wantProblem(t, g.send(t, request{Method: http.MethodGet, Path: path}), http.StatusUnauthorized)

		carol.setRole(t, "org:acme", alice.ref, "member")
		after := exVersion(t, g, gateway.token, alice.ref)
		if after <= 1 {
			t.Errorf("alice's version %d after a change, want above 1", after)
		}
		if got := exIntrospect(t, g, gateway.token, g.exExchange(t, alice.idpToken)).Version; got != after {
			t.Errorf("introspection of a new token reports av %d, want %d", got, after)
		}
	})
}

// exStream is an open GET /v1/auth-versions/stream. Its lines arrive on
// lines, which is closed when the stream ends.
type exStream struct {
	lines <-chan string
}

// exOpenStream opens the event stream as the caller with token, waits for
// the connected comment, and closes the stream when the test ends.
func exOpenStream(t *testing.T, g *gatehouse, token string) *exStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url+"/v1/auth-versions/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("open stream: status %d Content-Type %q, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		defer resp.Body.Close()
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
	}()
	s := &exStream{lines: lines}
	if line := s.next(t, 5*time.Second); line != ": connected" {
		t.Fatalf("first stream line %q, want \": connected\"", line)
	}
	return s
}

// next returns the next line, failing when none arrives within timeout.
func (s *exStream) next(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case line, ok := <-s.lines:
		if !ok {
			t.Fatal("the stream ended")
		}
		return line
	case <-time.After(timeout):
		t.Fatalf("no stream line within %v", timeout)
	}
	return ""
}

// waitFor returns the data of the first auth-version event about principal
// that arrives before deadline, failing when none does.
func (s *exStream) waitFor(t *testing.T, principal string, deadline time.Time) map[string]any {
	t.Helper()
	event := ""
	for {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			t.Fatalf("no auth-version event for %s before the deadline", principal)
		}
		line := s.next(t, remaining)
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "auth-version":
			var data map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &data); err != nil {
				t.Fatalf("stream data %q: %v", line, err)
			}
			if data["principal"] == principal {
				return data
			}
		case line == "":
			event = ""
		}
	}
}

func TestAuthVersionStream(t *testing.T) {
	exForEachDatastore(t, func(t *testing.T, dbURL string) {
		g := exStart(t, exOptions{postgresURL: dbURL})
		carol := g.user(t, "carol")
		carol.create(t, "org:acme", "")
		alice := g.exUser(t, "alice")
		gateway := g.service(t, exGateway)

		r := g.send(t, request{Method: http.MethodGet, Path: "/v1/auth-versions/stream", Token: alice.token})
		wantProblem(t, r, http.StatusForbidden)
		wantProblem(t, carol.do(t, http.MethodGet, "/v1/auth-versions/stream", nil), http.StatusForbidden)

		stream := exOpenStream(t, g, gateway.token)
		carol.setRole(t, "org:acme", alice.ref, "member")
		data := stream.waitFor(t, alice.ref, time.Now().Add(exStreamDeadline))
		if v, _ := data["version"].(float64); v <= 1 {
			t.Errorf("event data %v, want a version above 1", data)
		}

		// Revocation is announced too.
		r = g.send(t, request{Method: http.MethodPost, Path: exPrincipalPath(alice.ref) + "/revoke-sessions", Token: alice.idpToken})
		wantStatus(t, r, http.StatusOK)
		stream.waitFor(t, alice.ref, time.Now().Add(exStreamDeadline))
	})
}

// exPollAccepted polls GET /v1/me on g with token until it is accepted,
// and fails when that takes longer than limit.
func exPollAccepted(t *testing.T, g *gatehouse, token string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		r := g.send(t, request{Method: http.MethodGet, Path: "/v1/me", Token: token})
		if r.status == http.StatusOK {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("the token is still rejected %v after it was issued: %v", limit, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exPollRejected polls GET /v1/me on g with token until it is rejected,
// and fails when that takes longer than limit.
func exPollRejected(t *testing.T, g *gatehouse, token string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		r := g.send(t, request{Method: http.MethodGet, Path: "/v1/me", Token: token})
		if r.status == http.StatusUnauthorized {
			return time.Since(start)
		}
		if r.status != http.StatusOK {
			t.Fatalf("polling with a token about to go stale: %v", r)
		}
		if time.Since(start) > limit {
			t.Fatalf("the token is still accepted %v after the change", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExchangePostgresTwoInstances(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	a := exStart(t, exOptions{postgresURL: dbURL})
	// B issues and accepts tokens under A's issuer URL, as instances
	// behind one load balancer do.
	b := exStart(t, exOptions{postgresURL: dbURL, tokenIssuer: a.url})

	alice := a.exUser(t, "alice")
	bob := a.exUser(t, "bob")
	exWantAccepted(t, b, alice.token, alice.ref, a.url)
	streamA := exOpenStream(t, a, a.service(t, exGateway).token)

	// A change on B reaches A within a second.
	carolB := b.user(t, "carol")
	carolB.create(t, "org:acme", "")
	carolB.setRole(t, "org:acme", alice.ref, "member")
	changed := time.Now()
	exWantRejected(t, b, alice.token)
	took := exPollRejected(t, a, alice.token, exCrossInstance)
	t.Logf("A rejected the stale token %v after B's change returned", took.Round(time.Millisecond))
	streamA.waitFor(t, alice.ref, changed.Add(exCrossInstance))
	exWantAccepted(t, a, bob.token, bob.ref, a.url)
	exWantAccepted(t, b, bob.token, bob.ref, a.url)

	// Key rotation on the shared database, as `gatehouse keys rotate` does.
	alice.reexchange(t)
	oldToken := alice.token
	oldKid := exDecode(t, oldToken).Header["kid"]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer st.Close()
	rotated, err := tokens.NewPostgresKeys(st.Pool).Rotate(ctx)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if rotated.ID == oldKid {
		t.Fatalf("rotation kept kid %v", oldKid)
	}

	newToken := a.exExchange(t, alice.idpToken)
	if kid := exDecode(t, newToken).Header["kid"]; kid != rotated.ID {
		t.Errorf("A signs with kid %v after the rotation, want the new key %s", kid, rotated.ID)
	}
	// NOTE: an instance reloads its keys for an unknown kid at most every
	// 100 ms, so right after a rotation B may reject the new key's tokens
	// for up to that long.
	took = exPollAccepted(t, b, newToken, exCrossInstance)
	t.Logf("B accepted a token of the new key %v after the exchange", took.Round(time.Millisecond))
	for name, g := range map[string]*gatehouse{"A": a, "B": b} {
		t.Run("verify on "+name, func(t *testing.T) {
			exWantAccepted(t, g, newToken, alice.ref, a.url)
			exWantAccepted(t, g, oldToken, alice.ref, a.url)

			r := g.send(t, request{Method: http.MethodGet, Path: "/.well-known/jwks.json"})
			wantStatus(t, r, http.StatusOK)
			var jwks jose.JSONWebKeySet
			if err := json.Unmarshal(r.body, &jwks); err != nil {
				t.Fatalf("parse JWKS: %v", err)
			}
			for _, kid := range []string{oldKid.(string), rotated.ID} {
				if len(jwks.Key(kid)) != 1 {
					t.Errorf("JWKS lacks kid %s: %s", kid, r.body)
				}
			}
		})
	}
}
