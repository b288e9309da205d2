package config

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

const (
	// DefaultJWKSRefreshInterval is Issuer.JWKSRefreshInterval when unset.
	DefaultJWKSRefreshInterval = 30 * time.Second
	// MinJWKSRefreshInterval is the smallest Issuer.JWKSRefreshInterval.
	MinJWKSRefreshInterval = time.Second

	// DefaultClockSkew is Issuer.ClockSkew when unset.
	DefaultClockSkew = 60 * time.Second
	// MaxClockSkew is the largest Issuer.ClockSkew.
	MaxClockSkew = 5 * time.Minute

	// TenantPlaceholder is replaced by each of Issuer.Tenants in the issuer
	// URL and jwks_uri of a multi-tenant issuer.
	TenantPlaceholder = "{tenant}"

	// TenantPattern is the pattern of a value in Issuer.Tenants: a tenant id
	// or domain name, never a character with a meaning in a URL.
	TenantPattern = `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`
)

var tenantRe = regexp.MustCompile(TenantPattern)

// reservedTenants are Microsoft Entra ID's aliases for "any tenant". They
// are valid in a login URL but never appear in a token's "iss", so
// configuring one is a mistake.
var reservedTenants = []string{"common", "organizations", "consumers"}

// Issuer is one trusted token issuer (an OpenID Connect provider).
type Issuer struct {
	// Name is the issuer's short name, used as the prefix of principal ids
	// ("user:<name>|<subject>"). Required. It must match
	// object.IssuerNamePattern and be unique.
	Name string `yaml:"name"`

	// Issuer is the "iss" value of the issuer's tokens. Required. It is
	// compared byte for byte, so "https://idp.example.com" and
	// "https://idp.example.com/" are different issuers. It must be an
	// absolute https URL without query or fragment; http is allowed only for
	// loopback hosts (127.0.0.0/8, ::1, localhost).
	Issuer string `yaml:"issuer"`

	// Audiences lists the accepted "aud" values. Required and non-empty: a
	// token must carry at least one of them.
	Audiences []string `yaml:"audiences"`

	// Algorithms lists the accepted JWS "alg" values, a subset of
	// SupportedAlgorithms. Default: the supported algorithms that the
	// issuer's discovery document lists, or only RS256 when JWKSURI is set,
	// because then no discovery document is read.
	Algorithms []string `yaml:"algorithms"`

	// JWKSURI is the URL of the issuer's JSON Web Key Set. Default: the
	// jwks_uri of the discovery document at
	// Issuer + "/.well-known/openid-configuration". When set, no discovery
	// request is made. The URL rules of Issuer apply.
	JWKSURI string `yaml:"jwks_uri"`

	// JWKSRefreshInterval is the minimum time between two fetches of the
	// issuer's key set. A token whose "kid" is not in the cached set causes
	// a fetch unless the previous one, successful or not, is more recent.
	// Default: DefaultJWKSRefreshInterval (30s). Minimum:
	// MinJWKSRefreshInterval (1s).
	JWKSRefreshInterval time.Duration `yaml:"jwks_refresh_interval"`

	// ClockSkew is the tolerance for clocks that run ahead of Gatehouse's:
	// a token is rejected when its "nbf" or "iat" is more than ClockSkew in
	// the future. "exp" gets no tolerance. Default: DefaultClockSkew (60s),
	// which a value of 0 also selects. Maximum: MaxClockSkew (5m).
	ClockSkew time.Duration `yaml:"clock_skew"`

	// Tenants expands a multi-tenant issuer: Issuer, and JWKSURI when set,
	// contain TenantPlaceholder, and each tenant here becomes one exact
	// issuer URL, such as https://login.microsoftonline.com/<tenant>/v2.0.
	// Claims.Tenant is then required, and a token's tenant claim must equal
	// the tenant of the issuer URL in its "iss". Default: none, so Issuer
	// must not contain the placeholder.
	Tenants []string `yaml:"tenants"`

	// AccessTokens lists the markers that distinguish this issuer's access
	// tokens from its ID tokens and other JWTs. Default: nil, which requires the
	// "typ" header "at+jwt" (RFC 9068) or one of the claims "scp", "scope"
	// or "roles".
	AccessTokens *AccessTokens `yaml:"access_tokens"`

	// Claims names the token claims that identify the principal.
	Claims Claims `yaml:"claims"`

	// AppTokens marks application (client-credentials) tokens, which
	// authenticate a service principal instead of a user. Default: nil, so
	// every token authenticates a user.
	AppTokens *AppTokens `yaml:"app_tokens"`
}

// Claims names the token claims that Gatehouse maps into a principal.
type Claims struct {
	// Subject is the claim that identifies the principal within the issuer.
	// Default: DefaultSubjectClaim ("sub"). Microsoft Entra ID uses "oid".
	Subject string `yaml:"subject"`

	// Tenant is the claim copied into the principal's tenant, such as "tid"
	// for Microsoft Entra ID. Default: empty, so no tenant is read.
	Tenant string `yaml:"tenant"`
}

// SubjectClaim returns Subject, or DefaultSubjectClaim when Subject is empty.
func (c Claims) SubjectClaim() string {
	if c.Subject == "" {
		return DefaultSubjectClaim
	}
	return c.Subject
}

// AppTokens is the claim and the values that mark an application token, for
// example idtyp == "app" for Microsoft Entra ID, or gty == "client-credentials"
// for Auth0.
type AppTokens struct {
	// Claim is the name of the marker claim. Required.
	Claim string `yaml:"claim"`

	// Values are the string values of Claim that mark an application token.
	// Required and non-empty.
	Values []string `yaml:"values"`
}

// AccessTokens lists the markers of an access token. When both fields are
// set, a token must satisfy both.
type AccessTokens struct {
	// Types are the accepted JWS "typ" header values, such as "at+jwt".
	// They are compared case-insensitively, and an "application/" prefix
	// in the token is ignored (RFC 9068, section 2.1). Default: any typ.
	Types []string `yaml:"typ"`

	// RequireClaims are claims of which a token must carry at least one,
	// such as "scp" and "roles" for Microsoft Entra ID, whose access tokens
	// have typ "JWT". Default: none required.
	RequireClaims []string `yaml:"require_claims"`
}

// supportedAlgorithms are the JWS algorithms that an issuer may use. "none"
// and the HMAC algorithms (HS256, HS384, HS512) are never accepted, because
// a token must be signed with the issuer's private key and not with a secret
// that a verifier also holds.
var supportedAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// SupportedAlgorithms returns the JWS algorithms that an issuer may be
// configured with: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384,
// ES512 and EdDSA. It returns a new slice on each call.
func SupportedAlgorithms() []string { return slices.Clone(supportedAlgorithms) }

// IsSupportedAlgorithm reports whether alg is one of SupportedAlgorithms.
func IsSupportedAlgorithm(alg string) bool { return slices.Contains(supportedAlgorithms, alg) }

// ClockSkewOrDefault returns ClockSkew, or DefaultClockSkew when it is 0.
func (iss Issuer) ClockSkewOrDefault() time.Duration {
	if iss.ClockSkew == 0 {
		return DefaultClockSkew
	}
	return iss.ClockSkew
}

// JWKSRefreshIntervalOrDefault returns JWKSRefreshInterval, or
// DefaultJWKSRefreshInterval when it is 0.
func (iss Issuer) JWKSRefreshIntervalOrDefault() time.Duration {
	if iss.JWKSRefreshInterval == 0 {
		return DefaultJWKSRefreshInterval
	}
	return iss.JWKSRefreshInterval
}

// MultiTenant reports whether the issuer URL contains TenantPlaceholder.
func (iss Issuer) MultiTenant() bool { return strings.Contains(iss.Issuer, TenantPlaceholder) }

// ForTenant returns a copy of iss whose Issuer and JWKSURI have
// TenantPlaceholder replaced by tenant, and whose Tenants is nil. It does
// not check tenant: Validate does.
func (iss Issuer) ForTenant(tenant string) Issuer {
	iss.Issuer = strings.ReplaceAll(iss.Issuer, TenantPlaceholder, tenant)
	iss.JWKSURI = strings.ReplaceAll(iss.JWKSURI, TenantPlaceholder, tenant)
	iss.Tenants = nil
	return iss
}

// validateIssuer reports the problems of iss, found at key prefix. names
// and issuers map the names and exact issuer URLs seen so far to the key
// prefix of their issuer, for the uniqueness checks.
func (f *File) validateIssuer(prefix string, iss Issuer, names, issuers map[string]string, report func(key, format string, args ...any)) {
	switch {
	case iss.Name == "":
		report(prefix+".name", "missing")
	case !object.ValidIssuerName(iss.Name):
		report(prefix+".name", "%q must match %s", iss.Name, object.IssuerNamePattern)
	default:
		if first, ok := names[iss.Name]; ok {
			report(prefix+".name", "%q is already used by %s", iss.Name, first)
		} else {
			names[iss.Name] = prefix
		}
	}

	f.validateIssuerURLs(prefix, iss, issuers, report)

	if len(iss.Audiences) == 0 {
		report(prefix+".audiences", "at least one audience is required")
	}
	for j, aud := range iss.Audiences {
		if aud == "" {
			report(prefix+".audiences["+strconv.Itoa(j)+"]", "empty audience")
		}
	}

	for j, alg := range iss.Algorithms {
		key := prefix + ".algorithms[" + strconv.Itoa(j) + "]"
		switch {
		case strings.EqualFold(alg, "none") || strings.HasPrefix(strings.ToUpper(alg), "HS"):
			report(key, "%q is forbidden: tokens must be signed with the issuer's private key", alg)
		case !IsSupportedAlgorithm(alg):
			report(key, "unknown algorithm %q, expected one of %s", alg, strings.Join(supportedAlgorithms, ", "))
		}
	}

	// An empty Subject means DefaultSubjectClaim, but an empty value
	// written in the file is more likely a mistake than a request for
	// the default.
	if f.given(prefix+".claims.subject") && iss.Claims.Subject == "" {
		report(prefix+".claims.subject", "empty: remove the key to use %q", DefaultSubjectClaim)
	}

	if iss.AppTokens != nil {
		if iss.AppTokens.Claim == "" {
			report(prefix+".app_tokens.claim", "missing")
		}
		if len(iss.AppTokens.Values) == 0 {
			report(prefix+".app_tokens.values", "at least one value is required")
		}
		for j, v := range iss.AppTokens.Values {
			if v == "" {
				report(prefix+".app_tokens.values["+strconv.Itoa(j)+"]", "empty value")
			}
		}
	}

	if at := iss.AccessTokens; at != nil {
		if len(at.Types) == 0 && len(at.RequireClaims) == 0 {
			report(prefix+".access_tokens", "set typ, require_claims or both, or remove the key to use the default markers")
		}
		for j, typ := range at.Types {
			if strings.TrimSpace(typ) == "" {
				report(prefix+".access_tokens.typ["+strconv.Itoa(j)+"]", "empty value")
			}
		}
		for j, claim := range at.RequireClaims {
			if claim == "" {
				report(prefix+".access_tokens.require_claims["+strconv.Itoa(j)+"]", "empty value")
			}
		}
	}

	switch d := iss.JWKSRefreshInterval; {
	case d < 0:
		report(prefix+".jwks_refresh_interval", "%s is negative", d)
	case d != 0 && d < MinJWKSRefreshInterval:
		report(prefix+".jwks_refresh_interval", "%s is shorter than the minimum %s", d, MinJWKSRefreshInterval)
	}
	switch d := iss.ClockSkew; {
	case d < 0:
		report(prefix+".clock_skew", "%s is negative", d)
	case d > MaxClockSkew:
		report(prefix+".clock_skew", "%s is longer than the maximum %s", d, MaxClockSkew)
	}
}

// validateIssuerURLs checks issuer, jwks_uri and tenants. A multi-tenant
// issuer's URLs are checked after expansion, once per tenant.
func (f *File) validateIssuerURLs(prefix string, iss Issuer, issuers map[string]string, report func(key, format string, args ...any)) {
	if iss.Issuer == "" {
		report(prefix+".issuer", "missing")
		return
	}

	multiTenant := iss.MultiTenant()
	switch {
	case multiTenant && len(iss.Tenants) == 0:
		report(prefix+".tenants", "at least one tenant is required, because issuer contains %s", TenantPlaceholder)
	case !multiTenant && len(iss.Tenants) > 0:
		report(prefix+".tenants", "issuer must contain %s, such as https://login.microsoftonline.com/%s/v2.0", TenantPlaceholder, TenantPlaceholder)
	case multiTenant && iss.Claims.Tenant == "":
		report(prefix+".claims.tenant", "missing: a multi-tenant issuer needs the claim that names the tenant, such as tid")
	}
	if !multiTenant && strings.Contains(iss.JWKSURI, TenantPlaceholder) {
		report(prefix+".jwks_uri", "contains %s, but issuer does not", TenantPlaceholder)
	}

	tenants := []string{""}
	if multiTenant {
		tenants = iss.Tenants
	}
	seen := make(map[string]bool)
	for j, tenant := range tenants {
		key := prefix + ".issuer"
		if multiTenant {
			key = prefix + ".tenants[" + strconv.Itoa(j) + "]"
			switch {
			case !tenantRe.MatchString(tenant):
				report(key, "%q must match %s", tenant, TenantPattern)
				continue
			case slices.Contains(reservedTenants, strings.ToLower(tenant)):
				report(key, "%q never appears in a token's iss: list the tenant ids", tenant)
				continue
			case seen[tenant]:
				report(key, "%q is listed twice", tenant)
				continue
			}
			seen[tenant] = true
		}

		expanded := iss.ForTenant(tenant)
		if err := CheckURL(expanded.Issuer); err != nil {
			report(key, "%v", err)
		} else if first, ok := issuers[expanded.Issuer]; ok {
			report(key, "%q is already used by %s", expanded.Issuer, first)
		} else {
			issuers[expanded.Issuer] = prefix
		}
		if expanded.JWKSURI != "" {
			if err := CheckURL(expanded.JWKSURI); err != nil {
				report(prefix+".jwks_uri", "%v", err)
			}
		}
	}
}
