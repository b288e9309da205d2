package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

var (
	globex = object.Ref{Type: "org", ID: "globex"}
	carol  = object.Ref{Type: "user", ID: "dev|carol"}
	doc2   = object.Ref{Type: "document", ID: "d2"}
)

// seedGlobex writes a second org, globex, with carol as owner and doc2 in
// it, recorded as a change to globex.
func seedGlobex(tb testing.TB, e *engine.Engine) {
	tb.Helper()
	ws, project := object.Ref{Type: "workspace", ID: "w2"}, object.Ref{Type: "project", ID: "p2"}
	_, err := e.Write(engine.ForOrg(tb.Context(), globex.ID), []*v1.RelationshipUpdate{
		touch(globex, "platform", object.Ref{Type: "platform", ID: "gatehouse"}),
		touch(globex, "owner", carol),
		touch(ws, "org", globex),
		touch(project, "workspace", ws),
		touch(doc2, "project", project),
	}, nil)
	if err != nil {
		tb.Fatalf("seed globex: %v", err)
	}
}

// checkIn runs one check in a fresh request context, as the check API does.
func checkIn(tb testing.TB, e *engine.Engine, req engine.CheckRequest) engine.Decision {
	tb.Helper()
	ctx, err := e.WithResource(tb.Context(), req.Resource)
	if err != nil {
		tb.Fatalf("pin %s: %v", req.Resource, err)
	}
	d, err := e.Check(ctx, req)
	if err != nil {
		tb.Fatalf("check %s %s %s: %v", req.Subject, req.Permission, req.Resource, err)
	}
	return d
}

func orgOf(tb testing.TB, e *engine.Engine, resource object.Ref) (object.Ref, bool) {
	tb.Helper()
	ctx, err := e.WithResource(tb.Context(), resource)
	if err != nil {
		tb.Fatalf("pin %s: %v", resource, err)
	}
	return engine.OrgOf(ctx, resource)
}

func bothDatastores() map[string]func(testing.TB) instances {
	return map[string]func(testing.TB) instances{
		"memory":   func(tb testing.TB) instances { return memoryInstances(tb, 0) },
		"postgres": postgresInstances,
	}
}

// TestOrgStateKeepsOtherOrgsCached checks that a write recorded under one
// org leaves the cached results of another in use, and that a write under
// the org itself, or under none, is seen at once.
func TestOrgStateKeepsOtherOrgsCached(t *testing.T) {
	for name, start := range bothDatastores() {
		t.Run(name, func(t *testing.T) {
			in := start(t)
			seed(t, in.a)
			seedGlobex(t, in.a)
			req := engine.CheckRequest{Resource: doc, Permission: "edit", Subject: alice}

			if org, ok := orgOf(t, in.a, doc); !ok || org != acme {
				t.Fatalf("org of %s = %v, %v; want %s", doc, org, ok, acme)
			}
			if !checkIn(t, in.a, req).Allowed {
				t.Fatal("first check denied, want allowed")
			}

			// Writes to globex, on the other instance, keep acme's result.
			for i := range 3 {
				if _, err := in.b.Write(engine.ForOrg(t.Context(), globex.ID), []*v1.RelationshipUpdate{
					touch(globex, "member", object.Ref{Type: "user", ID: "dev|m" + string(rune('0'+i))}),
				}, nil); err != nil {
					t.Fatalf("write to globex: %v", err)
				}
				before := cacheLookups(t, in.metrics, "hit")
				if !checkIn(t, in.a, req).Allowed {
					t.Fatalf("check after write %d to globex denied, want allowed", i)
				}
				if cacheLookups(t, in.metrics, "hit") != before+1 {
					t.Errorf("check after write %d to globex missed the cache", i)
				}
			}

			// A write to acme is seen at once.
			if _, err := in.b.DeleteMatching(engine.ForOrg(t.Context(), acme.ID), &v1.RelationshipFilter{
				ResourceType: "org", OptionalResourceId: acme.ID, OptionalRelation: "owner",
			}, nil); err != nil {
				t.Fatalf("delete role: %v", err)
			}
			if checkIn(t, in.a, req).Allowed {
				t.Fatal("cached allow served after a write to the resource's org")
			}

			// So is a write recorded under no org.
			if _, err := in.b.Write(t.Context(), []*v1.RelationshipUpdate{touch(acme, "owner", alice)}, nil); err != nil {
				t.Fatalf("restore role: %v", err)
			}
			if !checkIn(t, in.a, req).Allowed {
				t.Fatal("cached deny served after a write of no org")
			}
		})
	}
}

// TestOrgStatePinsOneRevision checks that the uncached checks of one org
// state are evaluated at one revision, so that SpiceDB's dispatch cache
// serves what they share, even while other orgs change.
func TestOrgStatePinsOneRevision(t *testing.T) {
	for name, start := range bothDatastores() {
		t.Run(name, func(t *testing.T) {
			in := start(t)
			seed(t, in.a)
			seedGlobex(t, in.a)
			first := checkIn(t, in.a, engine.CheckRequest{Resource: doc, Permission: "edit", Subject: alice})
			if _, err := in.b.Write(engine.ForOrg(t.Context(), globex.ID), []*v1.RelationshipUpdate{touch(globex, "member", bob)}, nil); err != nil {
				t.Fatalf("write to globex: %v", err)
			}
			second := checkIn(t, in.a, engine.CheckRequest{Resource: doc, Permission: "view", Subject: bob})
			if first.Token == "" || first.Token != second.Token {
				t.Errorf("two checks in one acme state ran at %q and %q, want one revision", first.Token, second.Token)
			}
			if second.Allowed {
				t.Error("bob may view acme's document after joining globex")
			}
			// A check on globex itself reflects bob's membership.
			if !checkIn(t, in.a, engine.CheckRequest{Resource: globex, Permission: "view", Subject: bob}).Allowed {
				t.Error("bob may not view globex after joining it")
			}
		})
	}
}

// TestOrgOfMovedResource checks that a resource deleted from one org and
// created again in another is checked in the new one, however the engine
// remembered it.
func TestOrgOfMovedResource(t *testing.T) {
	for name, start := range bothDatastores() {
		t.Run(name, func(t *testing.T) {
			in := start(t)
			seed(t, in.a)
			seedGlobex(t, in.a)
			view := engine.CheckRequest{Resource: doc, Permission: "view", Subject: carol}
			if checkIn(t, in.a, view).Allowed {
				t.Fatal("carol may view acme's document")
			}

			// The other instance deletes the document, recorded under acme.
			if _, err := in.b.DeleteMatching(engine.ForOrg(t.Context(), acme.ID), &v1.RelationshipFilter{
				ResourceType: doc.Type, OptionalResourceId: doc.ID,
			}, nil); err != nil {
				t.Fatalf("delete document: %v", err)
			}
			if _, ok := orgOf(t, in.a, doc); ok {
				t.Error("a deleted document still has an org")
			}
			if checkIn(t, in.a, view).Allowed {
				t.Error("carol may view a deleted document")
			}

			// It comes back in globex, recorded under globex.
			create := touch(doc, "project", object.Ref{Type: "project", ID: "p2"})
			create.Operation = v1.RelationshipUpdate_OPERATION_CREATE
			if _, err := in.b.Write(engine.ForOrg(t.Context(), globex.ID), []*v1.RelationshipUpdate{create}, nil); err != nil {
				t.Fatalf("create document in globex: %v", err)
			}
			if org, ok := orgOf(t, in.a, doc); !ok || org != globex {
				t.Errorf("org of the document created again = %v, %v; want %s", org, ok, globex)
			}
			if !checkIn(t, in.a, view).Allowed {
				t.Error("carol may not view globex's document")
			}
			if checkIn(t, in.a, engine.CheckRequest{Resource: doc, Permission: "view", Subject: alice}).Allowed {
				t.Error("alice, acme's owner, may view the document now in globex")
			}
		})
	}
}

// TestOrgOfMissingResource checks that a resource in no org is checked
// against the whole datastore's state, and denied.
func TestOrgOfMissingResource(t *testing.T) {
	in := memoryInstances(t, 0)
	seed(t, in.a)
	missing := object.Ref{Type: "document", ID: "nowhere"}
	if _, ok := orgOf(t, in.a, missing); ok {
		t.Error("a missing document has an org")
	}
	if checkIn(t, in.a, engine.CheckRequest{Resource: missing, Permission: "view", Subject: alice}).Allowed {
		t.Error("a missing document allows a view")
	}
	if org, ok := orgOf(t, in.a, acme); !ok || org != acme {
		t.Errorf("org of an org = %v, %v; want itself", org, ok)
	}
}

// TestForOrgOnlyTagsWrites checks that ForOrg changes nothing for reads.
func TestForOrgOnlyTagsWrites(t *testing.T) {
	in := memoryInstances(t, 0)
	seed(t, in.a)
	ctx := engine.ForOrg(context.Background(), globex.ID)
	d, err := in.a.Check(ctx, engine.CheckRequest{Resource: doc, Permission: "edit", Subject: alice})
	if err != nil || !d.Allowed {
		t.Fatalf("check with ForOrg = %+v, %v; want allowed", d, err)
	}
}

func TestPostgresGCWindowMinimum(t *testing.T) {
	_, err := engine.NewPostgresDatastore(t.Context(), engine.PostgresConfig{
		URL: "postgres://gatehouse@127.0.0.1:1/none", GCWindow: engine.MinGCWindow - time.Minute,
	})
	if err == nil || !strings.Contains(err.Error(), "--database-gc-window") {
		t.Errorf("open with a window under the minimum: err = %v, want one naming --database-gc-window", err)
	}
}

// TestSubjectStateKeepsOtherSubjectsCached checks that a write naming one
// principal as its subject leaves the org's other cached results in use,
// while that principal's check results change at once, and that a write
// naming a group is seen by everyone.
func TestSubjectStateKeepsOtherSubjectsCached(t *testing.T) {
	for name, start := range bothDatastores() {
		t.Run(name, func(t *testing.T) {
			in := start(t)
			seed(t, in.a)
			project := object.Ref{Type: "project", ID: "p1"}
			aliceEdit := engine.CheckRequest{Resource: doc, Permission: "edit", Subject: alice}
			bobView := engine.CheckRequest{Resource: doc, Permission: "view", Subject: bob}
			carolView := engine.CheckRequest{Resource: doc, Permission: "view", Subject: carol}
			for _, req := range []engine.CheckRequest{aliceEdit, bobView, carolView} {
				if got := checkIn(t, in.a, req).Allowed; got != (req == aliceEdit) {
					t.Fatalf("first check of %s = %v", req.Subject, got)
				}
			}
			aliceCached := func(after string) {
				t.Helper()
				before := cacheLookups(t, in.metrics, "hit")
				if !checkIn(t, in.a, aliceEdit).Allowed {
					t.Fatalf("alice may not edit after %s", after)
				}
				if cacheLookups(t, in.metrics, "hit") != before+1 {
					t.Errorf("alice's check after %s missed the cache", after)
				}
			}

			// bob's role, written on the other instance, is seen at once.
			if _, err := in.b.Write(engine.ForOrg(t.Context(), acme.ID), []*v1.RelationshipUpdate{touch(project, "viewer", bob)}, nil); err != nil {
				t.Fatalf("give bob a role: %v", err)
			}
			aliceCached("bob's role")
			if !checkIn(t, in.a, bobView).Allowed {
				t.Error("bob may not view after getting a role")
			}

			// So is a grant to carol, vouched for by ForSubject.
			grant := object.Ref{Type: "grant", ID: "g1"}
			role := touch(doc, "viewer", grant)
			role.Relationship.Subject.OptionalRelation = "holder"
			role.Relationship.OptionalExpiresAt = timestamppb.New(time.Now().Add(time.Hour))
			ctx := engine.ForSubject(engine.ForOrg(t.Context(), acme.ID), carol)
			if _, err := in.b.Write(ctx, []*v1.RelationshipUpdate{role, touch(grant, "holder", carol)}, nil); err != nil {
				t.Fatalf("grant carol a role: %v", err)
			}
			aliceCached("carol's grant")
			if !checkIn(t, in.a, carolView).Allowed {
				t.Error("carol may not view after a grant")
			}

			// Bulk checks key their results in the same way.
			if _, err := in.b.DeleteMatching(engine.ForOrg(t.Context(), acme.ID), &v1.RelationshipFilter{
				ResourceType: project.Type, OptionalResourceId: project.ID, OptionalRelation: "viewer",
			}, nil); err != nil {
				t.Fatalf("remove bob's role: %v", err)
			}
			bulkCtx, err := in.a.WithResource(t.Context(), doc)
			if err != nil {
				t.Fatalf("pin %s: %v", doc, err)
			}
			results, err := in.a.CheckEach(bulkCtx, []engine.CheckRequest{aliceEdit, bobView})
			if err != nil {
				t.Fatalf("bulk check: %v", err)
			}
			if !results[0].Decision.Allowed || results[1].Decision.Allowed {
				t.Errorf("bulk check after a delete of no one subject = %+v, want alice allowed, bob denied", results)
			}
			if _, err := in.b.Write(engine.ForOrg(t.Context(), acme.ID), []*v1.RelationshipUpdate{touch(project, "viewer", bob)}, nil); err != nil {
				t.Fatalf("give bob a role again: %v", err)
			}
			if bulkCtx, err = in.a.WithResource(t.Context(), doc); err != nil {
				t.Fatalf("pin %s: %v", doc, err)
			}
			before := cacheLookups(t, in.metrics, "hit")
			if results, err = in.a.CheckEach(bulkCtx, []engine.CheckRequest{aliceEdit, bobView}); err != nil {
				t.Fatalf("bulk check: %v", err)
			}
			if !results[0].Decision.Allowed || !results[1].Decision.Allowed {
				t.Errorf("bulk check after bob's role = %+v, want both allowed", results)
			}
			if cacheLookups(t, in.metrics, "hit") != before+1 {
				t.Error("the bulk check after bob's role did not serve alice from the cache")
			}

			// A group's role changes its members' check results, so every
			// result of the org is evaluated again.
			groupRole := touch(doc, "viewer", object.Ref{Type: "group", ID: "eng"})
			groupRole.Relationship.Subject.OptionalRelation = "member"
			if _, err := in.b.Write(engine.ForOrg(t.Context(), acme.ID), []*v1.RelationshipUpdate{groupRole}, nil); err != nil {
				t.Fatalf("give a group a role: %v", err)
			}
			before = cacheLookups(t, in.metrics, "hit")
			if !checkIn(t, in.a, aliceEdit).Allowed {
				t.Fatal("alice may not edit after a group's role")
			}
			if cacheLookups(t, in.metrics, "hit") != before {
				t.Error("alice's check after a group's role was served from the cache")
			}
		})
	}
}

// TestPrincipalWritesKeepOtherPrincipalsPinned checks that a write recorded
// under one principal moves only that principal's uncached checks to a new
// revision, and that a write of no one principal moves them all. PostgreSQL
// states tell principals apart at their read, and the engine's own
// in-memory datastore counts writes by principal.
func TestPrincipalWritesKeepOtherPrincipalsPinned(t *testing.T) {
	for name, open := range bothDatastores() {
		t.Run(name, func(t *testing.T) {
			in := open(t)
			seed(t, in.a)
			seedGlobex(t, in.a)
			project := object.Ref{Type: "project", ID: "p1"}
			write := func(what string, updates ...*v1.RelationshipUpdate) {
				t.Helper()
				if _, err := in.b.Write(engine.ForOrg(t.Context(), acme.ID), updates, nil); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			check := func(req engine.CheckRequest, want bool) string {
				t.Helper()
				d := checkIn(t, in.a, req)
				if d.Allowed != want {
					t.Fatalf("%s %s %s = %v, want %v", req.Subject, req.Permission, req.Resource, d.Allowed, want)
				}
				if d.Token == "" {
					t.Fatalf("%s %s %s has no token", req.Subject, req.Permission, req.Resource)
				}
				return d.Token
			}

			first := check(engine.CheckRequest{Resource: doc, Permission: "edit", Subject: alice}, true)
			if got := check(engine.CheckRequest{Resource: doc, Permission: "view", Subject: carol}, false); got != first {
				t.Fatalf("two checks in one acme state ran at %q and %q, want one revision", first, got)
			}

			write("give bob a role", touch(project, "viewer", bob))
			if got := check(engine.CheckRequest{Resource: doc, Permission: "view", Subject: alice}, true); got != first {
				t.Errorf("alice's check after bob's role ran at %q, want the revision before it, %q", got, first)
			}
			if got := check(engine.CheckRequest{Resource: doc, Permission: "view", Subject: bob}, true); got == first {
				t.Error("bob's check after his role ran at the revision before it")
			}

			write("give carol a role", touch(project, "viewer", carol))
			if got := check(engine.CheckRequest{Resource: doc, Permission: "view", Subject: carol}, true); got == first {
				t.Error("carol's check after her role ran at the revision before it")
			}
			if got := check(engine.CheckRequest{Resource: project, Permission: "view", Subject: alice}, true); got != first {
				t.Errorf("alice's check after carol's role ran at %q, want %q", got, first)
			}

			// A group's role may change anyone's results, so it moves every check
			// of its org, and no check of another org.
			groupRole := touch(doc, "viewer", object.Ref{Type: "group", ID: "eng"})
			groupRole.Relationship.Subject.OptionalRelation = "member"
			write("give a group a role", groupRole)
			if got := check(engine.CheckRequest{Resource: project, Permission: "edit", Subject: alice}, true); got == first {
				t.Error("alice's check after a group's role ran at the revision before it")
			}
			if got := check(engine.CheckRequest{Resource: doc2, Permission: "view", Subject: carol}, true); got != first {
				t.Errorf("carol's check in globex after writes to acme ran at %q, want %q", got, first)
			}

			// A resource created after the revision that the checks share is found
			// in its org, and checked there.
			doc3 := object.Ref{Type: "document", ID: "d3"}
			write("create a document", touch(doc3, "project", project))
			if org, ok := orgOf(t, in.a, doc3); !ok || org != acme {
				t.Fatalf("org of a new document = %v, %v; want %s", org, ok, acme)
			}
			check(engine.CheckRequest{Resource: doc3, Permission: "edit", Subject: alice}, true)
			check(engine.CheckRequest{Resource: doc3, Permission: "edit", Subject: carol}, false)
		})
	}
}
