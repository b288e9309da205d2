package links

import (
	"context"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// holderRelation is the relation of link that redeeming users join.
const holderRelation = "holder"

// maxHolderPage is the page size for reading a link's holders.
const maxHolderPage = 1000

func linkRef(id string) object.Ref { return object.Ref{Type: object.TypeLink, ID: id} }

func relationship(resource object.Ref, relation string, subject object.Ref, subjectRelation string, expiresAt *timestamppb.Timestamp) *v1.Relationship {
	return &v1.Relationship{
		Resource:          &v1.ObjectReference{ObjectType: resource.Type, ObjectId: resource.ID},
		Relation:          relation,
		Subject:           &v1.SubjectReference{Object: &v1.ObjectReference{ObjectType: subject.Type, ObjectId: subject.ID}, OptionalRelation: subjectRelation},
		OptionalExpiresAt: expiresAt,
	}
}

func expiration(l Link) *timestamppb.Timestamp {
	if l.ExpiresAt == nil {
		return nil
	}
	return timestamppb.New(*l.ExpiresAt)
}

// grantUpdates returns the writes that give l's role on its resource to
// the link's holders and, for audience "anyone", to the link itself.
func grantUpdates(l Link) []*v1.RelationshipUpdate {
	exp := expiration(l)
	updates := []*v1.RelationshipUpdate{{
		Operation:    v1.RelationshipUpdate_OPERATION_CREATE,
		Relationship: relationship(l.Resource, l.Role, linkRef(l.ID), holderRelation, exp),
	}}
	if l.Audience == AudienceAnyone {
		updates = append(updates, &v1.RelationshipUpdate{
			Operation:    v1.RelationshipUpdate_OPERATION_CREATE,
			Relationship: relationship(l.Resource, l.Role, linkRef(l.ID), "", exp),
		})
	}
	return updates
}

// grantFilter matches every relationship from l's resource to the link,
// with or without the holder relation.
func grantFilter(l Link) *v1.RelationshipFilter {
	return &v1.RelationshipFilter{
		ResourceType:       l.Resource.Type,
		OptionalResourceId: l.Resource.ID,
		OptionalRelation:   l.Role,
		OptionalSubjectFilter: &v1.SubjectFilter{
			SubjectType:       object.TypeLink,
			OptionalSubjectId: l.ID,
		},
	}
}

// granted reports whether l's resource still grants its role to the
// link's holders. Deleting the resource deletes that relationship, and a
// resource re-created with the same id does not bring it back.
func (s *Service) granted(ctx context.Context, l Link) (bool, error) {
	filter := grantFilter(l)
	filter.OptionalSubjectFilter.OptionalRelation = &v1.SubjectFilter_RelationFilter{Relation: holderRelation}
	rels, _, err := s.authz.Engine().Read(ctx, filter, 1, nil)
	if err != nil {
		return false, err
	}
	return len(rels) > 0, nil
}

// hasHolder reports whether principal has the holder relationship of l,
// at full consistency.
func (s *Service) hasHolder(ctx context.Context, l Link, principal object.Ref) (bool, error) {
	rels, _, err := s.authz.Engine().Read(ctx, &v1.RelationshipFilter{
		ResourceType:       object.TypeLink,
		OptionalResourceId: l.ID,
		OptionalRelation:   holderRelation,
		OptionalSubjectFilter: &v1.SubjectFilter{
			SubjectType:       principal.Type,
			OptionalSubjectId: principal.ID,
		},
	}, 1, nil)
	if err != nil {
		return false, err
	}
	return len(rels) > 0, nil
}

// ungrant deletes the relationships from l's resource to the link and the
// link's holders.
func (s *Service) ungrant(ctx context.Context, l Link) (string, error) {
	// Only l.Resource, in l.Org, names the link: a resource deleted and
	// created again elsewhere loses every relationship naming the link.
	ctx = engine.ForOrg(ctx, l.Org.ID)
	if _, err := s.authz.Engine().DeleteMatching(ctx, grantFilter(l), nil); err != nil {
		return "", err
	}
	return s.authz.Engine().DeleteMatching(ctx, &v1.RelationshipFilter{
		ResourceType:       object.TypeLink,
		OptionalResourceId: l.ID,
		OptionalRelation:   holderRelation,
	}, nil)
}

// holders returns the principals whose access l gives: the link's holder
// relationships and the redemptions the Store recorded, which outlive
// expired relationships.
func (s *Service) holders(ctx context.Context, l Link) ([]string, error) {
	seen := map[string]bool{}
	var principals []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			principals = append(principals, p)
		}
	}

	filter := &v1.RelationshipFilter{ResourceType: object.TypeLink, OptionalResourceId: l.ID, OptionalRelation: holderRelation}
	var cursor *v1.Cursor
	for {
		rels, next, err := s.authz.Engine().Read(ctx, filter, maxHolderPage, cursor)
		if err != nil {
			return nil, err
		}
		for _, rel := range rels {
			subject := rel.GetSubject().GetObject()
			add(subject.GetObjectType() + ":" + subject.GetObjectId())
		}
		if next == nil {
			break
		}
		cursor = next
	}

	redeemers, err := s.store.Redeemers(ctx, l.ID)
	if err != nil {
		return nil, err
	}
	for _, p := range redeemers {
		add(p)
	}
	return principals, nil
}
