package engine

import (
	"context"
	"testing"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

func TestWritesThatMoveResourcesHaveNoOrg(t *testing.T) {
	ctx := ForOrg(context.Background(), "acme")
	update := func(op v1.RelationshipUpdate_Operation, resourceType, relation, subjectType string) []*v1.RelationshipUpdate {
		return []*v1.RelationshipUpdate{{Operation: op, Relationship: &v1.Relationship{
			Resource: &v1.ObjectReference{ObjectType: resourceType, ObjectId: "x"},
			Relation: relation,
			Subject:  &v1.SubjectReference{Object: &v1.ObjectReference{ObjectType: subjectType, ObjectId: "y"}},
		}}}
	}
	for _, tc := range []struct {
		name    string
		updates []*v1.RelationshipUpdate
		tagged  bool
	}{
		{"role touched", update(v1.RelationshipUpdate_OPERATION_TOUCH, "document", "viewer", "user"), true},
		{"role deleted", update(v1.RelationshipUpdate_OPERATION_DELETE, "project", "admin", "user"), true},
		{"resource created", update(v1.RelationshipUpdate_OPERATION_CREATE, "document", "project", "project"), true},
		{"parent link touched", update(v1.RelationshipUpdate_OPERATION_TOUCH, "document", "project", "project"), false},
		{"parent link deleted", update(v1.RelationshipUpdate_OPERATION_DELETE, "workspace", "org", "org"), false},
		{"group moved", update(v1.RelationshipUpdate_OPERATION_TOUCH, "group", "org", "org"), false},
		{"org deleted", update(v1.RelationshipUpdate_OPERATION_DELETE, "org", "platform", "platform"), false},
	} {
		got := orgOfMetadata(writeMetadata(ctx, updatesMoveResources(tc.updates), "")) == "acme"
		if got != tc.tagged {
			t.Errorf("%s: recorded under the org = %v, want %v", tc.name, got, tc.tagged)
		}
	}

	for _, tc := range []struct {
		name   string
		filter *v1.RelationshipFilter
		tagged bool
	}{
		{"one role", &v1.RelationshipFilter{ResourceType: "document", OptionalRelation: "viewer"}, true},
		{"links naming a link", &v1.RelationshipFilter{ResourceType: "document", OptionalResourceId: "d", OptionalSubjectFilter: &v1.SubjectFilter{SubjectType: "link"}}, true},
		{"a link's holders", &v1.RelationshipFilter{ResourceType: "link", OptionalRelation: "holder"}, true},
		{"every relationship of a resource", &v1.RelationshipFilter{ResourceType: "document", OptionalResourceId: "d"}, false},
		{"parent links", &v1.RelationshipFilter{ResourceType: "project", OptionalRelation: "workspace"}, false},
		{"relationships naming a project", &v1.RelationshipFilter{OptionalSubjectFilter: &v1.SubjectFilter{SubjectType: "project", OptionalSubjectId: "p"}}, false},
		{"relationships naming a group", &v1.RelationshipFilter{OptionalSubjectFilter: &v1.SubjectFilter{SubjectType: "group", OptionalSubjectId: "g"}}, true},
	} {
		got := orgOfMetadata(writeMetadata(ctx, filterMovesResources(tc.filter), "")) == "acme"
		if got != tc.tagged {
			t.Errorf("%s: recorded under the org = %v, want %v", tc.name, got, tc.tagged)
		}
	}
	if writeMetadata(context.Background(), false, "") != nil {
		t.Error("a write without ForOrg has metadata")
	}
}

func TestWritesOfOneSubject(t *testing.T) {
	rel := func(op v1.RelationshipUpdate_Operation, resource, subject *v1.ObjectReference, relation, subjectRelation string) *v1.RelationshipUpdate {
		return &v1.RelationshipUpdate{Operation: op, Relationship: &v1.Relationship{
			Resource: resource, Relation: relation,
			Subject: &v1.SubjectReference{Object: subject, OptionalRelation: subjectRelation},
		}}
	}
	ref := func(typ, id string) *v1.ObjectReference { return &v1.ObjectReference{ObjectType: typ, ObjectId: id} }
	touch, del := v1.RelationshipUpdate_OPERATION_TOUCH, v1.RelationshipUpdate_OPERATION_DELETE
	project, doc := ref("project", "p"), ref("document", "d")
	alice, bob, billing := ref("user", "dev|alice"), ref("user", "dev|bob"), ref("service", "corp|billing")
	grant, group := ref("grant", "g1"), ref("group", "eng")
	grantOf := func(holder *v1.ObjectReference, holderRelation string) []*v1.RelationshipUpdate {
		return []*v1.RelationshipUpdate{
			rel(touch, project, grant, "viewer", "holder"),
			rel(touch, grant, holder, "holder", holderRelation),
		}
	}
	vouched := ForSubject(context.Background(), object.Ref{Type: "user", ID: "dev|alice"})

	for _, tc := range []struct {
		name    string
		ctx     context.Context
		updates []*v1.RelationshipUpdate
		want    string
	}{
		{"one role of a user", context.Background(), []*v1.RelationshipUpdate{rel(touch, project, alice, "viewer", "")}, "user:dev|alice"},
		{"a role replaced", context.Background(), []*v1.RelationshipUpdate{
			rel(del, project, alice, "editor", ""), rel(del, project, alice, "admin", ""), rel(touch, project, alice, "viewer", ""),
		}, "user:dev|alice"},
		{"one role of a service", context.Background(), []*v1.RelationshipUpdate{rel(touch, doc, billing, "editor", "")}, "service:corp|billing"},
		{"two users", context.Background(), []*v1.RelationshipUpdate{rel(touch, project, alice, "viewer", ""), rel(touch, doc, bob, "viewer", "")}, ""},
		{"a group's members", context.Background(), []*v1.RelationshipUpdate{rel(touch, project, group, "viewer", "member")}, ""},
		{"a user joins a group", context.Background(), []*v1.RelationshipUpdate{rel(touch, group, alice, "member", "")}, "user:dev|alice"},
		{"a link", context.Background(), []*v1.RelationshipUpdate{rel(touch, doc, ref("link", "l1"), "viewer", "")}, ""},
		{"a parent link", context.Background(), []*v1.RelationshipUpdate{rel(touch, doc, project, "project", "")}, ""},
		{"every user", context.Background(), []*v1.RelationshipUpdate{rel(touch, doc, ref("user", "*"), "viewer", "")}, ""},
		{"nothing", context.Background(), nil, ""},
		{"a grant, not vouched for", context.Background(), grantOf(alice, ""), ""},
		{"a grant, vouched for", vouched, grantOf(alice, ""), "user:dev|alice"},
		{"a grant of another user", vouched, grantOf(bob, ""), ""},
		{"a grant to a group", ForSubject(context.Background(), object.Ref{Type: "group", ID: "eng"}), grantOf(group, "member"), ""},
		{"a grant's role alone, vouched for", vouched, grantOf(alice, "")[:1], ""},
		{"a grant's role with another grant's holder", vouched, []*v1.RelationshipUpdate{
			rel(touch, project, grant, "viewer", "holder"), rel(touch, ref("grant", "g2"), alice, "holder", ""),
		}, ""},
		{"a grant ended, vouched for", vouched, []*v1.RelationshipUpdate{
			rel(del, project, grant, "viewer", "holder"), rel(del, grant, alice, "holder", ""),
		}, "user:dev|alice"},
		{"a vouched write naming a group", vouched, []*v1.RelationshipUpdate{rel(touch, project, group, "viewer", "member"), rel(touch, project, alice, "viewer", "")}, ""},
	} {
		if got := updatesSubject(tc.ctx, tc.updates); got != tc.want {
			t.Errorf("%s: subject = %q, want %q", tc.name, got, tc.want)
		}
	}

	m := writeMetadata(ForOrg(context.Background(), "acme"), false, "user:dev|alice")
	if orgOfMetadata(m) != "acme" || subjectOfMetadata(m) != "user:dev|alice" {
		t.Errorf("metadata = %v, want org acme and subject user:dev|alice", m)
	}
	if m := writeMetadata(context.Background(), false, "user:dev|alice"); m != nil {
		t.Errorf("a write of a subject without ForOrg has metadata %v", m)
	}
	if m := writeMetadata(ForOrg(context.Background(), "acme"), true, "user:dev|alice"); m != nil {
		t.Errorf("a write that moves resources has metadata %v", m)
	}
}
