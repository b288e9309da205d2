package authn_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/config"
)

// tokenCase is a token built from the test IdP's valid claims and an
// at+jwt header, changed by edit and header.
type tokenCase struct {
	name   string
	typ    string // "typ" header; empty means at+jwt
	edit   func(now time.Time, claims map[string]any)
	reason string // substring of the error; empty means the token is valid
}

func runTokenCases(t *testing.T, cfg func(*testIdP) config.Issuer, cases []tokenCase) {
	t.Helper()
	clock := newTestClock()
	idp := newTestIdP(t)
	a := newAuthenticator(t, clock, cfg(idp))

	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			claims := idp.claims(clock.Now())
			if tt.edit != nil {
				tt.edit(clock.Now(), claims)
			}
			opts := &jose.SignerOptions{}
			if tt.typ != "" {
				opts = opts.WithType(jose.ContentType(tt.typ))
			}
			token := signToken(t, jose.RS256, &jose.JSONWebKey{Key: idp.key, KeyID: idp.kid}, claims, opts)

			_, err := a.Authenticate(context.Background(), token)
			if tt.reason == "" {
				if err != nil {
					t.Errorf("Authenticate: %v", err)
				}
				return
			}
			if !errors.Is(err, authn.ErrInvalidToken) {
				t.Fatalf("got %v, want ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("got %q, want it to contain %q", err, tt.reason)
			}
		})
	}
}

func set(name string, value any) func(time.Time, map[string]any) {
	return func(_ time.Time, c map[string]any) { c[name] = value }
}

func at(name string, offset time.Duration) func(time.Time, map[string]any) {
	return func(now time.Time, c map[string]any) { c[name] = now.Add(offset).Unix() }
}

func TestClockSkew(t *testing.T) {
	defaultSkew := func(idp *testIdP) config.Issuer { return issuerConfig(idp, "corp") }
	runTokenCases(t, defaultSkew, []tokenCase{
		{name: "nbf within default skew", edit: at("nbf", 59*time.Second)},
		{name: "nbf beyond default skew", edit: at("nbf", 61*time.Second), reason: "nbf"},
		{name: "nbf 10 minutes ahead", edit: at("nbf", 10*time.Minute), reason: "nbf"},
		{name: "iat within default skew", edit: at("iat", 59*time.Second)},
		{name: "iat beyond default skew", edit: at("iat", 61*time.Second), reason: "iat"},
		{name: "iat missing", edit: func(_ time.Time, c map[string]any) { delete(c, "iat") }},
		{name: "nbf not a number", edit: set("nbf", "soon"), reason: "unmarshal claims"},
		{name: "exp one second ahead", edit: at("exp", time.Second)},
		{name: "exp now", edit: at("exp", 0), reason: "expired"},
		{name: "exp one second ago", edit: at("exp", -time.Second), reason: "expired"},
	})

	fiveMinutes := func(idp *testIdP) config.Issuer {
		cfg := issuerConfig(idp, "corp")
		cfg.ClockSkew = config.MaxClockSkew
		return cfg
	}
	runTokenCases(t, fiveMinutes, []tokenCase{
		{name: "nbf within 5m skew", edit: at("nbf", 4*time.Minute)},
		{name: "iat within 5m skew", edit: at("iat", 4*time.Minute)},
		{name: "iat beyond 5m skew", edit: at("iat", 6*time.Minute), reason: "iat"},
		{name: "no skew for exp", edit: at("exp", -time.Second), reason: "expired"},
	})

	oneSecond := func(idp *testIdP) config.Issuer {
		cfg := issuerConfig(idp, "corp")
		cfg.ClockSkew = time.Second
		return cfg
	}
	runTokenCases(t, oneSecond, []tokenCase{
		{name: "nbf beyond 1s skew", edit: at("nbf", 2*time.Second), reason: "nbf"},
	})
}

func TestAccessTokenMarkers(t *testing.T) {
	defaults := func(idp *testIdP) config.Issuer { return issuerConfig(idp, "corp") }
	runTokenCases(t, defaults, []tokenCase{
		{name: "typ at+jwt"},
		{name: "typ application/at+jwt", typ: "application/at+jwt"},
		{name: "typ AT+JWT", typ: "AT+JWT"},
		{name: "typ JWT with scp", typ: "JWT", edit: set("scp", "read")},
		{name: "typ JWT with scope", typ: "JWT", edit: set("scope", "openid read")},
		{name: "typ JWT with roles", typ: "JWT", edit: set("roles", []string{"Reader"})},
		{name: "typ JWT without markers", typ: "JWT", reason: "not recognised as an access token"},
		{name: "blank typ without markers", typ: " ", reason: "not recognised as an access token"},
		{name: "null scp", typ: "JWT", edit: set("scp", nil), reason: "not recognised as an access token"},
		{name: "ID token with nonce", typ: "JWT", edit: set("nonce", "n-0S6"), reason: `ID token claim "nonce"`},
		{name: "nonce with typ at+jwt", edit: set("nonce", "n-0S6"), reason: `ID token claim "nonce"`},
		{name: "at_hash", typ: "JWT", edit: set("at_hash", "77QmUPtjPfzWtF2AnpK9RQ"), reason: `ID token claim "at_hash"`},
		{name: "c_hash", edit: set("c_hash", "LDktKdoQak3Pk0cnXxCltA"), reason: `ID token claim "c_hash"`},
		{name: "aud equals azp", typ: "JWT", edit: func(_ time.Time, c map[string]any) {
			c["scp"] = "read"
			c["azp"] = "gatehouse"
		}, reason: "aud equals azp"},
		{name: "aud differs from azp", typ: "JWT", edit: func(_ time.Time, c map[string]any) {
			c["scp"] = "read"
			c["azp"] = "web-client"
		}},
		{name: "aud equals azp with typ at+jwt", edit: set("azp", "gatehouse")},
	})

	entra := func(idp *testIdP) config.Issuer {
		cfg := issuerConfig(idp, "entra")
		cfg.AccessTokens = &config.AccessTokens{RequireClaims: []string{"scp", "roles"}}
		return cfg
	}
	runTokenCases(t, entra, []tokenCase{
		{name: "delegated token", typ: "JWT", edit: set("scp", "access_as_user")},
		{name: "application token", typ: "JWT", edit: set("roles", []string{"Gatehouse.Check"})},
		{name: "aud equals azp allowed", typ: "JWT", edit: func(_ time.Time, c map[string]any) {
			c["scp"] = "read"
			c["azp"] = "gatehouse"
		}},
		{name: "at+jwt without claims", reason: `none of the configured access token claims ["scp" "roles"]`},
		{name: "scope does not count", typ: "JWT", edit: set("scope", "read"), reason: "none of the configured access token claims"},
		{name: "ID token", typ: "JWT", edit: func(_ time.Time, c map[string]any) {
			c["roles"] = []string{"Reader"}
			c["nonce"] = "n"
		}, reason: `ID token claim "nonce"`},
	})

	typeOnly := func(idp *testIdP) config.Issuer {
		cfg := issuerConfig(idp, "auth0")
		cfg.AccessTokens = &config.AccessTokens{Types: []string{"at+jwt"}}
		return cfg
	}
	runTokenCases(t, typeOnly, []tokenCase{
		{name: "at+jwt"},
		{name: "JWT with scope", typ: "JWT", edit: set("scope", "read"), reason: `typ "JWT" is none of the configured access token types`},
	})

	both := func(idp *testIdP) config.Issuer {
		cfg := issuerConfig(idp, "corp")
		cfg.AccessTokens = &config.AccessTokens{Types: []string{"at+jwt"}, RequireClaims: []string{"scope"}}
		return cfg
	}
	runTokenCases(t, both, []tokenCase{
		{name: "at+jwt with scope", edit: set("scope", "read")},
		{name: "at+jwt without scope", reason: "none of the configured access token claims"},
	})
}

func TestHeaderRejects(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	a := newAuthenticator(t, clock, issuerConfig(idp, "corp"))

	tests := []struct {
		name   string
		header string
		reason string
	}{
		{"x5c", `{"alg":"RS256","kid":"key-1","x5c":["MIIB"]}`, `"x5c"`},
		{"crit", `{"alg":"RS256","kid":"key-1","crit":["exp"],"exp":1}`, `"crit"`},
		{"Graph nonce", `{"alg":"RS256","kid":"key-1","typ":"JWT","nonce":"abc"}`, "Microsoft Graph"},
		{"typ not a string", `{"alg":"RS256","kid":"key-1","typ":7}`, `"typ" is not a string`},
		{"header array", `["RS256"]`, "header is not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Authenticate(context.Background(), rawToken(t, tt.header, idp.claims(clock.Now()), "c2ln"))
			if !errors.Is(err, authn.ErrInvalidToken) || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("got %v, want ErrInvalidToken containing %q", err, tt.reason)
			}
		})
	}
}

func TestMultiTenantIssuer(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	cfg := issuerConfig(idp, "entra")
	cfg.Issuer = idp.issuer + "/" + config.TenantPlaceholder + "/v2.0"
	cfg.JWKSURI = idp.issuer + "/jwks.json"
	cfg.Tenants = []string{"tenant-1", "tenant-2"}
	cfg.Claims = config.Claims{Subject: "oid", Tenant: "tid"}
	a := newAuthenticator(t, clock, cfg)

	token := func(t *testing.T, issTenant, tid string) string {
		claims := idp.claims(clock.Now())
		claims["iss"] = idp.issuer + "/" + issTenant + "/v2.0"
		claims["oid"] = "00000000-0000-0000-0000-00000000000a"
		if tid != "" {
			claims["tid"] = tid
		}
		return idp.sign(t, claims)
	}

	tests := []struct {
		name       string
		issTenant  string
		tid        string
		wantTenant string
		reason     string
	}{
		{"first tenant", "tenant-1", "tenant-1", "tenant-1", ""},
		{"second tenant", "tenant-2", "tenant-2", "tenant-2", ""},
		{"tid of other tenant", "tenant-1", "tenant-2", "", `tenant claim "tid" is "tenant-2", but iss is the issuer URL of tenant "tenant-1"`},
		{"tenant not configured", "tenant-3", "tenant-3", "", "unknown issuer"},
		{"placeholder as tenant", config.TenantPlaceholder, "tenant-1", "", "unknown issuer"},
		{"missing tid", "tenant-1", "", "", `tenant claim "tid" is missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(context.Background(), token(t, tt.issTenant, tt.tid))
			if tt.reason != "" {
				if !errors.Is(err, authn.ErrInvalidToken) || !strings.Contains(err.Error(), tt.reason) {
					t.Errorf("got %v, want ErrInvalidToken containing %q", err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if p.Tenant != tt.wantTenant {
				t.Errorf("tenant: got %q, want %q", p.Tenant, tt.wantTenant)
			}
			if want := "user:entra|00000000-0000-0000-0000-00000000000a"; p.Ref.String() != want {
				t.Errorf("ref: got %q, want %q", p.Ref, want)
			}
		})
	}
}
