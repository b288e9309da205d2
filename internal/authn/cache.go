package authn

import (
	"crypto/sha256"
	"encoding/json"
	"time"

	"github.com/maypok86/otter/v2"
)

// DefaultTokenCacheSize is the number of verified tokens an Authenticator
// keeps when Options.TokenCacheSize is zero.
const DefaultTokenCacheSize = 1 << 15

// maxTokenCacheAge bounds how long a verified token is served from the
// cache, whatever its "exp". After that its signature is checked again,
// against the issuer's key set as last fetched.
const maxTokenCacheAge = 5 * time.Minute

// verifiedToken is a token that passed every check of Authenticate except
// a local issuer's Check, which runs on every request.
type verifiedToken struct {
	verifier  *issuerVerifier
	principal Principal
	claims    map[string]json.RawMessage // only for local issuers
	until     time.Time                  // the earlier of "exp" and the cache age limit
	keys      uint64                     // the verifier's keysReplaced before verification
}

// tokenCache maps the SHA-256 of a raw token to its verification. Keying
// by the hash of the exact bytes means only the very token that was
// verified is served from the cache.
type tokenCache struct {
	tokens *otter.Cache[[sha256.Size]byte, *verifiedToken]
}

func newTokenCache(size int) (*tokenCache, error) {
	tokens, err := otter.New(&otter.Options[[sha256.Size]byte, *verifiedToken]{MaximumSize: size})
	if err != nil {
		return nil, err
	}
	return &tokenCache{tokens: tokens}, nil
}

// get returns the verification of the token with hash key if it is still
// valid at now.
func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (*verifiedToken, bool) {
	vt, ok := c.tokens.GetIfPresent(key)
	if !ok || !now.Before(vt.until) || vt.keys != vt.verifier.keysReplaced.Load() {
		return nil, false
	}
	return vt, true
}

func (c *tokenCache) put(key [sha256.Size]byte, vt *verifiedToken, now time.Time) {
	if limit := now.Add(maxTokenCacheAge); vt.until.After(limit) {
		vt.until = limit
	}
	c.tokens.Set(key, vt)
}
