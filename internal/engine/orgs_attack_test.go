package engine_test

import (
	"testing"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// moveDocToGlobex deletes doc with a write of no org, as Gatehouse deletes
// resources, and creates it again in globex's project p2 with a write
// recorded under globex, as Gatehouse creates resources.
func moveDocToGlobex(tb testing.TB, e *engine.Engine) {
	tb.Helper()
	if _, err := e.DeleteMatching(tb.Context(), &v1.RelationshipFilter{ResourceType: doc.Type, OptionalResourceId: doc.ID}, nil); err != nil {
		tb.Fatalf("delete %s: %v", doc, err)
	}
	create := touch(doc, "project", object.Ref{Type: "project", ID: "p2"})
	create.Operation = v1.RelationshipUpdate_OPERATION_CREATE
	if _, err := e.Write(engine.ForOrg(tb.Context(), globex.ID), []*v1.RelationshipUpdate{create}, nil); err != nil {
		tb.Fatalf("create %s in globex: %v", doc, err)
	}
}

// TestOrgOfOlderSnapshotAfterMove resolves a resource's org in a request
// whose snapshot was read before the resource moved to another org, as a
// bulk check does for its later items while writes commit. Requests that
// start after the move must find the new org, and their results must
// follow the new org's writes.
func TestOrgOfOlderSnapshotAfterMove(t *testing.T) {
	for name, start := range bothDatastores() {
		t.Run(name, func(t *testing.T) {
			in := start(t)
			seed(t, in.a)
			seedGlobex(t, in.a)

			// The early request reads its snapshot, and resolving another
			// resource in it pins the revision of its whole state.
			early, err := in.a.WithSnapshot(t.Context())
			if err != nil {
				t.Fatalf("read snapshot: %v", err)
			}
			if org, ok, err := in.a.ResourceOrg(early, object.Ref{Type: "project", ID: "p1"}); err != nil || !ok || org != acme {
				t.Fatalf("org of project:p1 = %v, %v, %v; want %s", org, ok, err, acme)
			}

			moveDocToGlobex(t, in.b)

			// The early request resolves the document only now.
			if _, _, err := in.a.ResourceOrg(early, doc); err != nil {
				t.Fatalf("org of %s in the early snapshot: %v", doc, err)
			}

			if org, ok := orgOf(t, in.a, doc); !ok || org != globex {
				t.Errorf("org of %s after it moved = %v, %v; want %s", doc, org, ok, globex)
			}
			view := engine.CheckRequest{Resource: doc, Permission: "view", Subject: carol}
			if !checkIn(t, in.a, view).Allowed {
				t.Fatal("carol, globex's owner, may not view the document now in globex")
			}
			if checkIn(t, in.a, engine.CheckRequest{Resource: doc, Permission: "view", Subject: alice}).Allowed {
				t.Error("alice, acme's owner, may view the document now in globex")
			}

			// globex removes carol's role, recorded under globex.
			if _, err := in.b.DeleteMatching(engine.ForOrg(t.Context(), globex.ID), &v1.RelationshipFilter{
				ResourceType: globex.Type, OptionalResourceId: globex.ID, OptionalRelation: "owner",
			}, nil); err != nil {
				t.Fatalf("remove carol's role: %v", err)
			}
			if checkIn(t, in.a, view).Allowed {
				t.Error("carol still views the document after globex removed her role: stale cached result")
			}
		})
	}
}
