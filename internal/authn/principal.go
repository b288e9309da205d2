package authn

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// Principal is the caller that a verified token identifies.
type Principal struct {
	// Ref is "user:<issuer name>|<subject>", or "service:<issuer name>|<subject>"
	// for an application token, with the id built by object.PrincipalID.
	// For a LocalIssuer it is the token's "sub", parsed.
	Ref object.Ref

	// IssuerName is the configured short name of the issuer.
	IssuerName string
	// Issuer is the token's "iss" value.
	Issuer string
	// Subject is the value of the configured subject claim ("sub" by default).
	Subject string
	// Tenant is the value of the configured tenant claim, or empty when no
	// tenant claim is configured.
	Tenant string
	// TokenID is the token's "jti" value, or empty when it has none.
	TokenID string
	// Expiry is the token's "exp" value.
	Expiry time.Time
}

// principal maps the claims of a verified token to a Principal. The subject
// claim is required and must be a non-empty string. A configured tenant
// claim is required too, and for a multi-tenant issuer it must name the
// tenant of the token's "iss". An app token marker claim is optional, but
// when present it must be a string, so that a value of another type cannot
// silently turn a service token into a user token or the reverse.
func (v *issuerVerifier) principal(token *oidc.IDToken, claims map[string]json.RawMessage) (*Principal, error) {
	subjectClaim := v.cfg.Claims.SubjectClaim()
	subject, ok, err := stringClaim(claims, subjectClaim)
	if err != nil {
		return nil, err
	}
	if !ok || subject == "" {
		return nil, fmt.Errorf("subject claim %q is missing or empty", subjectClaim)
	}

	var tenant string
	if name := v.cfg.Claims.Tenant; name != "" {
		tenant, ok, err = stringClaim(claims, name)
		if err != nil {
			return nil, err
		}
		if !ok || tenant == "" {
			return nil, fmt.Errorf("tenant claim %q is missing or empty", name)
		}
	}
	if v.tenant != "" && tenant != v.tenant {
		return nil, fmt.Errorf("tenant claim %q is %q, but iss is the issuer URL of tenant %q", v.cfg.Claims.Tenant, truncate(tenant), v.tenant)
	}

	tokenID, _, err := stringClaim(claims, "jti")
	if err != nil {
		return nil, err
	}

	ref, err := v.principalRef(subject, claims)
	if err != nil {
		return nil, err
	}

	return &Principal{
		Ref:        ref,
		IssuerName: v.cfg.Name,
		Issuer:     token.Issuer,
		Subject:    subject,
		Tenant:     tenant,
		TokenID:    tokenID,
		Expiry:     token.Expiry,
	}, nil
}

// principalRef returns the principal that subject names. For a local
// issuer, subject is the principal reference itself. For any other issuer it
// is "user:<issuer name>|<subject>", or "service:..." when the app token
// marker claim has one of the configured values.
func (v *issuerVerifier) principalRef(subject string, claims map[string]json.RawMessage) (object.Ref, error) {
	if v.local != nil {
		ref, err := object.ParseSubject(subject)
		if err != nil || (ref.Type != object.TypeUser && ref.Type != object.TypeService) {
			return object.Ref{}, fmt.Errorf("sub %q: %w", truncate(subject), errNotPrincipalRef)
		}
		return ref, nil
	}

	principalType := object.TypeUser
	if app := v.cfg.AppTokens; app != nil {
		marker, ok, err := stringClaim(claims, app.Claim)
		if err != nil {
			return object.Ref{}, err
		}
		if ok && slices.Contains(app.Values, marker) {
			principalType = object.TypeService
		}
	}

	id, err := object.PrincipalID(v.cfg.Name, subject)
	if err != nil {
		return object.Ref{}, fmt.Errorf("subject claim %q: %w", v.cfg.Claims.SubjectClaim(), err)
	}
	return object.Ref{Type: principalType, ID: id}, nil
}

// stringClaim returns the claim called name, whether it is present, and an
// error if it is present but not a JSON string. A JSON null counts as
// absent.
func stringClaim(claims map[string]json.RawMessage, name string) (string, bool, error) {
	raw, ok := claims[name]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, fmt.Errorf("claim %q is not a string", name)
	}
	return s, true, nil
}

type principalKey struct{}

// ContextWithPrincipal returns a copy of ctx that carries p.
func ContextWithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFromContext returns the principal stored by ContextWithPrincipal,
// and false when ctx carries none.
func PrincipalFromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}
