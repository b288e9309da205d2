package links

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// TokenPrefix starts every link token, so that secret scanners can find
// tokens that leak into code or logs.
const TokenPrefix = "ghl_"

// tokenBytes is the token's entropy: 256 bits from crypto/rand.
const tokenBytes = 32

// maxTokenLength bounds the tokens that are hashed and looked up; real
// tokens are len(TokenPrefix)+43 bytes.
const maxTokenLength = 256

// newToken returns a fresh token and its SHA-256 digest.
func newToken() (string, []byte) {
	b := make([]byte, tokenBytes)
	// crypto/rand.Read never returns an error since Go 1.24; it crashes
	// the program instead when the system's randomness fails.
	_, _ = rand.Read(b)
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, hashToken(token)
}

// hashToken returns the digest under which token is stored. Lookups are by
// digest, so comparing tokens in constant time is not needed.
func hashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// wellFormed reports whether token could be a link token. It saves a
// lookup, not a check: an ill-formed token is counted as unknown all the
// same.
func wellFormed(token string) bool {
	return len(token) <= maxTokenLength && strings.HasPrefix(token, TokenPrefix)
}

// newID returns a fresh link id: 128 random bits in hex, valid as a
// SpiceDB object id. The id is not secret.
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
