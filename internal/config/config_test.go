package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
