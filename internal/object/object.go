// Package object parses and validates the object references that Gatehouse
// exchanges with its callers and with SpiceDB, such as "document:d1" or
// "user:corp|alice".
//
// Two id patterns exist. Resources (org, workspace, project, document, group)
// use ResourceIDPattern, chosen by the app that creates them. Principals (user,
// service) use PrincipalIDPattern, derived from the token that identifies them:
// see PrincipalID.
package object

import (
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Object types of the Gatehouse schema.
const (
	TypeUser      = "user"
	TypeService   = "service"
	TypeGroup     = "group"
	TypeOrg       = "org"
	TypeWorkspace = "workspace"
	TypeProject   = "project"
	TypeDocument  = "document"
	TypePlatform  = "platform"
	TypeLink      = "link"
	TypeGrant     = "grant"
)

// Patterns for object ids. Both are subsets of what SpiceDB accepts, so a
// valid Gatehouse id is always a valid SpiceDB id.
const (
	// ResourceIDPattern is the id of an org, workspace, project, document or
	// group: 1 to 128 ASCII letters, digits, '_' or '-', starting with a
	// letter or digit.
	ResourceIDPattern = `^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`

	// PrincipalIDPattern is the id of a user or service: the issuer's short
	// name, '|', then the token's subject, written as is when it contains
	// only letters, digits, '_' and '-' (at most 255 characters), otherwise
	// as '=' followed by its unpadded base64url encoding.
	PrincipalIDPattern = `^[a-z][a-z0-9-]{0,31}\|(=[A-Za-z0-9_-]{1,344}|[A-Za-z0-9_-]{1,255})$`

	// IssuerNamePattern is the short name of a trusted issuer.
	IssuerNamePattern = `^[a-z][a-z0-9-]{0,31}$`
)

var (
	resourceIDRe   = regexp.MustCompile(ResourceIDPattern)
	principalIDRe  = regexp.MustCompile(PrincipalIDPattern)
	issuerNameRe   = regexp.MustCompile(IssuerNamePattern)
	plainSubjectRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
)

// MaxSubjectLength is the longest token subject, in bytes, that PrincipalID
// accepts. OpenID Connect Core 1.0, section 2, limits "sub" to 255 ASCII
// characters; the extra room covers identity providers that use longer ids.
const MaxSubjectLength = 256

// ErrInvalid is wrapped by every parse and validation error of this package.
var ErrInvalid = errors.New("invalid object")

// Ref names one object, such as document:d1.
type Ref struct {
	Type string
	ID   string
}

// String returns the "type:id" form.
func (r Ref) String() string { return r.Type + ":" + r.ID }

// IsZero reports whether r is the zero Ref.
func (r Ref) IsZero() bool { return r.Type == "" && r.ID == "" }

// IsPrincipal reports whether r is a user or a service.
func (r Ref) IsPrincipal() bool { return r.Type == TypeUser || r.Type == TypeService }

// resourceTypes are the types that callers create through the API.
var resourceTypes = map[string]bool{
	TypeOrg: true, TypeWorkspace: true, TypeProject: true, TypeDocument: true, TypeGroup: true,
}

// IsResourceType reports whether t is a type that callers create and delete
// through the API.
func IsResourceType(t string) bool { return resourceTypes[t] }

// ParentType returns the type that a resource of type t must have as parent,
// and false for an org, which has none.
func ParentType(t string) (string, bool) {
	switch t {
	case TypeWorkspace, TypeGroup:
		return TypeOrg, true
	case TypeProject:
		return TypeWorkspace, true
	case TypeDocument:
		return TypeProject, true
	}
	return "", false
}

// ParentRelation returns the schema relation that links a resource of type t
// to its parent (or, for an org, to the platform).
func ParentRelation(t string) string {
	switch t {
	case TypeWorkspace, TypeGroup:
		return "org"
	case TypeProject:
		return "workspace"
	case TypeDocument:
		return "project"
	case TypeOrg:
		return "platform"
	}
	return ""
}

// ChildTypes returns the types whose parent may have type t.
func ChildTypes(t string) []string {
	switch t {
	case TypeOrg:
		return []string{TypeWorkspace, TypeGroup}
	case TypeWorkspace:
		return []string{TypeProject}
	case TypeProject:
		return []string{TypeDocument}
	}
	return nil
}

// ParseResource parses "type:id" where type is a resource type.
func ParseResource(s string) (Ref, error) {
	r, err := split(s)
	if err != nil {
		return Ref{}, err
	}
	if !IsResourceType(r.Type) {
		return Ref{}, fmt.Errorf("%w: %q: type must be one of org, workspace, project, document, group", ErrInvalid, s)
	}
	if !resourceIDRe.MatchString(r.ID) {
		return Ref{}, fmt.Errorf("%w: %q: id must match %s", ErrInvalid, s, ResourceIDPattern)
	}
	return r, nil
}

// ParseSubject parses a subject: "user:<id>", "service:<id>" or "group:<id>".
// A group subject stands for the group's members.
func ParseSubject(s string) (Ref, error) {
	r, err := split(s)
	if err != nil {
		return Ref{}, err
	}
	switch r.Type {
	case TypeUser, TypeService:
		if !principalIDRe.MatchString(r.ID) {
			return Ref{}, fmt.Errorf("%w: %q: id must match %s", ErrInvalid, s, PrincipalIDPattern)
		}
	case TypeGroup:
		if !resourceIDRe.MatchString(r.ID) {
			return Ref{}, fmt.Errorf("%w: %q: id must match %s", ErrInvalid, s, ResourceIDPattern)
		}
	default:
		return Ref{}, fmt.Errorf("%w: %q: subject type must be user, service or group", ErrInvalid, s)
	}
	return r, nil
}

func split(s string) (Ref, error) {
	if len(s) > 1100 {
		return Ref{}, fmt.Errorf("%w: longer than 1100 bytes", ErrInvalid)
	}
	typ, id, ok := strings.Cut(s, ":")
	if !ok || typ == "" || id == "" {
		return Ref{}, fmt.Errorf("%w: %q: expected \"type:id\"", ErrInvalid, s)
	}
	return Ref{Type: typ, ID: id}, nil
}

// ValidIssuerName reports whether name can be used as an issuer's short name.
func ValidIssuerName(name string) bool { return issuerNameRe.MatchString(name) }

// PrincipalID returns the object id of the principal that issuer issuerName
// identifies by subject. The mapping is injective: two different (issuer,
// subject) pairs never share an id, so the same "sub" from two issuers is
// two principals.
func PrincipalID(issuerName, subject string) (string, error) {
	if !issuerNameRe.MatchString(issuerName) {
		return "", fmt.Errorf("%w: issuer name %q must match %s", ErrInvalid, issuerName, IssuerNamePattern)
	}
	if subject == "" || len(subject) > MaxSubjectLength {
		return "", fmt.Errorf("%w: subject must be 1 to %d bytes", ErrInvalid, MaxSubjectLength)
	}
	if plainSubjectRe.MatchString(subject) {
		return issuerName + "|" + subject, nil
	}
	return issuerName + "|=" + base64.RawURLEncoding.EncodeToString([]byte(subject)), nil
}
