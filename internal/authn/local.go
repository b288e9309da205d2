package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/gatehouse-authz/gatehouse/internal/config"
)

// LocalIssuer is an issuer whose keys live in this process, such as
// Gatehouse's own token issuer. Its tokens are verified without any HTTP
// request, and their "sub" is already a principal reference such as
// "user:corp|alice" or "service:corp|billing", used as Principal.Ref as it
// is, without the local issuer's name.
type LocalIssuer struct {
	// Config is the issuer's name, exact issuer URL, audiences and
	// algorithms, validated like a configured issuer. Claims.Subject must
	// be empty or "sub". JWKSURI, Tenants and AppTokens must be empty,
	// because KeySet replaces the first and "sub" carries the principal
	// type. Default algorithms: every one of config.SupportedAlgorithms.
	Config config.Issuer

	// KeySet verifies signatures in-process. Required.
	KeySet oidc.KeySet

	// RequireType is the required JWS "typ" header, such as "at+jwt". It is
	// compared case-insensitively, and an "application/" prefix is ignored
	// (RFC 9068, section 2.1). When set, it replaces the default access
	// token markers unless Config.AccessTokens is set. Default: empty, so
	// only those markers apply.
	RequireType string

	// Check runs after every other check with the verified token's claims
	// and its principal, on every request: Authenticate caches verified
	// tokens, but not the result of Check. A non-nil error rejects the token and is returned wrapped
	// in ErrInvalidToken; wrap ErrStaleToken in it when the caller should
	// obtain a new token. Check must be safe for concurrent use, and ctx is
	// the request's. Default: nil, no extra check.
	Check func(ctx context.Context, claims map[string]json.RawMessage, p *Principal) error
}

// validateLocal checks the local issuers and that their names and issuer
// URLs differ from each other and from the configured issuers.
func validateLocal(issuers []config.Issuer, locals []LocalIssuer) error {
	if len(locals) == 0 {
		return nil
	}

	configs := make([]config.Issuer, 0, len(locals))
	for i, local := range locals {
		cfg := local.Config
		switch {
		case local.KeySet == nil:
			return fmt.Errorf("local issuer %d (%q): KeySet is required", i, cfg.Name)
		case cfg.Claims.Subject != "" && cfg.Claims.Subject != config.DefaultSubjectClaim:
			return fmt.Errorf("local issuer %q: subject claim must be %q, got %q", cfg.Name, config.DefaultSubjectClaim, cfg.Claims.Subject)
		case cfg.JWKSURI != "" || len(cfg.Tenants) > 0 || cfg.AppTokens != nil:
			return fmt.Errorf("local issuer %q: jwks_uri, tenants and app_tokens must be empty", cfg.Name)
		}
		configs = append(configs, cfg)
	}

	// Validating both lists as one file checks that names and issuer URLs
	// are unique across them. Local issuers come last, so the error keys
	// of the configured issuers keep their indexes.
	all := append(append([]config.Issuer(nil), issuers...), configs...)
	if err := (&config.File{Issuers: all}).Validate(); err != nil {
		return fmt.Errorf("local issuers (issuers[%d] and later): %w", len(issuers), err)
	}
	return nil
}

// newLocalVerifier returns the verifier of a local issuer, ready at once.
func newLocalVerifier(local LocalIssuer, opts Options) *issuerVerifier {
	algorithms := local.Config.Algorithms
	if len(algorithms) == 0 {
		algorithms = config.SupportedAlgorithms()
	}
	v := &issuerVerifier{
		cfg:   local.Config,
		name:  local.Config.Name,
		opts:  opts,
		local: &local,
	}
	v.ready.Store(oidc.NewVerifier(local.Config.Issuer, local.KeySet, &oidc.Config{
		SupportedSigningAlgs: algorithms,
		// Authenticate checks the audience against the configured list.
		SkipClientIDCheck: true,
		Now:               opts.Now,
	}))
	return v
}

var errNotPrincipalRef = errors.New(`sub must be a principal reference such as "user:corp|alice" or "service:corp|billing"`)
