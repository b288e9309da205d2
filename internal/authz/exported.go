package authz

import (
	"context"
	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/audit"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// The methods of this file let the packages that build on the tenancy
// model (temporary grants, share links) reuse its rules instead of copying
// them.

// Engine returns the SpiceDB engine.
func (s *Service) Engine() *engine.Engine { return s.engine }

// Allowed reports whether subject has permission on resource, at full
// consistency. Only a definite yes is true.
func (s *Service) Allowed(ctx context.Context, subject object.Ref, permission string, resource object.Ref) (bool, error) {
	return s.allowed(ctx, subject, permission, resource)
}

// Require returns nil when caller has permission on resource, ErrForbidden
// when it can view the resource but lacks the permission, and ErrNotFound
// otherwise.
func (s *Service) Require(ctx context.Context, caller object.Ref, permission string, resource object.Ref) error {
	return s.require(ctx, caller, permission, resource)
}

// OrgOf returns the org that ref belongs to.
func (s *Service) OrgOf(ctx context.Context, ref object.Ref) (object.Ref, error) {
	return s.orgOf(ctx, ref)
}

// OrgChain returns the org that ref belongs to, and preconditions that hold
// while the parent links from ref to that org are unchanged. A write
// recorded under that org with engine.ForOrg must carry them.
func (s *Service) OrgChain(ctx context.Context, ref object.Ref) (object.Ref, []*v1.Precondition, error) {
	return s.orgChain(ctx, ref)
}

// Affected returns the principals whose access a change to subjects'
// relationships alters: the principals among subjects and every member of
// each group among them.
func (s *Service) Affected(ctx context.Context, subjects ...object.Ref) ([]string, error) {
	return s.affected(ctx, subjects...)
}

// WithBumps runs write between two raises of principals' auth versions;
// see withBumps.
func (s *Service) WithBumps(ctx context.Context, principals []string, write func() error) error {
	return s.withBumps(ctx, principals, write)
}

// Change describes a change for the audit log.
type Change struct {
	Org        object.Ref // zero for the platform chain
	Action     string
	Resource   object.Ref
	Subject    object.Ref
	Before     map[string]string
	After      map[string]string
	BreakGlass bool
}

// Begin records c in the audit log before it is made. The caller must not
// make the change when Begin fails, and must record the outcome with the
// returned Change's Applied or Failed.
func (s *Service) Begin(ctx context.Context, caller Caller, c Change) (*audit.Change, error) {
	return s.beginIn(ctx, caller, auditedChange{
		org: c.Org, action: c.Action, resource: c.Resource, subject: c.Subject,
		before: c.Before, after: c.After, breakGlass: c.BreakGlass,
	})
}

// CreatedAt returns when the current incarnation of resource was created,
// from its latest applied resource.create audit event, or the zero time
// when the resource has none (it does not exist, or its creation was never
// recorded as applied).
func (s *Service) CreatedAt(ctx context.Context, resource object.Ref) (time.Time, error) {
	exists, err := s.engine.Exists(ctx, resource)
	if err != nil || !exists {
		return time.Time{}, err
	}
	var created time.Time
	f := audit.Filter{Resource: resource.String(), Action: ActionResourceCreate, Limit: 1000}
	for {
		events, err := s.recorder.Log().List(ctx, f)
		if err != nil {
			return time.Time{}, err
		}
		for _, e := range events {
			if e.Outcome == audit.OutcomeApplied || e.Outcome == audit.OutcomeReconciledApplied || e.Outcome == "" {
				created = e.Time
			}
		}
		if len(events) < f.Limit {
			return created, nil
		}
		f.After = events[len(events)-1].Position
	}
}
