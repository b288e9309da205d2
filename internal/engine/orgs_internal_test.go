package engine

import (
	"context"
	"testing"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
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
		got := orgOfMetadata(writeMetadata(ctx, updatesMoveResources(tc.updates))) == "acme"
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
		got := orgOfMetadata(writeMetadata(ctx, filterMovesResources(tc.filter))) == "acme"
		if got != tc.tagged {
			t.Errorf("%s: recorded under the org = %v, want %v", tc.name, got, tc.tagged)
		}
	}
	if writeMetadata(context.Background(), false) != nil {
		t.Error("a write without ForOrg has metadata")
	}
}
