package authz

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// These tests race Delete against the other writes on the same ids. They
// use the fixture of versions_test.go: carol owns org:acme and its
// workspace:eng, where alice is a viewer. bob founds org:globex.

var testGlobex = object.Ref{Type: object.TypeOrg, ID: "globex"}

// runOnceAtFirstBump arms fx.versions so that fn runs once, right after
// the first auth version raise of the next change, which withBumps makes
// before the change's write. Nested changes made by fn do not run it again.
func (fx *versionsFixture) runOnceAtFirstBump(t *testing.T, fn func()) {
	t.Helper()
	var once sync.Once
	fx.versions.arm(nil, func(call int) {
		if call == 1 {
			once.Do(fn)
		}
	})
	t.Cleanup(func() { fx.versions.arm(nil, nil) })
}

// A delete checks its caller's permission and reads the resource's org
// before it writes. If the resource is deleted meanwhile and bob creates
// one of the same id in his own org, carol's delete must not remove bob's
// resource: it is in an org where carol has no role at all. deleteTree's
// writes carry the parent links that Delete read, up to the org, as
// preconditions. An org has no parent link to tell a new one of the same id
// from the old, so orgs are not covered.
func TestDeleteSparesRecreatedResource(t *testing.T) {
	for _, typ := range []string{object.TypeGroup, object.TypeWorkspace} {
		t.Run(typ, func(t *testing.T) {
			fx := newVersionsFixture(t)
			ctx := t.Context()
			carol, bob := Caller{Ref: testCarol}, Caller{Ref: testBob}
			target := object.Ref{Type: typ, ID: "shared"}
			if _, err := fx.svc.Create(ctx, carol, CreateRequest{Resource: target, Parent: testOrg}); err != nil {
				t.Fatalf("create %s: %v", target, err)
			}
			if _, err := fx.svc.Create(ctx, bob, CreateRequest{Resource: testGlobex}); err != nil {
				t.Fatalf("create %s: %v", testGlobex, err)
			}

			// While carol's delete waits before its write, another request
			// finishes deleting carol's resource and bob creates his own.
			var raceErr error
			fx.runOnceAtFirstBump(t, func() {
				if _, err := fx.svc.Delete(ctx, carol, target); err != nil {
					raceErr = err
					return
				}
				if _, err := fx.svc.Create(ctx, bob, CreateRequest{Resource: target, Parent: testGlobex}); err != nil {
					raceErr = err
				}
			})
			_, err := fx.svc.Delete(ctx, carol, target)
			if raceErr != nil {
				t.Fatalf("the concurrent delete and create: %v", raceErr)
			}
			t.Logf("carol's delete returned %v", err)

			org, orgErr := fx.svc.orgOf(ctx, target)
			if orgErr != nil || org != testGlobex {
				t.Errorf("carol's delete of her %s removed bob's %s in %s: orgOf = %v, %v",
					target, target, testGlobex, org, orgErr)
			}
		})
	}
}

// A role given to a group between the two writes of its delete stays
// after the group is gone. It must keep the id from being reused in
// another org, and the resource's manager must be able to remove it.
func TestGroupDeleteLeftoverBlocksReuse(t *testing.T) {
	fx := newVersionsFixture(t)
	ctx := t.Context()
	carol, bob := Caller{Ref: testCarol}, Caller{Ref: testBob}
	group := object.Ref{Type: object.TypeGroup, ID: "eng"}
	outer := object.Ref{Type: object.TypeGroup, ID: "outer"}
	if _, err := fx.svc.Create(ctx, carol, CreateRequest{Resource: group, Parent: testOrg}); err != nil {
		t.Fatalf("create %s: %v", group, err)
	}
	if _, err := fx.svc.Create(ctx, carol, CreateRequest{Resource: outer, Parent: testOrg}); err != nil {
		t.Fatalf("create %s: %v", outer, err)
	}

	testHookBetweenDeletes = func(node object.Ref) error {
		if node != group {
			return nil
		}
		testHookBetweenDeletes = nil
		// The group still exists here, so both writes are accepted.
		if _, err := fx.svc.SetMember(ctx, carol, testWorkspace, group, "editor"); err != nil {
			t.Errorf("give %s a role between the writes: %v", group, err)
		}
		if _, err := fx.svc.SetMember(ctx, carol, outer, group, "member"); err != nil {
			t.Errorf("nest %s in %s between the writes: %v", group, outer, err)
		}
		return nil
	}
	t.Cleanup(func() { testHookBetweenDeletes = nil })
	if _, err := fx.svc.Delete(ctx, carol, group); err != nil {
		t.Fatalf("delete %s: %v", group, err)
	}
	if fx.role(t, testWorkspace, group) != "editor" || fx.role(t, outer, group) != "member" {
		t.Fatal("the roles given between the writes are gone; this test no longer reaches the case")
	}

	if _, err := fx.svc.Create(ctx, bob, CreateRequest{Resource: testGlobex}); err != nil {
		t.Fatalf("create %s: %v", testGlobex, err)
	}
	_, err := fx.svc.Create(ctx, bob, CreateRequest{Resource: group, Parent: testGlobex})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("bob creates %s while roles name it: %v, want ErrConflict", group, err)
	}
	if !strings.Contains(err.Error(), "interrupted delete") {
		t.Errorf("conflict message %q does not name the interrupted delete", err)
	}
	if fx.canView(t, testBob, testWorkspace) {
		t.Error("bob views carol's workspace")
	}

	// Once carol removes the leftover roles, the id is free again, and a new
	// group of that id starts with no access.
	for _, resource := range []object.Ref{testWorkspace, outer} {
		if _, err := fx.svc.RemoveMember(ctx, carol, resource, group); err != nil {
			t.Fatalf("remove the leftover role of %s on %s: %v", group, resource, err)
		}
	}
	if _, err := fx.svc.Create(ctx, bob, CreateRequest{Resource: group, Parent: testGlobex}); err != nil {
		t.Fatalf("create %s after the leftovers went: %v", group, err)
	}
	if fx.canView(t, testBob, testWorkspace) || fx.canView(t, testBob, outer) {
		t.Error("bob's new group gives him access in carol's org")
	}
}

// Projects created under a workspace while it is deleted are either
// deleted with it or make the delete fail. No project is left without a parent.
func TestDeleteRaceLeavesNoOrphans(t *testing.T) {
	fx := newVersionsFixture(t)
	ctx := t.Context()
	carol := Caller{Ref: testCarol}

	var wg sync.WaitGroup
	created := make(chan object.Ref, 64)
	for w := range 4 {
		wg.Go(func() {
			for i := range 10 {
				p := object.Ref{Type: object.TypeProject, ID: string(rune('a'+w)) + string(rune('a'+i))}
				if _, err := fx.svc.Create(ctx, carol, CreateRequest{Resource: p, Parent: testWorkspace}); err == nil {
					created <- p
				}
			}
		})
	}

	_, delErr := fx.svc.Delete(ctx, carol, testWorkspace)
	wg.Wait()
	close(created)
	t.Logf("delete: %v", delErr)

	workspaceExists, err := fx.engine.Exists(ctx, testWorkspace)
	if err != nil {
		t.Fatal(err)
	}
	for p := range created {
		exists, err := fx.engine.Exists(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if exists && !workspaceExists {
			t.Errorf("%s outlived its workspace", p)
		}
	}
}
