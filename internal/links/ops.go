package links

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// Page sizes of List.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// idPattern matches link ids, which are also List's page tokens.
var idPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// CreateRequest is the request for a new link.
type CreateRequest struct {
	Resource  object.Ref
	Role      string     // RoleViewer or RoleEditor
	Audience  string     // AudienceAnyone or AudienceOrg
	ExpiresAt *time.Time // nil: the link does not expire
	MaxUses   int        // 0: unlimited redemptions
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", authz.ErrInvalid, fmt.Sprintf(format, args...))
}

// validate checks req before anything is read or written.
func (s *Service) validate(req CreateRequest) error {
	switch req.Resource.Type {
	case object.TypeWorkspace, object.TypeProject, object.TypeDocument:
	default:
		return invalid("links can be made only for workspaces, projects and documents, not %q", req.Resource.Type)
	}
	if req.Role != RoleViewer && req.Role != RoleEditor {
		return invalid("role must be %q or %q, not %q", RoleViewer, RoleEditor, req.Role)
	}
	if req.Audience != AudienceAnyone && req.Audience != AudienceOrg {
		return invalid("audience must be %q or %q, not %q", AudienceAnyone, AudienceOrg, req.Audience)
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(s.now()) {
		return invalid("expires_at %s is not in the future", req.ExpiresAt.Format(time.RFC3339))
	}
	if req.MaxUses < 0 || req.MaxUses > MaxUsesLimit {
		return invalid("max_uses must be between 1 and %d", MaxUsesLimit)
	}
	return nil
}

// rolePermission is the permission a creator needs to make a link with
// role: a link never grants more than its creator holds.
func rolePermission(role string) string {
	if role == RoleEditor {
		return "edit"
	}
	return "view"
}

// Create makes a link and returns it with its token, which is shown only
// here. The caller needs share on the resource and, for the role cap, the
// permission that the link's role grants.
func (s *Service) Create(ctx context.Context, caller authz.Caller, req CreateRequest) (Link, string, error) {
	if err := s.validate(req); err != nil {
		return Link{}, "", err
	}

	if err := s.authz.Require(ctx, caller.Ref, "share", req.Resource); err != nil {
		return Link{}, "", err
	}
	ok, err := s.authz.Allowed(ctx, caller.Ref, rolePermission(req.Role), req.Resource)
	if err != nil {
		return Link{}, "", err
	}
	if !ok {
		return Link{}, "", fmt.Errorf("%w: %s lacks %q on %s, so it cannot make a link with role %q",
			authz.ErrForbidden, caller.Ref, rolePermission(req.Role), req.Resource, req.Role)
	}
	org, chain, err := s.authz.OrgChain(ctx, req.Resource)
	if err != nil {
		return Link{}, "", err
	}

	token, hash := newToken()
	l := Link{
		ID: newID(), TokenHash: hash, Resource: req.Resource, Org: org,
		Role: req.Role, Audience: req.Audience, ExpiresAt: req.ExpiresAt, MaxUses: req.MaxUses,
		CreatedBy: caller.Ref.String(), CreatedAt: s.now().UTC().Truncate(time.Microsecond), State: StateActive,
	}
	change, err := s.authz.Begin(ctx, caller, authz.Change{
		Org: org, Action: ActionCreate, Resource: l.Resource, Subject: linkRef(l.ID), After: auditState(l),
	})
	if err != nil {
		return Link{}, "", err
	}
	if err := s.store.Insert(ctx, l); err != nil {
		change.Failed(ctx)
		return Link{}, "", err
	}
	// The chain keeps the resource in the org that the write is recorded
	// under, and requires that it still exists.
	zed, err := s.authz.Engine().Write(engine.ForOrg(ctx, org.ID), grantUpdates(l), chain)
	if err != nil {
		change.Failed(ctx)
		if _, endErr := s.store.End(context.WithoutCancel(ctx), l.ID, StateRevoked, s.now()); endErr != nil {
			s.logger.WarnContext(ctx, "mark unused link revoked", "link_id", l.ID, "error", endErr)
		}
		if errors.Is(err, engine.ErrPreconditionFailed) {
			return Link{}, "", fmt.Errorf("%w: %s", authz.ErrNotFound, l.Resource)
		}
		return Link{}, "", err
	}
	change.Applied(ctx, zed)
	return l, token, nil
}

// auditState is the state of l that the audit log records. It never
// contains the token or its digest.
func auditState(l Link) map[string]string {
	m := map[string]string{"link": l.ID, "role": l.Role, "audience": l.Audience, "state": l.State}
	if l.ExpiresAt != nil {
		m["expires_at"] = l.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	if l.MaxUses > 0 {
		m["max_uses"] = strconv.Itoa(l.MaxUses)
	}
	return m
}

// List returns a page of the links on resource, which the caller needs
// share on, and the token of the next page ("" after the last). Links
// whose resource no longer grants them, because it was deleted, are
// marked revoked on the way.
func (s *Service) List(ctx context.Context, caller, resource object.Ref, pageSize int, pageToken string) ([]Link, string, error) {
	switch {
	case pageSize == 0:
		pageSize = DefaultPageSize
	case pageSize < 0 || pageSize > MaxPageSize:
		return nil, "", invalid("page_size must be between 1 and %d", MaxPageSize)
	}
	if pageToken != "" && !idPattern.MatchString(pageToken) {
		return nil, "", invalid("page_token is not valid")
	}

	if err := s.authz.Require(ctx, caller, "share", resource); err != nil {
		return nil, "", err
	}
	page, err := s.store.List(ctx, resource.String(), pageToken, pageSize+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(page) > pageSize {
		page = page[:pageSize]
		next = page[pageSize-1].ID
	}
	for i, l := range page {
		if page[i], err = s.noticeOrphan(ctx, l); err != nil {
			return nil, "", err
		}
	}
	return page, next, nil
}

// noticeOrphan marks l revoked when it is active but its resource no longer
// grants it (expired, when its end passed meanwhile), and returns the link
// as it is now.
func (s *Service) noticeOrphan(ctx context.Context, l Link) (Link, error) {
	state := l.StateAt(s.now())
	if state != StateActive && state != StateExhausted {
		return l, nil
	}
	ok, err := s.granted(ctx, l)
	if err != nil || ok {
		return l, err
	}
	// A link whose end passed since the first look lost its relationships
	// to expiry, not to a deleted resource.
	ended := StateRevoked
	if l.StateAt(s.now()) == StateExpired {
		ended = StateExpired
	}
	if err := s.end(ctx, l, ended); err != nil {
		return l, err
	}
	l.State = ended
	return l, nil
}

// end moves l to state and raises the auth versions of its holders, for
// links that ended without a request: expired, or orphaned by a deleted
// resource.
func (s *Service) end(ctx context.Context, l Link, state string) error {
	holders, err := s.holders(ctx, l)
	if err != nil {
		return err
	}
	err = s.authz.WithBumps(ctx, holders, func() error {
		if _, err := s.ungrant(ctx, l); err != nil {
			return err
		}
		_, err := s.store.End(ctx, l.ID, state, s.now())
		return err
	})
	if err != nil {
		return fmt.Errorf("end link %q: %w", l.ID, err)
	}
	s.logger.InfoContext(ctx, "share link ended", "link_id", l.ID, "resource", l.Resource.String(), "state", state, "holders", len(holders))
	return nil
}

// Revoke ends the link id at once for every holder. The caller needs share
// on the link's resource or must be the link's creator. Revoking a link
// that already ended succeeds and changes nothing.
func (s *Service) Revoke(ctx context.Context, caller authz.Caller, id string) error {
	if !idPattern.MatchString(id) {
		return ErrLinkNotFound
	}
	l, err := s.store.Get(ctx, id)
	if errors.Is(err, errNoLink) {
		return ErrLinkNotFound
	}
	if err != nil {
		return err
	}

	if caller.Ref.String() != l.CreatedBy {
		if err := s.authz.Require(ctx, caller.Ref, "share", l.Resource); err != nil {
			if errors.Is(err, authz.ErrNotFound) {
				// The resource's id would tell a stranger what the link is for.
				return ErrLinkNotFound
			}
			return err
		}
	}
	if l.State != StateActive {
		return nil
	}

	holders, err := s.holders(ctx, l)
	if err != nil {
		return err
	}
	change, err := s.authz.Begin(ctx, caller, authz.Change{
		Org: l.Org, Action: ActionRevoke, Resource: l.Resource, Subject: linkRef(l.ID),
		Before: map[string]string{"state": l.StateAt(s.now())}, After: map[string]string{"state": StateRevoked},
	})
	if err != nil {
		return err
	}
	var zed string
	err = s.authz.WithBumps(ctx, holders, func() error {
		var err error
		if zed, err = s.ungrant(ctx, l); err != nil {
			return err
		}
		_, err = s.store.End(ctx, l.ID, StateRevoked, s.now())
		return err
	})
	if err != nil {
		change.Failed(ctx)
		return err
	}
	change.Applied(ctx, zed)
	return nil
}
