package authz

import (
	"context"
	"strconv"

	"github.com/gatehouse-authz/gatehouse/internal/audit"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// Caller is the principal that requests a change, with what the audit log
// records about the request.
type Caller struct {
	Ref     object.Ref
	Issuer  string
	TokenID string

	// OnBehalfOf is the user a service acts for, when the request names one.
	OnBehalfOf object.Ref

	ClientIP  string
	UserAgent string
	RequestID string

	// Reason is the caller's free-text justification, if given.
	Reason string
}

// Audit actions.
const (
	ActionResourceCreate = "resource.create"
	ActionResourceDelete = "resource.delete"
	ActionMemberSet      = "member.set"
	ActionMemberRemove   = "member.remove"
	ActionSessionsRevoke = "sessions.revoke"
	ActionTokenExchange  = "token.exchange"
)

// auditedChange describes one change for the audit log.
type auditedChange struct {
	org      object.Ref
	action   string
	resource object.Ref
	subject  object.Ref
	before   map[string]string
	after    map[string]string

	breakGlass bool
}

// begin records c before it is made.
func (s *Service) begin(ctx context.Context, caller Caller, c auditedChange) (*audit.Change, error) {
	return s.beginIn(ctx, caller, c)
}

// beginIn records c in the chain of c.org, or in the platform chain when
// c.org is zero.
func (s *Service) beginIn(ctx context.Context, caller Caller, c auditedChange) (*audit.Change, error) {
	chain := audit.PlatformChain
	if !c.org.IsZero() {
		chain = c.org.String()
	}
	e := audit.Entry{
		Chain:      chain,
		Actor:      audit.Actor{Principal: caller.Ref.String(), Issuer: caller.Issuer, TokenID: caller.TokenID},
		Action:     c.action,
		Resource:   c.resource.String(),
		Before:     c.before,
		After:      c.after,
		Reason:     caller.Reason,
		BreakGlass: c.breakGlass,
		ClientIP:   caller.ClientIP,
		UserAgent:  caller.UserAgent,
		RequestID:  caller.RequestID,
	}
	if !c.subject.IsZero() {
		e.Subject = c.subject.String()
	}
	if !caller.OnBehalfOf.IsZero() {
		e.OnBehalfOf = caller.OnBehalfOf.String()
	}
	return s.recorder.Begin(ctx, e)
}

// finish records the outcome of a change begun with begin.
func finish(ctx context.Context, change *audit.Change, token string, err error) {
	if err != nil {
		change.Failed(ctx)
		return
	}
	change.Applied(ctx, token)
}

// roleState is the before or after state of a member change.
func roleState(role string) map[string]string {
	if role == "" {
		return map[string]string{}
	}
	return map[string]string{"role": role}
}

// InPlace reports whether the change an audit event describes is in place
// now. The reconciler uses it for events whose outcome was never recorded.
func (s *Service) InPlace(ctx context.Context, e audit.Entry) (bool, error) {
	resource, err := object.ParseResource(e.Resource)
	if err != nil {
		return false, audit.ErrUnknownState
	}
	switch e.Action {
	case ActionResourceCreate:
		return s.engine.Exists(ctx, resource)
	case ActionResourceDelete:
		exists, err := s.engine.Exists(ctx, resource)
		return !exists, err
	case ActionMemberSet, ActionMemberRemove:
		subject, err := object.ParseSubject(e.Subject)
		if err != nil {
			return false, nil
		}
		role, err := s.directRole(ctx, resource, subject)
		if err != nil {
			return false, err
		}
		return role == e.After["role"], nil
	}
	// Grants, links, exchanges and revocations leave no state that shows
	// whether they happened.
	return false, audit.ErrUnknownState
}

func count(n int) string { return strconv.Itoa(n) }

// RecordEvent records an event that changes no relationship, such as a
// token exchange, in the platform chain, with its outcome applied. An error
// means nothing was recorded and the caller must not go ahead.
func (s *Service) RecordEvent(ctx context.Context, caller Caller, action string, resource object.Ref, after map[string]string) error {
	change, err := s.beginIn(ctx, caller, auditedChange{action: action, resource: resource, after: after})
	if err != nil {
		return err
	}
	change.Applied(ctx, "")
	return nil
}
