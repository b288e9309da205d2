package authn

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// forbiddenHeaders are JWS header parameters that make a token invalid.
// "jku", "x5u", "jwk" and "x5c" point at or carry a key chosen by the
// token's sender (RFC 7515, sections 4.1.2 to 4.1.6), and Gatehouse trusts
// only the issuer's key set. "crit" asks the verifier to understand
// extensions that Gatehouse does not implement (RFC 7515, section 4.1.11).
var forbiddenHeaders = []string{"crit", "jku", "x5u", "jwk", "x5c"}

// jwsHeader holds the header parameters that the checks after the
// signature read. go-jose and go-oidc read "alg" and "kid" themselves.
type jwsHeader struct {
	// Type is the "typ" parameter, or empty when absent.
	Type string
}

// splitCompact returns the decoded header and payload of a JWS compact
// serialization. It does not verify anything.
func splitCompact(raw string) (header, payload []byte, err error) {
	parts := strings.Split(raw, ".")
	switch len(parts) {
	case 3:
	case 5:
		return nil, nil, errors.New("token is a JWE (5 parts), only signed tokens are accepted")
	default:
		return nil, nil, fmt.Errorf("token has %d parts, expected a JWS compact serialization with 3", len(parts))
	}

	header, err = base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, nil, errors.New("header is not unpadded base64url")
	}
	payload, err = base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, nil, errors.New("payload is not unpadded base64url")
	}
	return header, payload, nil
}

// parseHeader rejects headers that carry one of forbiddenHeaders or a
// "nonce", and returns the rest. Parameter names are matched exactly, as
// go-jose does.
func parseHeader(header []byte) (jwsHeader, error) {
	var params map[string]json.RawMessage
	if err := json.Unmarshal(header, &params); err != nil {
		return jwsHeader{}, errors.New("header is not a JSON object")
	}

	for _, name := range forbiddenHeaders {
		if _, ok := params[name]; ok {
			return jwsHeader{}, fmt.Errorf("header parameter %q is not accepted", name)
		}
	}

	// Microsoft Graph access tokens carry a "nonce" header, and their
	// signature covers a hash of it, so that only Graph can verify them.
	// Such a token is never meant for Gatehouse.
	if _, ok := params["nonce"]; ok {
		return jwsHeader{}, errors.New(`header parameter "nonce" is not accepted: the token is meant for Microsoft Graph or another resource`)
	}

	var h jwsHeader
	if raw, ok := params["typ"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &h.Type); err != nil {
			return jwsHeader{}, errors.New(`header parameter "typ" is not a string`)
		}
	}
	return h, nil
}

// mediaTypeMatches reports whether the "typ" value typ names the media type
// want. Both are compared case-insensitively without an "application/"
// prefix (RFC 7515, section 4.1.9, and RFC 9068, section 2.1).
func mediaTypeMatches(typ, want string) bool {
	return strings.EqualFold(trimApplication(typ), trimApplication(want))
}

func trimApplication(mediaType string) string {
	const prefix = "application/"
	if len(mediaType) >= len(prefix) && strings.EqualFold(mediaType[:len(prefix)], prefix) {
		return mediaType[len(prefix):]
	}
	return mediaType
}
