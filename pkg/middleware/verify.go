package middleware

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// signingAlgorithm is the only JWS algorithm of Gatehouse tokens.
const signingAlgorithm = "ES256"

// accessTokenType is the "typ" header of a JWT access token (RFC 9068,
// section 2.1).
const accessTokenType = "at+jwt"

// forbiddenHeaders are JWS header parameters that Gatehouse never sets.
// "jku", "x5u", "jwk" and "x5c" point at or carry a key chosen by the
// sender (RFC 7515, sections 4.1.2 to 4.1.6), and "crit" names extensions
// that this package does not implement (RFC 7515, section 4.1.11).
var forbiddenHeaders = []string{"crit", "jku", "x5u", "jwk", "x5c"}

// Verify checks raw, a Gatehouse access token without the "Bearer "
// prefix, and returns its principal. The error wraps ErrInvalidToken,
// ErrStale or ErrUnavailable. ctx bounds the auth version read that a
// principal not in the cache needs.
//
// Verify checks, in this order:
//   - the JWS header: alg ES256, typ at+jwt, a kid, no key-carrying parameters;
//   - the signature, against the keys that Gatehouse publishes;
//   - "iss" equal to GatehouseURL, "aud" containing Audience, and "exp"
//     after the current time;
//   - "sub" naming a user or a service, and a positive integer "av";
//   - last, "av" not below the principal's current auth version.
//
// It does not check scopes or any permission. RequirePermission does that.
func (v *Verifier) Verify(ctx context.Context, raw string) (Principal, error) {
	if err := checkHeader(raw); err != nil {
		return Principal{}, invalid(err)
	}

	token, err := v.oidc.Verify(ctx, raw)
	if err != nil {
		return Principal{}, invalid(err)
	}

	// go-oidc accepts a token whose "exp" equals the current time, but RFC
	// 7519, section 4.1.4 requires the current time to be before it.
	if !v.now().Before(token.Expiry) {
		return Principal{}, invalid(fmt.Errorf("token expired at %s", token.Expiry.UTC().Format(time.RFC3339)))
	}

	var claims struct {
		AuthVersion *int64 `json:"av"`
		ID          string `json:"jti"`
	}
	if err := token.Claims(&claims); err != nil {
		return Principal{}, invalid(fmt.Errorf("decode claims: %w", err))
	}
	if !isPrincipal(token.Subject) {
		return Principal{}, invalid(fmt.Errorf("sub %q is not a user or a service", truncate(token.Subject)))
	}
	if claims.AuthVersion == nil || *claims.AuthVersion < 1 {
		return Principal{}, invalid(errors.New("token has no positive av claim"))
	}
	p := Principal{ID: token.Subject, AuthVersion: *claims.AuthVersion, TokenID: claims.ID, Expiry: token.Expiry}

	if err := v.checkFreshness(ctx, p, raw); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// invalid wraps err, the reason a token was rejected, in ErrInvalidToken.
func invalid(err error) error {
	return fmt.Errorf("%w: %w", ErrInvalidToken, err)
}

// checkHeader checks the JWS protected header of raw before any key is
// fetched. go-oidc checks "alg" again and the signature afterwards.
func checkHeader(raw string) error {
	encoded, _, ok := strings.Cut(raw, ".")
	if !ok {
		return errors.New("token is not a JWS compact serialization")
	}
	if strings.Count(raw, ".") != 2 {
		return fmt.Errorf("token has %d parts, expected 3", strings.Count(raw, ".")+1)
	}
	decoded, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return errors.New("header is not unpadded base64url")
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal(decoded, &params); err != nil {
		return errors.New("header is not a JSON object")
	}

	for _, name := range forbiddenHeaders {
		if _, ok := params[name]; ok {
			return fmt.Errorf("header parameter %q is not accepted", name)
		}
	}

	var header struct {
		Algorithm string `json:"alg"`
		Type      string `json:"typ"`
		KeyID     string `json:"kid"`
	}
	if err := json.Unmarshal(decoded, &header); err != nil {
		return errors.New("header parameters alg, typ and kid must be strings")
	}
	if header.Algorithm != signingAlgorithm {
		return fmt.Errorf("alg %q, expected %q", truncate(header.Algorithm), signingAlgorithm)
	}
	// RFC 7515, section 4.1.9 lets "typ" omit the "application/" prefix,
	// and media types compare case-insensitively.
	if !strings.EqualFold(strings.TrimPrefix(strings.ToLower(header.Type), "application/"), accessTokenType) {
		return fmt.Errorf("typ %q, expected %q", truncate(header.Type), accessTokenType)
	}
	if header.KeyID == "" {
		return errors.New("header has no kid")
	}
	return nil
}

// isPrincipal reports whether sub names a user or a service, such as
// "user:corp|alice". It checks the type and a non-empty id, not the id's
// syntax, which Gatehouse has already checked before signing.
func isPrincipal(sub string) bool {
	typ, id, ok := strings.Cut(sub, ":")
	return ok && (typ == "user" || typ == "service") && id != ""
}

// truncate shortens a value taken from a token for an error message.
func truncate(s string) string {
	const maxLength = 64
	if len(s) <= maxLength {
		return s
	}
	return s[:maxLength] + "..."
}
