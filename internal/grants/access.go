package grants

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

func isPrecondition(err error) bool { return errors.Is(err, engine.ErrPreconditionFailed) }

// current returns g with the state a reader should see: an active grant
// past its end is expired, because SpiceDB stopped honouring it then, even
// when the scheduler has not recorded the end yet.
func (s *Service) current(g Grant) Grant {
	if g.State == StateActive && !g.ExpiresAt.After(s.now()) {
		g.State = StateExpired
	}
	return g
}

// Get returns the grant id. Its subject, its grantor, platform auditors,
// break-glass principals (for break-glass grants) and principals with
// manage on its resource may read it. For anyone else it is ErrNotFound.
func (s *Service) Get(ctx context.Context, caller object.Ref, id string) (Grant, error) {
	ctx, cancel := context.WithTimeout(ctx, s.authz.Limits().Timeout)
	defer cancel()

	g, err := s.store.Get(ctx, id)
	if errors.Is(err, errNoGrant) {
		return Grant{}, errNotFound(id)
	}
	if err != nil {
		return Grant{}, err
	}
	if s.canRead(caller, g) {
		return s.current(g), nil
	}
	ok, err := s.authz.Allowed(ctx, caller, "manage", g.Resource)
	if err != nil {
		return Grant{}, err
	}
	if !ok {
		return Grant{}, errNotFound(id)
	}
	return s.current(g), nil
}

// canRead reports whether caller may read g without a check on its
// resource.
func (s *Service) canRead(caller object.Ref, g Grant) bool {
	p := caller.String()
	switch {
	case g.Grantor == p, g.Subject == caller, s.auditor(caller):
		return true
	case g.BreakGlass && slices.Contains(s.config.BreakGlass, p):
		return true
	}
	return false
}

func (s *Service) auditor(caller object.Ref) bool {
	return slices.Contains(s.config.Auditors, caller.String())
}

// ListRequest selects grants for List.
type ListRequest struct {
	// Resource, when set, lists the grants on it; the caller needs manage
	// on it unless it is a platform auditor.
	Resource object.Ref

	Subject    object.Ref
	State      State
	BreakGlass bool
	PageSize   int
	PageToken  string
}

// List returns one page of grants and the token of the next page, or ""
// on the last page. Without a resource, a caller sees the grants it is the
// subject or the grantor of, platform auditors see every grant, and with
// BreakGlass, break-glass principals see every break-glass grant.
func (s *Service) List(ctx context.Context, caller object.Ref, req ListRequest) ([]Grant, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.authz.Limits().Timeout)
	defer cancel()

	limits := s.authz.Limits()
	size := req.PageSize
	switch {
	case size == 0:
		size = limits.DefaultPageSize
	case size < 0 || size > limits.MaxPageSize:
		return nil, "", invalid("page_size must be between 1 and %d", limits.MaxPageSize)
	}
	if req.State != "" && !ValidState(req.State) {
		return nil, "", invalid("state %q must be scheduled, active, expired or revoked", req.State)
	}
	if req.PageToken != "" && !validID(req.PageToken) {
		return nil, "", invalid("page_token is not valid")
	}

	f := Filter{Subject: subjectFilter(req.Subject), State: req.State, BreakGlass: req.BreakGlass, After: req.PageToken, Limit: size}
	switch {
	case !req.Resource.IsZero():
		if !s.auditor(caller) {
			if err := s.authz.Require(ctx, caller, "manage", req.Resource); err != nil {
				return nil, "", err
			}
		}
		f.Resource = req.Resource.String()
	case s.auditor(caller):
	case req.BreakGlass && slices.Contains(s.config.BreakGlass, caller.String()):
	default:
		f.Party = caller.String()
	}

	// The expired state is partly computed, so filter on it after reading:
	// an active grant past its end is listed as expired.
	stored := f
	if f.State == StateExpired || f.State == StateActive {
		stored.State = ""
	}
	var out []Grant
	for {
		page, err := s.store.List(ctx, stored)
		if err != nil {
			return nil, "", err
		}
		for _, g := range page {
			g = s.current(g)
			if f.State == "" || g.State == f.State {
				out = append(out, g)
			}
			stored.After = g.ID
			if len(out) == size {
				return out, g.ID, nil
			}
		}
		if len(page) < stored.Limit {
			return out, "", nil
		}
	}
}

func subjectFilter(subject object.Ref) string {
	if subject.IsZero() {
		return ""
	}
	return subject.String()
}

// validID reports whether id could be a grant id: 32 lowercase hex digits.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// Revoke ends grant id early: it deletes the grant's relationships and
// raises the affected auth versions. The grantor and principals with manage
// on the resource may revoke. Revoking a grant that has ended already changes
// nothing and returns it as it is.
func (s *Service) Revoke(ctx context.Context, c authz.Caller, id string) (Grant, error) {
	ctx, cancel := context.WithTimeout(ctx, s.authz.Limits().Timeout)
	defer cancel()

	if !validID(id) {
		return Grant{}, errNotFound(id)
	}
	g, err := s.store.Get(ctx, id)
	if errors.Is(err, errNoGrant) {
		return Grant{}, errNotFound(id)
	}
	if err != nil {
		return Grant{}, err
	}
	if g.Grantor != c.Ref.String() {
		if err := s.authz.Require(ctx, c.Ref, "manage", g.Resource); err != nil {
			if errors.Is(err, authz.ErrNotFound) && s.canRead(c.Ref, g) {
				err = fmt.Errorf("%w: only the grantor or a manager of %s may revoke grant %s", authz.ErrForbidden, g.Resource, id)
			} else if errors.Is(err, authz.ErrNotFound) {
				err = errNotFound(id)
			}
			return Grant{}, err
		}
	}
	if g.State != StateScheduled && g.State != StateActive {
		return s.current(g), nil
	}

	return s.end(ctx, c, g, ActionRevoke, StateRevoked)
}

// end moves g to state "to" and deletes its relationships, recording
// action in the audit log. A grant that another request or the scheduler
// ended meanwhile is returned as it is now.
func (s *Service) end(ctx context.Context, c authz.Caller, g Grant, action string, to State) (Grant, error) {
	change, err := s.authz.Begin(ctx, c, stateChange(g, action, g.State, to))
	if err != nil {
		return Grant{}, err
	}
	// The state changes first, so that a scheduler starting the grant at
	// the same moment reads it as revoked and deletes what it wrote.
	moved, err := s.store.Transition(ctx, g.ID, []State{StateScheduled, StateActive}, to)
	if err != nil || !moved {
		change.Failed(ctx)
		if err != nil {
			return Grant{}, err
		}
		now, err := s.store.Get(ctx, g.ID)
		if err != nil {
			return Grant{}, err
		}
		return s.current(now), nil
	}
	token, err := s.remove(ctx, g)
	if err != nil {
		// NOTE: the grant is recorded as ended but its relationships may
		// remain until they expire at ExpiresAt. Its audit event is failed.
		change.Failed(ctx)
		return Grant{}, fmt.Errorf("delete relationships of grant %s: %w", g.ID, err)
	}
	change.Applied(ctx, token)
	g.State = to
	return g, nil
}

// scheduler is the audit identity of the scheduler's changes.
var scheduler = authz.Caller{
	Ref:    object.Ref{Type: object.TypePlatform, ID: "gatehouse"},
	Issuer: "gatehouse",
	Reason: "scheduled",
}
