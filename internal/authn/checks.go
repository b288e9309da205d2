package authn

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// idTokenClaims are claims that OpenID Connect Core 1.0 defines for ID
// tokens only (sections 2 and 3.3.2.11). An access token never needs them,
// so a token that carries one is taken for an ID token and rejected.
var idTokenClaims = []string{"nonce", "at_hash", "c_hash"}

// defaultAccessTokenClaims mark an access token of an issuer without an
// access_tokens config: "scope" (RFC 9068, section 2.2.3), "scp" (Microsoft
// Entra ID delegated tokens, Okta) and "roles" (Entra application tokens).
var defaultAccessTokenClaims = []string{"scp", "scope", "roles"}

// accessTokenType is the "typ" of a JWT access token (RFC 9068, section 2.1).
const accessTokenType = "at+jwt"

// checkTimes checks "exp" without tolerance and rejects "nbf" and "iat"
// values more than the issuer's clock skew in the future. go-oidc has
// already rejected an "exp" before now, but it accepts an "exp" equal to
// now and an "nbf" up to five minutes ahead, so both are checked again here.
func (v *issuerVerifier) checkTimes(token *oidc.IDToken, claims map[string]json.RawMessage) error {
	now := v.opts.Now()
	skew := v.cfg.ClockSkewOrDefault()

	// RFC 7519, section 4.1.4: the current time must be before "exp".
	if !now.Before(token.Expiry) {
		return fmt.Errorf("token expired at %s", token.Expiry.UTC().Format(time.RFC3339))
	}

	for _, name := range []string{"nbf", "iat"} {
		at, ok, err := numericDateClaim(claims, name)
		if err != nil {
			return err
		}
		if ok && at.After(now.Add(skew)) {
			return fmt.Errorf("%s %s is more than the clock skew %s after the current time %s",
				name, at.UTC().Format(time.RFC3339), skew, now.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// checkAccessToken rejects a token that is not recognised as an access
// token. ID token claims are rejected for every issuer. Then a local
// issuer's RequireType applies, then the issuer's access_tokens config, and
// when that is unset, the default markers: typ "at+jwt", or one of
// defaultAccessTokenClaims without "aud" being just "azp".
func (v *issuerVerifier) checkAccessToken(header jwsHeader, token *oidc.IDToken, claims map[string]json.RawMessage) error {
	for _, name := range idTokenClaims {
		if hasClaim(claims, name) {
			return fmt.Errorf("token has the ID token claim %q, only access tokens are accepted", name)
		}
	}

	requireType := ""
	if v.local != nil {
		requireType = v.local.RequireType
	}
	if requireType != "" && !mediaTypeMatches(header.Type, requireType) {
		return fmt.Errorf("typ %q, expected %q", truncate(header.Type), requireType)
	}

	if rule := v.cfg.AccessTokens; rule != nil {
		matches := func(t string) bool { return mediaTypeMatches(header.Type, t) }
		if len(rule.Types) > 0 && !slices.ContainsFunc(rule.Types, matches) {
			return fmt.Errorf("typ %q is none of the configured access token types %q", truncate(header.Type), rule.Types)
		}
		if len(rule.RequireClaims) > 0 && !hasAnyClaim(claims, rule.RequireClaims) {
			return fmt.Errorf("token has none of the configured access token claims %q", rule.RequireClaims)
		}
		return nil
	}
	if requireType != "" {
		return nil
	}

	if mediaTypeMatches(header.Type, accessTokenType) {
		return nil
	}
	if !hasAnyClaim(claims, defaultAccessTokenClaims) {
		return fmt.Errorf("typ %q is not %q and the token has none of the claims %q, so it is not recognised as an access token; set access_tokens in the issuer config if the issuer marks access tokens otherwise",
			truncate(header.Type), accessTokenType, defaultAccessTokenClaims)
	}
	// An ID token is issued to the client that reads it, so its only
	// audience is often its authorized party.
	azp, _, err := stringClaim(claims, "azp")
	if err != nil {
		return err
	}
	if azp != "" && len(token.Audience) == 1 && token.Audience[0] == azp {
		return fmt.Errorf("aud equals azp %q and typ is not %q, as in an ID token; set access_tokens in the issuer config if its access tokens look like this",
			truncate(azp), accessTokenType)
	}
	return nil
}

// checkAudience requires at least one configured audience in "aud". The
// go-oidc verifiers skip their audience check, which accepts one client id.
func (v *issuerVerifier) checkAudience(token *oidc.IDToken) error {
	if len(token.Audience) == 0 {
		return errors.New("token has no aud claim")
	}
	if !slices.ContainsFunc(token.Audience, func(aud string) bool { return slices.Contains(v.cfg.Audiences, aud) }) {
		return fmt.Errorf("aud %q contains none of the configured audiences %q", truncateAll(token.Audience), v.cfg.Audiences)
	}
	return nil
}

// numericDateClaim returns the NumericDate claim called name (RFC 7519,
// section 2) and whether it is present. A JSON null counts as absent.
func numericDateClaim(claims map[string]json.RawMessage, name string) (time.Time, bool, error) {
	raw, ok := claims[name]
	if !ok || string(raw) == "null" {
		return time.Time{}, false, nil
	}
	var seconds float64
	if err := json.Unmarshal(raw, &seconds); err != nil || math.IsNaN(seconds) || math.Abs(seconds) > 1e12 {
		return time.Time{}, false, fmt.Errorf("claim %q is not a NumericDate", name)
	}
	whole, frac := math.Modf(seconds)
	return time.Unix(int64(whole), int64(frac*1e9)), true, nil
}

// hasClaim reports whether claims has name with a value other than null.
func hasClaim(claims map[string]json.RawMessage, name string) bool {
	raw, ok := claims[name]
	return ok && string(raw) != "null"
}

func hasAnyClaim(claims map[string]json.RawMessage, names []string) bool {
	return slices.ContainsFunc(names, func(name string) bool { return hasClaim(claims, name) })
}
