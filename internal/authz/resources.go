package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// CreateRequest creates Resource under Parent (empty for an org).
type CreateRequest struct {
	Resource object.Ref
	Parent   object.Ref

	// Owner receives the creator role in place of the caller. Only a
	// service may name one, when it creates a resource for a user.
	Owner object.Ref
}

// Created describes a new resource.
type Created struct {
	Resource object.Ref
	Parent   object.Ref
	Owner    object.Ref
	Role     string
	Token    string
}

// Create writes a new resource, its link to its parent and its creator's
// role, all in one atomic write. Ids are unique per type across all orgs, so
// a taken id is ErrConflict wherever the other resource lives.
func (s *Service) Create(ctx context.Context, c Caller, req CreateRequest) (Created, error) {
	caller := c.Ref
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()

	// Validate the shape before asking SpiceDB anything.
	wantParent, needsParent := object.ParentType(req.Resource.Type)
	switch {
	case !object.IsResourceType(req.Resource.Type):
		return Created{}, invalid("resource type %q cannot be created", req.Resource.Type)
	case needsParent && req.Parent.IsZero():
		return Created{}, invalid("%s %s needs a parent of type %s", article(req.Resource.Type), req.Resource.Type, wantParent)
	case !needsParent && !req.Parent.IsZero():
		return Created{}, invalid("an org has no parent")
	case needsParent && req.Parent.Type != wantParent:
		return Created{}, invalid("the parent of %s %s must be %s %s, not %s %s", article(req.Resource.Type), req.Resource.Type,
			article(wantParent), wantParent, article(req.Parent.Type), req.Parent.Type)
	}
	owner := caller
	if !req.Owner.IsZero() && req.Owner != caller {
		if caller.Type != object.TypeService {
			return Created{}, fmt.Errorf("%w: only a service may create a resource for another principal", ErrForbidden)
		}
		if !req.Owner.IsPrincipal() {
			return Created{}, invalid("owner must be a user or a service, not %s", req.Owner)
		}
		owner = req.Owner
		c.OnBehalfOf = owner
	}

	// Any authenticated principal may found an org; below that, the caller
	// needs create on the parent.
	org := req.Resource
	var chain []*v1.Precondition
	if !needsParent {
		// A taken org id fails here, before anything is written to the
		// chain of the org that holds it.
		taken, err := s.engine.Exists(ctx, req.Resource)
		if err != nil {
			return Created{}, err
		}
		if taken {
			return Created{}, fmt.Errorf("%w: %s already exists", ErrConflict, req.Resource)
		}
	} else {
		if err := s.require(ctx, caller, "create", req.Parent); err != nil {
			return Created{}, err
		}
		var err error
		if org, chain, err = s.orgChain(ctx, req.Parent); err != nil {
			return Created{}, err
		}
	}

	// Write the parent link and the owner's role, on condition that the id
	// is free and the parent still exists.
	parentLink := req.Parent
	if !needsParent {
		parentLink = platform
	}
	role := creatorRole[req.Resource.Type]
	updates := []*v1.RelationshipUpdate{
		update(v1.RelationshipUpdate_OPERATION_CREATE, req.Resource, object.ParentRelation(req.Resource.Type), parentLink, ""),
		update(v1.RelationshipUpdate_OPERATION_CREATE, req.Resource, role, owner, ""),
	}
	preconditions := []*v1.Precondition{{
		Operation: v1.Precondition_OPERATION_MUST_NOT_MATCH,
		Filter:    &v1.RelationshipFilter{ResourceType: req.Resource.Type, OptionalResourceId: req.Resource.ID},
	}, namedPrecondition(req.Resource)}
	// The parent must still exist, in the same org, which is the only org
	// whose state the write changes.
	preconditions = append(preconditions, chain...)
	after := map[string]string{"owner": owner.String(), "role": role}
	if needsParent {
		after["parent"] = req.Parent.String()
	}
	change, err := s.begin(ctx, c, auditedChange{org: org, action: ActionResourceCreate, resource: req.Resource, subject: owner, after: after})
	if err != nil {
		return Created{}, err
	}
	var token string
	err = s.withBumps(ctx, []string{owner.String()}, func() error {
		var err error
		token, err = s.engine.Write(engine.ForOrg(ctx, org.ID), updates, preconditions)
		return err
	})
	finish(ctx, change, token, err)
	if err != nil {
		return Created{}, s.explainCreateFailure(ctx, req, err)
	}
	return Created{Resource: req.Resource, Parent: req.Parent, Owner: owner, Role: role, Token: token}, nil
}

// article returns the indefinite article for a type name: "an org", "a
// workspace".
func article(typ string) string {
	if typ != "" && strings.ContainsRune("aeiou", rune(typ[0])) {
		return "an"
	}
	return "a"
}

// explainCreateFailure turns a failed precondition into ErrConflict (the id
// is taken) or ErrNotFound (the parent went away meanwhile).
func (s *Service) explainCreateFailure(ctx context.Context, req CreateRequest, err error) error {
	if !errors.Is(err, engine.ErrPreconditionFailed) {
		return err
	}
	taken, lookupErr := s.engine.Exists(ctx, req.Resource)
	if lookupErr != nil {
		return lookupErr
	}
	if taken {
		return fmt.Errorf("%w: %s already exists", ErrConflict, req.Resource)
	}
	named, _, lookupErr := s.engine.Read(ctx, namedPrecondition(req.Resource).GetFilter(), 1, nil)
	if lookupErr != nil {
		return lookupErr
	}
	if len(named) > 0 {
		return fmt.Errorf("%w: relationships left by an interrupted delete still name %s, and a new one would inherit them; choose another id", ErrConflict, req.Resource)
	}
	return fmt.Errorf("%w: %s", ErrNotFound, req.Parent)
}

// namedPrecondition holds while no relationship names ref as its subject:
// no role held by a group of that id, no parent link of a child. A resource
// is created only under it, so that it never inherits what a deleted
// resource of the same id held, whatever org that one was in.
func namedPrecondition(ref object.Ref) *v1.Precondition {
	return &v1.Precondition{
		Operation: v1.Precondition_OPERATION_MUST_NOT_MATCH,
		Filter: &v1.RelationshipFilter{
			OptionalSubjectFilter: &v1.SubjectFilter{SubjectType: ref.Type, OptionalSubjectId: ref.ID},
		},
	}
}

// Delete removes resource, its descendants, and every relationship that
// names any of them as resource or subject. The caller needs delete on it.
//
// Descendants are removed before their ancestors, so a delete interrupted
// part way leaves the resource in place and can simply be repeated, and no
// partial state grants more access than before.
func (s *Service) Delete(ctx context.Context, c Caller, resource object.Ref) (string, error) {
	caller := c.Ref
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()

	if !object.IsResourceType(resource.Type) {
		return "", fmt.Errorf("%w: %s", ErrNotFound, resource)
	}
	if err := s.require(ctx, caller, "delete", resource); err != nil {
		return "", err
	}

	org, chain, err := s.orgChain(ctx, resource)
	if err != nil {
		return "", err
	}
	tree, err := s.descendants(ctx, resource)
	if err != nil {
		return "", err
	}

	principals, err := s.affectedByDelete(ctx, tree)
	if err != nil {
		return "", err
	}
	before := map[string]string{"descendants": count(len(tree) - 1)}
	change, err := s.begin(ctx, c, auditedChange{org: org, action: ActionResourceDelete, resource: resource, before: before, after: map[string]string{}})
	if err != nil {
		return "", err
	}
	var token string
	err = s.withBumps(ctx, principals, func() error {
		var err error
		token, err = s.deleteTree(ctx, resource, chain)
		return err
	})
	if errors.Is(err, errGone) {
		err = fmt.Errorf("%w: %s was deleted by another request while this delete ran", ErrNotFound, resource)
	}
	if err != nil {
		// Part of the tree may be gone: the reconciler decides from the
		// state whether the delete counts as applied.
		return "", err
	}
	finish(ctx, change, token, nil)
	return token, nil
}

// descendants returns root followed by every object below it, parents
// before children, or ErrConflict when there are more than the delete limit.
func (s *Service) descendants(ctx context.Context, root object.Ref) ([]object.Ref, error) {
	tree := []object.Ref{root}
	for i := 0; i < len(tree); i++ {
		children, err := s.children(ctx, tree[i], s.limits.MaxDeleteObjects-len(tree))
		if err != nil {
			return nil, err
		}
		tree = append(tree, children...)
	}
	return tree, nil
}

// testHookBetweenDeletes, when set by a test, runs between deleteTree's
// two writes; an error it returns interrupts the delete there.
var testHookBetweenDeletes func(node object.Ref) error

// deleteAttempts bounds how often deleteTree retries a node whose children
// keep being created while it deletes them.
const deleteAttempts = 5

// deleteTree deletes node's descendants, then node: every relationship
// naming it as subject (the roles a group holds), then every relationship
// naming it as resource, both on condition that it has no children left.
// The condition makes a child created during the delete fail the delete of
// its parent, which then starts over, instead of leaving the child behind
// without a parent. A delete interrupted between the two writes leaves the
// node in place without its roles, never its roles without the node. A
// role given to the node between the two writes stays after it, so Create
// rejects an id that a relationship still names.
//
// chain holds while node's parent link and every link above it up to the
// org are the ones Delete read. Both writes carry it, so a delete that runs
// late never removes a resource of the same id created since in another
// org. When it no longer holds, deleteTree returns errGone.
// NOTE: an org links to the platform only, so an org deleted and founded
// again by someone else while a late delete of it waits is not detected.
func (s *Service) deleteTree(ctx context.Context, node object.Ref, chain []*v1.Precondition) (string, error) {
	var noChildren []*v1.Precondition
	for _, childType := range object.ChildTypes(node.Type) {
		noChildren = append(noChildren, &v1.Precondition{
			Operation: v1.Precondition_OPERATION_MUST_NOT_MATCH,
			Filter: &v1.RelationshipFilter{
				ResourceType: childType, OptionalRelation: object.ParentRelation(childType),
				OptionalSubjectFilter: &v1.SubjectFilter{SubjectType: node.Type, OptionalSubjectId: node.ID},
			},
		})
	}

	conditions := append(slices.Clone(chain), noChildren...)

	for range deleteAttempts {
		children, err := s.children(ctx, node, s.limits.MaxDeleteObjects)
		if err != nil {
			return "", err
		}
		for _, child := range children {
			childChain := append([]*v1.Precondition{linkPrecondition(child, node)}, chain...)
			_, err := s.deleteTree(ctx, child, childChain)
			switch {
			case errors.Is(err, errGone):
				// Another request deleted the child, which is fine, unless
				// node itself went with it.
				if !s.holds(ctx, chain) {
					return "", err
				}
			case err != nil:
				return "", err
			}
		}

		// Children's parent links name node too: the condition keeps this
		// write from taking the link of a child created meanwhile.
		_, err = s.engine.DeleteMatching(ctx, namedPrecondition(node).GetFilter(), conditions)
		if isPrecondition(err) {
			if !s.holds(ctx, chain) {
				return "", errGone
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("delete relationships naming %s: %w", node, err)
		}
		if testHookBetweenDeletes != nil {
			if err := testHookBetweenDeletes(node); err != nil {
				return "", err
			}
		}
		token, err := s.engine.DeleteMatching(ctx, &v1.RelationshipFilter{ResourceType: node.Type, OptionalResourceId: node.ID}, conditions)
		if isPrecondition(err) {
			if !s.holds(ctx, chain) {
				return "", errGone
			}
			continue // a child appeared meanwhile
		}
		if err != nil {
			return "", fmt.Errorf("delete %s: %w", node, err)
		}
		return token, nil
	}
	return "", fmt.Errorf("%w: resources keep being created under %s; retry the delete", ErrConflict, node)
}

// errGone reports that a node of a delete was deleted, and perhaps created
// again elsewhere, by another request while the delete ran.
var errGone = errors.New("deleted by another request meanwhile")

// holds reports whether every precondition of chain, each one that a
// relationship must match, still matches one. A failed read counts as
// holding, so that the caller retries and fails on the write instead.
func (s *Service) holds(ctx context.Context, chain []*v1.Precondition) bool {
	for _, p := range chain {
		rels, _, err := s.engine.Read(ctx, p.GetFilter(), 1, nil)
		if err == nil && len(rels) == 0 {
			return false
		}
	}
	return true
}

// linkPrecondition holds while child's parent link names parent.
func linkPrecondition(child, parent object.Ref) *v1.Precondition {
	return &v1.Precondition{
		Operation: v1.Precondition_OPERATION_MUST_MATCH,
		Filter: &v1.RelationshipFilter{
			ResourceType:          child.Type,
			OptionalResourceId:    child.ID,
			OptionalRelation:      object.ParentRelation(child.Type),
			OptionalSubjectFilter: &v1.SubjectFilter{SubjectType: parent.Type, OptionalSubjectId: parent.ID},
		},
	}
}

// children returns the objects whose parent link names node, or
// ErrConflict when there are more than max of them.
func (s *Service) children(ctx context.Context, node object.Ref, max int) ([]object.Ref, error) {
	var children []object.Ref
	for _, childType := range object.ChildTypes(node.Type) {
		filter := &v1.RelationshipFilter{
			ResourceType:          childType,
			OptionalRelation:      object.ParentRelation(childType),
			OptionalSubjectFilter: &v1.SubjectFilter{SubjectType: node.Type, OptionalSubjectId: node.ID},
		}
		var cursor *v1.Cursor
		for {
			rels, next, err := s.engine.Read(ctx, filter, 1000, cursor)
			if err != nil {
				return nil, err
			}
			for _, rel := range rels {
				children = append(children, object.Ref{Type: childType, ID: rel.GetResource().GetObjectId()})
			}
			if len(children) > max {
				return nil, fmt.Errorf("%w: deleting %s would remove more than %d objects; delete some of its descendants first", ErrConflict, node, s.limits.MaxDeleteObjects)
			}
			if next == nil {
				break
			}
			cursor = next
		}
	}
	return children, nil
}

// existsPrecondition holds while ref's parent link (an org's link to the
// platform) exists, which is what existence means in Gatehouse.
func existsPrecondition(ref object.Ref) *v1.Precondition {
	return &v1.Precondition{
		Operation: v1.Precondition_OPERATION_MUST_MATCH,
		Filter: &v1.RelationshipFilter{
			ResourceType:       ref.Type,
			OptionalResourceId: ref.ID,
			OptionalRelation:   object.ParentRelation(ref.Type),
		},
	}
}

// orgOf returns the org that ref belongs to, walking up its parent links.
func (s *Service) orgOf(ctx context.Context, ref object.Ref) (object.Ref, error) {
	org, _, err := s.orgChain(ctx, ref)
	return org, err
}

// orgChain returns the org that ref belongs to, and preconditions that hold
// as long as every parent link on the way there is unchanged. A write that
// carries them is sure to change that org's relationships, as
// engine.ForOrg requires, even if ref was deleted and created again
// elsewhere since it was read.
func (s *Service) orgChain(ctx context.Context, ref object.Ref) (object.Ref, []*v1.Precondition, error) {
	var chain []*v1.Precondition
	for ref.Type != object.TypeOrg {
		parentType, ok := object.ParentType(ref.Type)
		if !ok {
			return object.Ref{}, nil, fmt.Errorf("%w: %s belongs to no org", ErrNotFound, ref)
		}
		filter := &v1.RelationshipFilter{
			ResourceType:       ref.Type,
			OptionalResourceId: ref.ID,
			OptionalRelation:   object.ParentRelation(ref.Type),
		}
		rels, _, err := s.engine.Read(ctx, filter, 1, nil)
		if err != nil {
			return object.Ref{}, nil, err
		}
		if len(rels) == 0 {
			return object.Ref{}, nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
		}
		parent := object.Ref{Type: parentType, ID: rels[0].GetSubject().GetObject().GetObjectId()}
		filter.OptionalSubjectFilter = &v1.SubjectFilter{SubjectType: parent.Type, OptionalSubjectId: parent.ID}
		chain = append(chain, &v1.Precondition{Operation: v1.Precondition_OPERATION_MUST_MATCH, Filter: filter})
		ref = parent
	}
	// The org itself must still exist too.
	chain = append(chain, existsPrecondition(ref))
	return ref, chain, nil
}

func update(op v1.RelationshipUpdate_Operation, resource object.Ref, relation string, subject object.Ref, subjectRelation string) *v1.RelationshipUpdate {
	return &v1.RelationshipUpdate{
		Operation: op,
		Relationship: &v1.Relationship{
			Resource: &v1.ObjectReference{ObjectType: resource.Type, ObjectId: resource.ID},
			Relation: relation,
			Subject: &v1.SubjectReference{
				Object:           &v1.ObjectReference{ObjectType: subject.Type, ObjectId: subject.ID},
				OptionalRelation: subjectRelation,
			},
		},
	}
}
