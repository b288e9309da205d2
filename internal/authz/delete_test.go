package authz

import (
	"errors"
	"strings"
	"testing"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// groupWithRole creates carol's group:eng in org:acme and gives it role on
// workspace:eng.
func (fx *versionsFixture) groupWithRole(t *testing.T, role string) object.Ref {
	t.Helper()
	carol := Caller{Ref: testCarol}
	group := object.Ref{Type: object.TypeGroup, ID: "eng"}
	if _, err := fx.svc.Create(t.Context(), carol, CreateRequest{Resource: group, Parent: testOrg}); err != nil {
		t.Fatalf("create %s: %v", group, err)
	}
	if _, err := fx.svc.SetMember(t.Context(), carol, testWorkspace, group, role); err != nil {
		t.Fatalf("give %s a role: %v", group, err)
	}
	return group
}

// A group deleted part way must not hand the roles it held to a new group
// of the same id in another org. The fixture's carol owns org:acme; her
// group:eng views workspace:eng, and alice is in the group.
func TestInterruptedGroupDeleteLeaksNoRole(t *testing.T) {
	fx := newVersionsFixture(t)
	ctx := t.Context()
	carol, bob := Caller{Ref: testCarol}, Caller{Ref: testBob}
	group := fx.groupWithRole(t, "viewer")
	otherOrg := object.Ref{Type: object.TypeOrg, ID: "globex"}

	if _, err := fx.svc.RemoveMember(ctx, carol, testWorkspace, testAlice); err != nil {
		t.Fatalf("remove alice's own role: %v", err)
	}
	if _, err := fx.svc.SetMember(ctx, carol, group, testAlice, "member"); err != nil {
		t.Fatalf("add alice to %s: %v", group, err)
	}
	if !fx.canView(t, testAlice, testWorkspace) {
		t.Fatal("alice cannot view the workspace through the group")
	}

	// Interrupt the delete between its two writes.
	stop := errors.New("interrupted")
	testHookBetweenDeletes = func(node object.Ref) error {
		if node == group {
			return stop
		}
		return nil
	}
	t.Cleanup(func() { testHookBetweenDeletes = nil })
	if _, err := fx.svc.Delete(ctx, carol, group); !errors.Is(err, stop) {
		t.Fatalf("delete: %v, want the injected interruption", err)
	}
	// The group is still there, without its role.
	if role := fx.role(t, testWorkspace, group); role != "" {
		t.Errorf("after the first write %s still holds %q on %s", group, role, testWorkspace)
	}
	if fx.canView(t, testAlice, testWorkspace) {
		t.Error("alice still views the workspace after the group lost its role")
	}
	if role := fx.role(t, group, testAlice); role != "member" {
		t.Errorf("alice's role in %s after the first write: %q, want member", group, role)
	}

	// Repeating the delete finishes it.
	testHookBetweenDeletes = nil
	if _, err := fx.svc.Delete(ctx, carol, group); err != nil {
		t.Fatalf("repeat the delete: %v", err)
	}

	// Bob's new group of the same id in his own org starts empty.
	if _, err := fx.svc.Create(ctx, bob, CreateRequest{Resource: otherOrg}); err != nil {
		t.Fatalf("create %s: %v", otherOrg, err)
	}
	if _, err := fx.svc.Create(ctx, bob, CreateRequest{Resource: group, Parent: otherOrg}); err != nil {
		t.Fatalf("create %s in %s: %v", group, otherOrg, err)
	}
	if fx.canView(t, testBob, testWorkspace) {
		t.Error("bob, admin of the new group, views carol's workspace")
	}
}

// A relationship that still names a deleted resource, whatever left it
// there, keeps its id from being reused.
func TestCreateRefusesIDStillNamed(t *testing.T) {
	fx := newVersionsFixture(t)
	ctx := t.Context()
	bob := Caller{Ref: testBob}
	group := fx.groupWithRole(t, "editor")
	globex := object.Ref{Type: object.TypeOrg, ID: "globex"}

	// Remove the group's own relationships only, as the old order of the
	// delete's writes did when interrupted between them.
	if _, err := fx.engine.DeleteMatching(ctx, &v1.RelationshipFilter{ResourceType: group.Type, OptionalResourceId: group.ID}, nil); err != nil {
		t.Fatalf("delete the group's own relationships: %v", err)
	}

	if _, err := fx.svc.Create(ctx, bob, CreateRequest{Resource: globex}); err != nil {
		t.Fatalf("create %s: %v", globex, err)
	}
	_, err := fx.svc.Create(ctx, bob, CreateRequest{Resource: group, Parent: globex})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "interrupted delete") {
		t.Fatalf("create %s while a role still names it: %v, want ErrConflict naming the leftovers", group, err)
	}
	if fx.canView(t, testBob, testWorkspace) {
		t.Error("bob views carol's workspace")
	}
	// Another id works.
	if _, err := fx.svc.Create(ctx, bob, CreateRequest{Resource: object.Ref{Type: object.TypeGroup, ID: "eng2"}, Parent: globex}); err != nil {
		t.Fatalf("create another group: %v", err)
	}
}
