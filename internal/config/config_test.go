package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/config"
)

const validFile = `
issuers:
  - name: corp
    issuer: https://idp.example.com/
    audiences: [gatehouse]
    algorithms: [RS256, ES256]
    claims:
      subject: oid
      tenant: tid
    app_tokens:
      claim: idtyp
      values: [app]
  - name: local
    issuer: http://127.0.0.1:8080/dev/oidc
    audiences: [gatehouse, other]
    jwks_uri: http://localhost:8080/dev/oidc/jwks.json
`

func TestParseValid(t *testing.T) {
	f, err := config.Parse([]byte(validFile))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := len(f.Issuers), 2; got != want {
		t.Fatalf("got %d issuers, want %d", got, want)
	}

	corp := f.Issuers[0]
	if corp.Name != "corp" {
		t.Errorf("name: got %q, want %q", corp.Name, "corp")
	}
	if corp.Issuer != "https://idp.example.com/" {
		t.Errorf("issuer: got %q, want the trailing slash kept", corp.Issuer)
	}
	if got := strings.Join(corp.Algorithms, ","); got != "RS256,ES256" {
		t.Errorf("algorithms: got %q", got)
	}
	if got := corp.Claims.SubjectClaim(); got != "oid" {
		t.Errorf("subject claim: got %q, want %q", got, "oid")
	}
	if corp.Claims.Tenant != "tid" {
		t.Errorf("tenant claim: got %q, want %q", corp.Claims.Tenant, "tid")
	}
	if corp.AppTokens == nil || corp.AppTokens.Claim != "idtyp" || len(corp.AppTokens.Values) != 1 {
		t.Errorf("app_tokens: got %+v", corp.AppTokens)
	}

	local := f.Issuers[1]
	if got := local.Claims.SubjectClaim(); got != "sub" {
		t.Errorf("default subject claim: got %q, want %q", got, "sub")
	}
	if local.AppTokens != nil {
		t.Errorf("app_tokens: got %+v, want nil", local.AppTokens)
	}
	if local.JWKSURI != "http://localhost:8080/dev/oidc/jwks.json" {
		t.Errorf("jwks_uri: got %q", local.JWKSURI)
	}
}

func TestParseRejects(t *testing.T) {
	// issuer builds a one-issuer file from YAML lines indented under the
	// list item.
	issuer := func(lines ...string) string {
		return "issuers:\n  - " + strings.Join(lines, "\n    ") + "\n"
	}
	base := []string{"name: corp", "issuer: https://idp.example.com", "audiences: [gatehouse]"}
	with := func(extra ...string) string { return issuer(append(append([]string{}, base...), extra...)...) }
	without := func(drop string, extra ...string) string {
		var lines []string
		for _, l := range base {
			if !strings.HasPrefix(l, drop+":") {
				lines = append(lines, l)
			}
		}
		return issuer(append(lines, extra...)...)
	}

	tests := []struct {
		name string
		yaml string
		want string // substring of the error
	}{
		{"empty file", "", "config is empty"},
		{"two documents", with() + "---\nissuers: []\n", "one YAML document"},
		{"unknown top-level key", "issuer:\n  - name: corp\n", "field issuer not found"},
		{"misspelled key", with("audience: [x]"), "line 5: field audience not found"},
		{"unknown claims key", with("claims: {subjet: oid}"), "field subjet not found"},
		{"wrong type", with("app_tokens: yes"), "cannot unmarshal"},
		{"missing name", without("name"), "issuers[0].name: missing"},
		{"invalid name", without("name", "name: Corp"), `issuers[0].name: "Corp" must match`},
		{"name with pipe", without("name", "name: a|b"), "issuers[0].name"},
		{"duplicate name", with() + "  - name: corp\n    issuer: https://other.example.com\n    audiences: [g]\n",
			`issuers[1].name: "corp" is already used by issuers[0]`},
		{"missing issuer", without("issuer"), "issuers[0].issuer: missing"},
		{"duplicate issuer", with() + "  - name: other\n    issuer: https://idp.example.com\n    audiences: [g]\n",
			"issuers[1].issuer: \"https://idp.example.com\" is already used by issuers[0]"},
		{"relative issuer", without("issuer", "issuer: idp.example.com"), "must be an absolute URL"},
		{"http issuer", without("issuer", "issuer: http://idp.example.com"), "must use https"},
		{"http lookalike host", without("issuer", "issuer: http://127.0.0.1.example.com"), "must use https"},
		{"ftp issuer", without("issuer", "issuer: ftp://idp.example.com"), "must use https"},
		{"issuer with query", without("issuer", "issuer: https://idp.example.com/?a=b"), "query or fragment"},
		{"issuer with fragment", without("issuer", "issuer: https://idp.example.com/#x"), "query or fragment"},
		{"issuer with user info", without("issuer", "issuer: https://u:p@idp.example.com"), "user info"},
		{"missing audiences", without("audiences"), "issuers[0].audiences: at least one"},
		{"empty audiences", without("audiences", "audiences: []"), "issuers[0].audiences: at least one"},
		{"empty audience", without("audiences", `audiences: [""]`), "issuers[0].audiences[0]: empty"},
		{"alg none", with("algorithms: [none]"), `issuers[0].algorithms[0]: "none" is forbidden`},
		{"alg HS256", with("algorithms: [RS256, HS256]"), `issuers[0].algorithms[1]: "HS256" is forbidden`},
		{"alg HS384", with("algorithms: [HS384]"), `"HS384" is forbidden`},
		{"alg HS512", with("algorithms: [HS512]"), `"HS512" is forbidden`},
		{"alg unknown", with("algorithms: [ES256K]"), `unknown algorithm "ES256K"`},
		{"alg lowercase", with("algorithms: [rs256]"), `unknown algorithm "rs256"`},
		{"http jwks_uri", with("jwks_uri: http://keys.example.com/jwks"), "issuers[0].jwks_uri"},
		{"empty subject claim", with(`claims: {subject: ""}`), "issuers[0].claims.subject: empty"},
		{"null subject claim", with("claims: {subject: }"), "issuers[0].claims.subject: empty"},
		{"app_tokens without claim", with("app_tokens: {values: [app]}"), "issuers[0].app_tokens.claim: missing"},
		{"app_tokens without values", with("app_tokens: {claim: idtyp}"), "issuers[0].app_tokens.values: at least one"},
		{"app_tokens empty value", with(`app_tokens: {claim: idtyp, values: [""]}`), "issuers[0].app_tokens.values[0]: empty"},
		{"refresh interval below minimum", with("jwks_refresh_interval: 500ms"), "issuers[0].jwks_refresh_interval: 500ms is shorter than the minimum 1s"},
		{"negative refresh interval", with("jwks_refresh_interval: -5s"), "issuers[0].jwks_refresh_interval: -5s is negative"},
		{"refresh interval as integer", with("jwks_refresh_interval: 30"), "cannot unmarshal"},
		{"clock skew above maximum", with("clock_skew: 6m"), "issuers[0].clock_skew: 6m0s is longer than the maximum 5m0s"},
		{"negative clock skew", with("clock_skew: -1s"), "issuers[0].clock_skew: -1s is negative"},
		{"access_tokens empty", with("access_tokens: {}"), "issuers[0].access_tokens: set typ, require_claims or both"},
		{"access_tokens empty typ", with(`access_tokens: {typ: [""]}`), "issuers[0].access_tokens.typ[0]: empty"},
		{"access_tokens empty claim", with(`access_tokens: {require_claims: [""]}`), "issuers[0].access_tokens.require_claims[0]: empty"},
		{"access_tokens unknown key", with("access_tokens: {types: [at+jwt]}"), "field types not found"},
		{"tenants without placeholder", with("tenants: [t1]"), "issuers[0].tenants: issuer must contain {tenant}"},
		{"placeholder without tenants", issuer("name: entra", "issuer: https://login.example.com/{tenant}/v2.0", "audiences: [g]", "claims: {tenant: tid}"),
			"issuers[0].tenants: at least one tenant is required"},
		{"placeholder without tenant claim", issuer("name: entra", "issuer: https://login.example.com/{tenant}/v2.0", "audiences: [g]", "tenants: [t1]"),
			"issuers[0].claims.tenant: missing"},
		{"tenant with slash", issuer("name: entra", "issuer: https://login.example.com/{tenant}/v2.0", "audiences: [g]", "claims: {tenant: tid}", "tenants: [a/b]"),
			`issuers[0].tenants[0]: "a/b" must match`},
		{"tenant common", issuer("name: entra", "issuer: https://login.example.com/{tenant}/v2.0", "audiences: [g]", "claims: {tenant: tid}", "tenants: [t1, common]"),
			`issuers[0].tenants[1]: "common" never appears`},
		{"tenant twice", issuer("name: entra", "issuer: https://login.example.com/{tenant}/v2.0", "audiences: [g]", "claims: {tenant: tid}", "tenants: [t1, t1]"),
			`issuers[0].tenants[1]: "t1" is listed twice`},
		{"tenant issuer collides", with() + "  - name: entra\n    issuer: https://{tenant}\n    audiences: [g]\n    claims: {tenant: tid}\n    tenants: [idp.example.com]\n",
			`issuers[1].tenants[0]: "https://idp.example.com" is already used by issuers[0]`},
		{"jwks_uri placeholder without tenants", with("jwks_uri: https://keys.example.com/{tenant}/keys"), "issuers[0].jwks_uri: contains {tenant}"},
		{"oversized file", with() + "# " + strings.Repeat("x", config.MaxFileSize), "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseIssuerOptions(t *testing.T) {
	f, err := config.Parse([]byte(`
issuers:
  - name: entra
    issuer: https://login.microsoftonline.com/{tenant}/v2.0
    jwks_uri: https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys
    tenants: [11111111-1111-1111-1111-111111111111, contoso.onmicrosoft.com]
    audiences: [api://gatehouse]
    claims: {subject: oid, tenant: tid}
    access_tokens:
      require_claims: [scp, roles]
    clock_skew: 2m
    jwks_refresh_interval: 1s
  - name: auth0
    issuer: https://example.eu.auth0.com/
    audiences: [https://gatehouse.example.com]
    access_tokens:
      typ: [at+jwt]
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	entra := f.Issuers[0]
	if !entra.MultiTenant() {
		t.Error("entra: MultiTenant() is false")
	}
	if got := entra.ClockSkewOrDefault(); got != 2*time.Minute {
		t.Errorf("clock skew: got %s, want 2m", got)
	}
	if got := entra.JWKSRefreshIntervalOrDefault(); got != time.Second {
		t.Errorf("refresh interval: got %s, want 1s", got)
	}
	if entra.AccessTokens == nil || !slices.Equal(entra.AccessTokens.RequireClaims, []string{"scp", "roles"}) {
		t.Errorf("access_tokens: got %+v", entra.AccessTokens)
	}
	expanded := entra.ForTenant("contoso.onmicrosoft.com")
	if want := "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0"; expanded.Issuer != want {
		t.Errorf("expanded issuer: got %q, want %q", expanded.Issuer, want)
	}
	if want := "https://login.microsoftonline.com/contoso.onmicrosoft.com/discovery/v2.0/keys"; expanded.JWKSURI != want {
		t.Errorf("expanded jwks_uri: got %q, want %q", expanded.JWKSURI, want)
	}
	if expanded.Tenants != nil {
		t.Errorf("expanded tenants: got %q, want nil", expanded.Tenants)
	}

	auth0 := f.Issuers[1]
	if auth0.MultiTenant() {
		t.Error("auth0: MultiTenant() is true")
	}
	if got := auth0.ClockSkewOrDefault(); got != config.DefaultClockSkew {
		t.Errorf("default clock skew: got %s, want %s", got, config.DefaultClockSkew)
	}
	if got := auth0.JWKSRefreshIntervalOrDefault(); got != config.DefaultJWKSRefreshInterval {
		t.Errorf("default refresh interval: got %s, want %s", got, config.DefaultJWKSRefreshInterval)
	}
	if auth0.AccessTokens == nil || !slices.Equal(auth0.AccessTokens.Types, []string{"at+jwt"}) {
		t.Errorf("access_tokens: got %+v", auth0.AccessTokens)
	}
}

func TestValidateErrorLine(t *testing.T) {
	_, err := config.Parse([]byte("issuers:\n  - name: corp\n    issuer: https://idp.example.com\n    audiences: []\n"))

	var fe *config.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v, want a *config.FieldError", err)
	}
	if fe.Key != "issuers[0].audiences" {
		t.Errorf("key: got %q, want %q", fe.Key, "issuers[0].audiences")
	}
	if fe.Line != 4 {
		t.Errorf("line: got %d, want 4", fe.Line)
	}
}

func TestValidateReportsAll(t *testing.T) {
	f := &config.File{Issuers: []config.Issuer{{Name: "BAD", Issuer: "http://idp.example.com"}}}

	err := f.Validate()
	if err == nil {
		t.Fatal("Validate succeeded, want errors")
	}
	for _, key := range []string{"issuers[0].name", "issuers[0].issuer", "issuers[0].audiences"} {
		if !strings.Contains(err.Error(), "config: "+key+":") {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
}

func TestValidateProgrammatic(t *testing.T) {
	f := &config.File{Issuers: []config.Issuer{{
		Name:      "dev",
		Issuer:    "http://[::1]:8080/dev/oidc",
		Audiences: []string{"gatehouse"},
	}}}
	if err := f.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestCheckURLLoopback(t *testing.T) {
	for _, raw := range []string{
		"http://127.0.0.1", "http://127.5.6.7:9000/x", "http://[::1]:8080", "http://localhost:8080", "http://LOCALHOST",
		"https://idp.example.com", "https://idp.example.com/tenant/v2.0/",
	} {
		if err := config.CheckURL(raw); err != nil {
			t.Errorf("CheckURL(%q): %v", raw, err)
		}
	}
	for _, raw := range []string{"http://10.0.0.1", "http://[::2]", "http://localhost.example.com", "https://", "https:///path"} {
		if err := config.CheckURL(raw); err == nil {
			t.Errorf("CheckURL(%q) succeeded, want error", raw)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()

	good := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(good, []byte(validFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(good); err != nil {
		t.Errorf("Load: %v", err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(validFile+"#"+strings.Repeat("x", config.MaxFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load of oversized file: got %v, want a size error", err)
	}

	if _, err := config.Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of missing file: got %v, want os.ErrNotExist", err)
	}
}
