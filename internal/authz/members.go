package authz

import (
	"context"
	"fmt"
	"slices"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// Member is one subject's direct role on a resource.
type Member struct {
	Subject object.Ref
	Role    string

	// ExpiresAt is set for a role that ends by itself.
	ExpiresAt *time.Time
}

// RoleChange describes what SetMember or RemoveMember did. Before and After
// are empty when the subject held no role before or holds none after.
type RoleChange struct {
	Resource object.Ref
	Subject  object.Ref
	Before   string
	After    string
	Token    string
}

// SetMember gives subject the direct role on resource, replacing any direct
// role it held there: a subject holds at most one direct role per resource.
// The caller needs manage, and manage_owners when the change makes or
// unmakes an org owner.
func (s *Service) SetMember(ctx context.Context, c Caller, resource, subject object.Ref, role string) (RoleChange, error) {
	caller := c.Ref
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()

	if !object.IsResourceType(resource.Type) {
		return RoleChange{}, fmt.Errorf("%w: %s", ErrNotFound, resource)
	}
	if !validRole(resource.Type, role) {
		return RoleChange{}, invalid("role %q does not exist on a %s; valid roles: %v", role, resource.Type, Roles(resource.Type))
	}
	if role == "app" && subject.Type != object.TypeService {
		return RoleChange{}, invalid("only a service can hold the app role")
	}
	if resource.Type == object.TypeOrg && role == "owner" && subject.Type == object.TypeGroup {
		// Org admins manage groups, so a group of owners would let any
		// admin make itself an owner.
		return RoleChange{}, invalid("org owners must be users or services, not groups")
	}
	if subject == resource {
		return RoleChange{}, invalid("a group cannot be a member of itself")
	}
	if err := s.require(ctx, caller, "manage", resource); err != nil {
		return RoleChange{}, err
	}
	groupPrecondition, err := s.requireSameOrg(ctx, resource, subject)
	if err != nil {
		return RoleChange{}, err
	}
	if resource.Type == object.TypeGroup && subject.Type == object.TypeGroup {
		// The loop test and the write must not interleave with another
		// nesting change, or two opposite nestings could both pass.
		// NOTE: this lock covers one instance; instances sharing a
		// database can still race here.
		s.nesting.Lock()
		defer s.nesting.Unlock()
	}

	if err := s.requireNoCycle(ctx, resource, subject); err != nil {
		return RoleChange{}, err
	}

	before, read, err := s.directRoleAt(ctx, resource, subject)
	if err != nil {
		return RoleChange{}, err
	}
	ownerPrecondition, err := s.requireOwnerChange(ctx, caller, resource, subject, before, role)
	if err != nil {
		return RoleChange{}, err
	}
	if before == role {
		// Nothing changes: no write, no audit event, no stale tokens. The
		// token is that of the snapshot that already contains the role.
		return RoleChange{Resource: resource, Subject: subject, Before: before, After: role, Token: read}, nil
	}

	// Delete every other role and touch the new one in one write, so that
	// concurrent changes still leave exactly one direct role.
	updates := s.roleDeletes(resource, subject, role)
	updates = append(updates, update(v1.RelationshipUpdate_OPERATION_TOUCH, resource, role, subject, subjectRelation(subject)))
	org, chain, err := s.orgChain(ctx, resource)
	if err != nil {
		return RoleChange{}, err
	}
	principals, err := s.affected(ctx, subject)
	if err != nil {
		return RoleChange{}, err
	}
	change, err := s.begin(ctx, c, auditedChange{org: org, action: ActionMemberSet, resource: resource, subject: subject, before: roleState(before), after: roleState(role)})
	if err != nil {
		return RoleChange{}, err
	}
	var token string
	err = s.withBumps(ctx, principals, func() error {
		var err error
		// The chain keeps the resource in the org that the write is
		// recorded under; it also requires that the resource exists.
		token, err = s.engine.Write(engine.ForOrg(ctx, org.ID), updates, preconditions(append(chain, groupPrecondition, ownerPrecondition)...))
		return err
	})
	finish(ctx, change, token, err)
	if err != nil {
		return RoleChange{}, explainMemberFailure(resource, ownerPrecondition != nil, err)
	}
	return RoleChange{Resource: resource, Subject: subject, Before: before, After: role, Token: token}, nil
}

// RemoveMember removes subject's direct role on resource. Removing a role
// that does not exist succeeds and changes nothing.
func (s *Service) RemoveMember(ctx context.Context, c Caller, resource, subject object.Ref) (RoleChange, error) {
	caller := c.Ref
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()

	if !object.IsResourceType(resource.Type) {
		return RoleChange{}, fmt.Errorf("%w: %s", ErrNotFound, resource)
	}
	if err := s.require(ctx, caller, "manage", resource); err != nil {
		return RoleChange{}, err
	}
	before, read, err := s.directRoleAt(ctx, resource, subject)
	if err != nil {
		return RoleChange{}, err
	}
	ownerPrecondition, err := s.requireOwnerChange(ctx, caller, resource, subject, before, "")
	if err != nil {
		return RoleChange{}, err
	}

	if before == "" {
		// Nothing to remove, so nothing changes and nothing is recorded.
		// The token is that of the snapshot without the role.
		return RoleChange{Resource: resource, Subject: subject, Token: read}, nil
	}
	org, chain, err := s.orgChain(ctx, resource)
	if err != nil {
		return RoleChange{}, err
	}
	principals, err := s.affected(ctx, subject)
	if err != nil {
		return RoleChange{}, err
	}
	change, err := s.begin(ctx, c, auditedChange{org: org, action: ActionMemberRemove, resource: resource, subject: subject, before: roleState(before), after: roleState("")})
	if err != nil {
		return RoleChange{}, err
	}
	var token string
	err = s.withBumps(ctx, principals, func() error {
		var err error
		token, err = s.engine.Write(engine.ForOrg(ctx, org.ID), s.roleDeletes(resource, subject, ""), preconditions(append(chain, ownerPrecondition)...))
		return err
	})
	finish(ctx, change, token, err)
	if err != nil {
		return RoleChange{}, explainMemberFailure(resource, ownerPrecondition != nil, err)
	}
	return RoleChange{Resource: resource, Subject: subject, Before: before, Token: token}, nil
}

// ListMembers returns one page of resource's direct members, ordered by
// SpiceDB's cursor. The caller needs manage.
func (s *Service) ListMembers(ctx context.Context, caller, resource object.Ref, pageSize int, pageToken string) ([]Member, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()

	if !object.IsResourceType(resource.Type) {
		return nil, "", fmt.Errorf("%w: %s", ErrNotFound, resource)
	}
	size, err := s.pageSize(pageSize)
	if err != nil {
		return nil, "", err
	}
	if err := s.require(ctx, caller, "manage", resource); err != nil {
		return nil, "", err
	}

	var cursor *v1.Cursor
	if pageToken != "" {
		cursor = &v1.Cursor{Token: pageToken}
	}
	rels, next, err := s.engine.Read(ctx, &v1.RelationshipFilter{ResourceType: resource.Type, OptionalResourceId: resource.ID}, uint32(size), cursor)
	if err != nil {
		if pageToken != "" {
			err = pageTokenError(err)
		}
		return nil, "", err
	}
	members := make([]Member, 0, len(rels))
	for _, rel := range rels {
		if !validRole(resource.Type, rel.GetRelation()) {
			continue // the parent link, not a role
		}
		switch rel.GetSubject().GetObject().GetObjectType() {
		case object.TypeUser, object.TypeService, object.TypeGroup:
		default:
			continue // a temporary grant or a share link, listed by their own endpoints
		}
		m := Member{
			Subject: object.Ref{Type: rel.GetSubject().GetObject().GetObjectType(), ID: rel.GetSubject().GetObject().GetObjectId()},
			Role:    rel.GetRelation(),
		}
		if exp := rel.GetOptionalExpiresAt(); exp != nil {
			t := exp.AsTime()
			m.ExpiresAt = &t
		}
		members = append(members, m)
	}
	nextToken := ""
	if next != nil {
		nextToken = next.GetToken()
	}
	return members, nextToken, nil
}

// directRole returns subject's direct role on resource, or "" when it holds
// none.
func (s *Service) directRole(ctx context.Context, resource, subject object.Ref) (string, error) {
	role, _, err := s.directRoleAt(ctx, resource, subject)
	return role, err
}

// directRoleAt does what directRole does, and also returns a consistency
// token for the snapshot it read.
func (s *Service) directRoleAt(ctx context.Context, resource, subject object.Ref) (string, string, error) {
	rels, _, token, err := s.engine.ReadWithToken(ctx, &v1.RelationshipFilter{
		ResourceType:       resource.Type,
		OptionalResourceId: resource.ID,
		OptionalSubjectFilter: &v1.SubjectFilter{
			SubjectType:       subject.Type,
			OptionalSubjectId: subject.ID,
		},
	}, 100, nil)
	if err != nil {
		return "", "", err
	}
	// With several roles (written around Gatehouse), report the strongest.
	for _, role := range Roles(resource.Type) {
		if slices.ContainsFunc(rels, func(r *v1.Relationship) bool { return r.GetRelation() == role }) {
			return role, token, nil
		}
	}
	return "", token, nil
}

// requireOwnerChange enforces that only owners make or unmake org owners,
// and that an org keeps at least one owner.
//
// When the change removes an owner, it returns a precondition that another
// owner still exists at the moment of the write, so that two concurrent
// removals cannot leave the org without owners.
func (s *Service) requireOwnerChange(ctx context.Context, caller, resource, subject object.Ref, before, after string) (*v1.Precondition, error) {
	if resource.Type != object.TypeOrg || (before != "owner" && after != "owner") {
		return nil, nil
	}
	ok, err := s.allowed(ctx, caller, "manage_owners", resource)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: only owners of %s can make or remove owners", ErrForbidden, resource)
	}
	if before != "owner" || after == "owner" {
		return nil, nil
	}
	owners, _, err := s.engine.Read(ctx, &v1.RelationshipFilter{
		ResourceType: resource.Type, OptionalResourceId: resource.ID, OptionalRelation: "owner",
	}, 2, nil)
	if err != nil {
		return nil, err
	}
	for _, o := range owners {
		other := o.GetSubject()
		if other.GetObject().GetObjectType() == subject.Type && other.GetObject().GetObjectId() == subject.ID {
			continue
		}
		return &v1.Precondition{
			Operation: v1.Precondition_OPERATION_MUST_MATCH,
			Filter: &v1.RelationshipFilter{
				ResourceType: resource.Type, OptionalResourceId: resource.ID, OptionalRelation: "owner",
				OptionalSubjectFilter: &v1.SubjectFilter{
					SubjectType:       other.GetObject().GetObjectType(),
					OptionalSubjectId: other.GetObject().GetObjectId(),
					OptionalRelation:  subjectRelationFilter(other.GetOptionalRelation()),
				},
			},
		}, nil
	}
	return nil, fmt.Errorf("%w: %s would have no owner left; make another owner first", ErrConflict, resource)
}

// subjectRelationFilter matches a subject relation exactly, including none.
func subjectRelationFilter(relation string) *v1.SubjectFilter_RelationFilter {
	return &v1.SubjectFilter_RelationFilter{Relation: relation}
}

// Nest runs write, which makes subject's members members of resource,
// unless both are groups and resource is already a member of subject, a
// membership loop that is rejected with ErrConflict. For two groups it also
// serializes the test and write with every other nesting change of this
// instance, as SetMember does.
func (s *Service) Nest(ctx context.Context, resource, subject object.Ref, write func() error) error {
	if resource.Type != object.TypeGroup || subject.Type != object.TypeGroup {
		return write()
	}
	s.nesting.Lock()
	defer s.nesting.Unlock()
	if err := s.requireNoCycle(ctx, resource, subject); err != nil {
		return err
	}
	return write()
}

// RequireNoCycle rejects making group subject a member of group resource
// when that would make a membership loop (see requireNoCycle). It takes no
// lock: Nest repeats the test before the write.
func (s *Service) RequireNoCycle(ctx context.Context, resource, subject object.Ref) error {
	return s.requireNoCycle(ctx, resource, subject)
}

// requireNoCycle rejects making group subject a member of group resource
// when resource is already, directly or through nested groups, a member of
// subject: the loop would make every check through these groups exceed
// SpiceDB's maximum depth.
func (s *Service) requireNoCycle(ctx context.Context, resource, subject object.Ref) error {
	if resource.Type != object.TypeGroup || subject.Type != object.TypeGroup {
		return nil
	}
	d, err := s.engine.Check(ctx, engine.CheckRequest{
		Resource: subject, Permission: "member", Subject: resource, SubjectRelation: "member",
	})
	if err != nil {
		return err
	}
	if d.Allowed {
		return fmt.Errorf("%w: %s is already a member of %s, so this would make a membership loop", ErrConflict, resource, subject)
	}
	return nil
}

// GetMember returns subject's direct role on resource. The caller needs
// manage; a subject without a direct role is ErrNotFound.
func (s *Service) GetMember(ctx context.Context, caller, resource, subject object.Ref) (Member, error) {
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()

	if !object.IsResourceType(resource.Type) {
		return Member{}, fmt.Errorf("%w: %s", ErrNotFound, resource)
	}
	if err := s.require(ctx, caller, "manage", resource); err != nil {
		return Member{}, err
	}
	role, err := s.directRole(ctx, resource, subject)
	if err != nil {
		return Member{}, err
	}
	if role == "" {
		return Member{}, fmt.Errorf("%w: %s has no direct role on %s", ErrNotFound, subject, resource)
	}
	return Member{Subject: subject, Role: role}, nil
}

// requireSameOrg rejects a group subject from another org: roles never
// cross tenants.
//
// It returns a precondition that the group still belongs to that org at the
// moment of the write, so that a group deleted meanwhile (and perhaps
// created again in another org) never receives the role.
func (s *Service) requireSameOrg(ctx context.Context, resource, subject object.Ref) (*v1.Precondition, error) {
	if subject.Type != object.TypeGroup {
		return nil, nil
	}
	resourceOrg, err := s.orgOf(ctx, resource)
	if err != nil {
		return nil, err
	}
	groupOrg, err := s.orgOf(ctx, subject)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, subject)
	}
	if groupOrg != resourceOrg {
		// The other org's group must look exactly like a missing one.
		return nil, fmt.Errorf("%w: %s", ErrNotFound, subject)
	}
	return &v1.Precondition{
		Operation: v1.Precondition_OPERATION_MUST_MATCH,
		Filter: &v1.RelationshipFilter{
			ResourceType: subject.Type, OptionalResourceId: subject.ID, OptionalRelation: "org",
			OptionalSubjectFilter: &v1.SubjectFilter{SubjectType: resourceOrg.Type, OptionalSubjectId: resourceOrg.ID},
		},
	}, nil
}

// roleDeletes returns deletes of every direct role of subject on resource
// except keep. Deleting a relationship that does not exist is a no-op.
func (s *Service) roleDeletes(resource, subject object.Ref, keep string) []*v1.RelationshipUpdate {
	var updates []*v1.RelationshipUpdate
	for _, role := range Roles(resource.Type) {
		if role == keep || (role == "app" && subject.Type != object.TypeService) {
			continue
		}
		updates = append(updates, update(v1.RelationshipUpdate_OPERATION_DELETE, resource, role, subject, subjectRelation(subject)))
	}
	return updates
}

// explainMemberFailure turns a failed precondition into ErrConflict when the
// org's owners changed meanwhile, and into ErrNotFound when the resource or
// the group went away.
func explainMemberFailure(resource object.Ref, ownersChecked bool, err error) error {
	switch {
	case !isPrecondition(err):
		return err
	case ownersChecked:
		return fmt.Errorf("%w: the owners of %s changed meanwhile; retry", ErrConflict, resource)
	}
	return fmt.Errorf("%w: %s", ErrNotFound, resource)
}

// preconditions returns the non-nil ones of ps.
func preconditions(ps ...*v1.Precondition) []*v1.Precondition {
	var out []*v1.Precondition
	for _, p := range ps {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func (s *Service) pageSize(requested int) (int, error) {
	switch {
	case requested == 0:
		return s.limits.DefaultPageSize, nil
	case requested < 0 || requested > s.limits.MaxPageSize:
		return 0, invalid("page_size must be between 1 and %d", s.limits.MaxPageSize)
	}
	return requested, nil
}
