// Package grants manages temporary grants: a role on a resource for a
// subject that ends by itself.
//
// A grant G of role R on resource X to subject S is two relationships:
// X#R@grant:G#holder with G's end as SpiceDB expiration, and
// grant:G#holder@S. SpiceDB stops honouring the first at the end, so access
// ends even when no Gatehouse instance runs. The scheduler records the end
// and makes the subject's Gatehouse tokens stale. The grant never touches
// S's own, permanent roles.
package grants

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// objectType is the SpiceDB type of grants, and holderRelation the relation
// that names a grant's subject.
const (
	objectType     = "grant"
	holderRelation = "holder"
)

// State is the stage of a grant's life.
type State string

// States of a grant. Only scheduled and active grants can still change.
const (
	// StateScheduled grants start at NotBefore; nothing is written to
	// SpiceDB until the scheduler starts them.
	StateScheduled State = "scheduled"
	StateActive    State = "active"
	StateExpired   State = "expired"
	StateRevoked   State = "revoked"
)

// ValidState reports whether s names a state.
func ValidState(s State) bool {
	switch s {
	case StateScheduled, StateActive, StateExpired, StateRevoked:
		return true
	}
	return false
}

// Grant is one temporary grant.
type Grant struct {
	ID       string
	Resource object.Ref
	Subject  object.Ref
	Role     string

	// Org is the org of Resource, whose audit chain records the grant.
	Org object.Ref

	NotBefore time.Time
	ExpiresAt time.Time

	// Grantor is the principal that created the grant, as "user:..." or
	// "service:...".
	Grantor    string
	State      State
	BreakGlass bool
	Reason     string
	CreatedAt  time.Time
}

// grantableRoles lists, per resource type, the roles whose relation accepts
// grant#holder with expiration in the schema. Org owner and app, and group
// admin, are never granted temporarily.
var grantableRoles = map[string][]string{
	object.TypeOrg:       {"admin", "member"},
	object.TypeWorkspace: {"admin", "editor", "viewer"},
	object.TypeProject:   {"admin", "editor", "viewer"},
	object.TypeDocument:  {"owner", "editor", "viewer"},
	object.TypeGroup:     {"member"},
}

// GrantableRoles returns the roles a temporary grant may give on a resource
// of type t.
func GrantableRoles(t string) []string { return grantableRoles[t] }

// Defaults of Config.
const (
	DefaultMaxDuration           = 30 * 24 * time.Hour
	DefaultBreakGlassMaxDuration = time.Hour
)

// Config configures a Service. The zero value applies the defaults given
// per field.
type Config struct {
	// MaxDuration bounds a grant's length (from its start to its end) per
	// role name; the key "default" applies to roles without their own
	// entry. Default: DefaultMaxDuration for every role.
	MaxDuration map[string]time.Duration

	// BreakGlassMaxDuration bounds a break-glass grant's length. Default:
	// DefaultBreakGlassMaxDuration.
	BreakGlassMaxDuration time.Duration

	// BreakGlass are the principals ("user:corp|alice") that may grant
	// themselves any grantable role on any resource without manage.
	// Default: none.
	BreakGlass []string

	// Auditors are the platform auditors, who may list and read every
	// grant. Default: none.
	Auditors []string

	// Logger receives the scheduler's errors and a warning per break-glass
	// grant. Default: slog.Default().
	Logger *slog.Logger

	// Now is the scheduler's and the API's clock. Default: time.Now.
	// SpiceDB's expiration uses its datastore's clock regardless.
	Now func() time.Time
}

// maxDuration returns the longest grant of role.
func (c Config) maxDuration(role string) time.Duration {
	if d, ok := c.MaxDuration[role]; ok && d > 0 {
		return d
	}
	if d, ok := c.MaxDuration["default"]; ok && d > 0 {
		return d
	}
	return DefaultMaxDuration
}

// errNotFound is the error of a grant that does not exist or that the
// caller may not see.
func errNotFound(id string) error {
	return fmt.Errorf("%w: grant %s", authz.ErrNotFound, id)
}
