package authz

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"

	"github.com/gatehouse-authz/gatehouse/internal/authversion"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// ErrVersionsUnavailable means auth versions could not be raised, so the
// change that needed it was not made.
var ErrVersionsUnavailable = errors.New("auth versions unavailable")

// maxAffectedPrincipals bounds how many principals one change may touch
// through group memberships; a larger change is rejected.
const maxAffectedPrincipals = 100000

// afterBumpAttempts is how often the bump after a successful write is
// tried before the failure is logged.
const afterBumpAttempts = 3

// withBumps runs write between two raises of the auth versions of
// principals. The raise before the write makes every token minted earlier
// stale even if the process dies mid-way; the raise after it makes stale the
// tokens minted while the write was in flight. A failed first raise stops
// the change; a failed write skips the second raise, since nothing changed.
func (s *Service) withBumps(ctx context.Context, principals []string, write func() error) error {
	if s.versions == nil || len(principals) == 0 {
		return write()
	}
	if _, err := s.versions.Bump(ctx, principals); err != nil {
		return fmt.Errorf("%w: %w", ErrVersionsUnavailable, err)
	}
	if err := write(); err != nil {
		return err
	}
	var err error
	for range afterBumpAttempts {
		if _, err = s.versions.Bump(context.WithoutCancel(ctx), principals); err == nil {
			return nil
		}
	}
	s.logger.ErrorContext(ctx, "raise auth versions after a change; tokens minted during the change stay valid until they expire",
		"principals", len(principals), "error", err)
	return nil
}

// affected returns the principals whose access a change to subjects'
// relationships alters: principals themselves, and every member, direct or
// through nested groups, of each group.
func (s *Service) affected(ctx context.Context, subjects ...object.Ref) ([]string, error) {
	if s.versions == nil {
		return nil, nil
	}
	seen := map[string]bool{}
	var principals []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			principals = append(principals, p)
		}
	}
	for _, subject := range subjects {
		switch subject.Type {
		case object.TypeUser, object.TypeService:
			add(subject.String())
		case object.TypeGroup, object.TypeGrant, object.TypeLink:
			// A group reaches its members, a temporary grant or a share
			// link its holders, directly or through nested groups.
			relation := "member"
			if subject.Type != object.TypeGroup {
				relation = "holder"
			}
			for _, t := range []string{object.TypeUser, object.TypeService} {
				if subject.Type == object.TypeLink && t == object.TypeService {
					continue // only users redeem links
				}
				ids, truncated, err := s.engine.LookupSubjects(ctx, engine.LookupSubjectsRequest{
					Resource: subject, Permission: relation, SubjectType: t,
				}, maxAffectedPrincipals)
				if err != nil {
					return nil, err
				}
				if truncated {
					return nil, fmt.Errorf("%w: %s has more than %d members", ErrConflict, subject, maxAffectedPrincipals)
				}
				for _, id := range ids {
					add(object.Ref{Type: t, ID: id}.String())
				}
			}
		}
		if len(principals) > maxAffectedPrincipals {
			return nil, fmt.Errorf("%w: the change affects more than %d principals", ErrConflict, maxAffectedPrincipals)
		}
	}
	return principals, nil
}

// affectedByDelete returns the principals that hold a relationship on any
// object of tree, directly or through a group, and the members of every
// group in tree, all of whom lose access when tree is deleted.
func (s *Service) affectedByDelete(ctx context.Context, tree []object.Ref) ([]string, error) {
	if s.versions == nil {
		return nil, nil
	}
	var subjects []object.Ref
	seen := map[object.Ref]bool{}
	for _, ref := range tree {
		if ref.Type == object.TypeGroup && !seen[ref] {
			seen[ref] = true
			subjects = append(subjects, ref)
		}
		var cursor *v1.Cursor
		for {
			rels, next, err := s.engine.Read(ctx, &v1.RelationshipFilter{ResourceType: ref.Type, OptionalResourceId: ref.ID}, 1000, cursor)
			if err != nil {
				return nil, err
			}
			for _, rel := range rels {
				subject := object.Ref{Type: rel.GetSubject().GetObject().GetObjectType(), ID: rel.GetSubject().GetObject().GetObjectId()}
				relevant := subject.IsPrincipal() || subject.Type == object.TypeGroup || subject.Type == object.TypeGrant || subject.Type == object.TypeLink
				if relevant && !seen[subject] {
					seen[subject] = true
					subjects = append(subjects, subject)
				}
			}
			if next == nil {
				break
			}
			cursor = next
		}
	}
	return s.affected(ctx, subjects...)
}

// RevokeSessions raises principal's auth version, so that every Gatehouse
// token it holds stops working. The principal may revoke its own sessions;
// anyone else needs manage on an org that the principal belongs to.
func (s *Service) RevokeSessions(ctx context.Context, c Caller, principal object.Ref) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()

	if !principal.IsPrincipal() {
		return 0, invalid("only a user or a service has sessions")
	}
	if s.versions == nil {
		return 0, errors.New("auth versions are not configured")
	}
	chain := object.Ref{}
	if principal != c.Ref {
		org, err := s.sharedManagedOrg(ctx, c.Ref, principal)
		if err != nil {
			return 0, err
		}
		chain = org
	}

	e := auditedChange{org: chain, action: ActionSessionsRevoke, resource: principal, subject: principal}
	change, err := s.beginIn(ctx, c, e)
	if err != nil {
		return 0, err
	}
	changes, err := s.versions.Bump(ctx, []string{principal.String()})
	if err != nil {
		change.Failed(ctx)
		return 0, fmt.Errorf("%w: %w", ErrVersionsUnavailable, err)
	}
	change.Applied(ctx, "")
	return changes[0].Version, nil
}

// sharedManagedOrg returns an org that principal belongs to (can view) and
// that caller manages, or ErrNotFound.
func (s *Service) sharedManagedOrg(ctx context.Context, caller, principal object.Ref) (object.Ref, error) {
	ids, _, err := s.engine.LookupResources(ctx, engine.LookupResourcesRequest{
		ResourceType: object.TypeOrg, Permission: "view", Subject: principal,
	}, s.limits.MaxLookupResources)
	if err != nil {
		return object.Ref{}, err
	}
	for _, id := range ids {
		org := object.Ref{Type: object.TypeOrg, ID: id}
		ok, err := s.allowed(ctx, caller, "manage", org)
		if err != nil {
			return object.Ref{}, err
		}
		if ok {
			return org, nil
		}
	}
	return object.Ref{}, fmt.Errorf("%w: %s", ErrNotFound, principal)
}

// Versions returns the auth version store, or nil.
func (s *Service) Versions() authversion.Store { return s.versions }
