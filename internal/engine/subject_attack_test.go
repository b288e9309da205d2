package engine_test

// The tests in this file attack the check results keyed by an org's state
// for one principal. After a write returns, a check on either instance must
// reflect it, whichever subject the write was recorded under.

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

var (
	saProject = object.Ref{Type: "project", ID: "p1"}
	saEng     = object.Ref{Type: "group", ID: "eng"}
	saOuter   = object.Ref{Type: "group", ID: "outer"}
	saBilling = object.Ref{Type: "service", ID: "corp|billing"}
	saLink    = object.Ref{Type: "link", ID: "l1"}
	saGrant   = object.Ref{Type: "grant", ID: "g1"}
	saDave    = object.Ref{Type: "user", ID: "dev|dave"}
)

// saUserset returns a touch of a relationship whose subject has a relation.
func saUserset(resource object.Ref, relation string, subject object.Ref, subjectRelation string) *v1.RelationshipUpdate {
	u := touch(resource, relation, subject)
	u.Relationship.Subject.OptionalRelation = subjectRelation
	return u
}

func saDelete(u *v1.RelationshipUpdate) *v1.RelationshipUpdate {
	u.Operation = v1.RelationshipUpdate_OPERATION_DELETE
	return u
}

func saAcme(ctx context.Context) context.Context { return engine.ForOrg(ctx, acme.ID) }

func saWrite(tb testing.TB, e *engine.Engine, ctx context.Context, updates ...*v1.RelationshipUpdate) {
	tb.Helper()
	if _, err := e.Write(ctx, updates, nil); err != nil {
		tb.Fatalf("write: %v", err)
	}
}

// saSeed adds the groups of acme (eng, nested in outer), a link and a
// service, all written under acme and no one subject.
func saSeed(tb testing.TB, e *engine.Engine) {
	tb.Helper()
	seed(tb, e)
	saWrite(tb, e, saAcme(tb.Context()),
		touch(saEng, "org", acme),
		touch(saOuter, "org", acme),
		saUserset(saOuter, "member", saEng, "member"),
		saUserset(doc, "viewer", saOuter, "member"),
		saUserset(doc, "editor", saLink, "holder"),
	)
}

// saWant fails unless the check of req on e, in a fresh request, returns want.
func saWant(tb testing.TB, e *engine.Engine, req engine.CheckRequest, want bool, when string) {
	tb.Helper()
	if got := checkIn(tb, e, req).Allowed; got != want {
		tb.Errorf("%s: %s %s %s#%s = %v, want %v", when, req.Resource, req.Permission, req.Subject, req.SubjectRelation, got, want)
	}
}

// saWarm checks every request once on e, so that each result is cached.
func saWarm(tb testing.TB, e *engine.Engine, reqs map[engine.CheckRequest]bool, when string) {
	tb.Helper()
	for req, want := range reqs {
		saWant(tb, e, req, want, when)
	}
}

// TestAttackEachPrincipalWrite gives and takes access on instance b through
// each kind of write that names one principal: group membership, nested
// groups, link redemption, grants to a user and a service's app role. Every
// result is warm on instance a, and every subject is checked after each
// write.
func TestAttackEachPrincipalWrite(t *testing.T) {
	for name, start := range bothDatastores() {
		t.Run(name, func(t *testing.T) {
			in := start(t)
			saSeed(t, in.a)
			ctx := saAcme(t.Context())

			view := func(s object.Ref) engine.CheckRequest {
				return engine.CheckRequest{Resource: doc, Permission: "view", Subject: s}
			}
			edit := func(s object.Ref) engine.CheckRequest {
				return engine.CheckRequest{Resource: doc, Permission: "edit", Subject: s}
			}
			engView := engine.CheckRequest{Resource: doc, Permission: "view", Subject: saEng, SubjectRelation: "member"}
			linkEdit := engine.CheckRequest{Resource: doc, Permission: "edit", Subject: saLink}
			orgView := func(s object.Ref) engine.CheckRequest {
				return engine.CheckRequest{Resource: acme, Permission: "view", Subject: s}
			}
			want := map[engine.CheckRequest]bool{
				view(alice): true, edit(alice): true, view(bob): false, edit(bob): false,
				view(carol): false, edit(carol): false, view(saDave): false, view(saBilling): false,
				engView: true, linkEdit: false, orgView(bob): false, orgView(saBilling): false,
			}
			step := func(when string, change map[engine.CheckRequest]bool, updates ...*v1.RelationshipUpdate) {
				t.Helper()
				saWarm(t, in.a, want, "before "+when)
				saWrite(t, in.b, ctx, updates...)
				for req, v := range change {
					want[req] = v
				}
				for req, v := range want {
					saWant(t, in.a, req, v, "after "+when)
				}
			}

			step("bob joins eng (nested in outer, a viewer)", map[engine.CheckRequest]bool{view(bob): true},
				touch(saEng, "member", bob))
			step("carol redeems the link", map[engine.CheckRequest]bool{view(carol): true, edit(carol): true},
				touch(saLink, "holder", carol))
			step("dave is granted member of eng", map[engine.CheckRequest]bool{view(saDave): true},
				func() []*v1.RelationshipUpdate {
					role := saUserset(saEng, "member", saGrant, "holder")
					role.Relationship.OptionalExpiresAt = timestamppb.New(time.Now().Add(time.Hour))
					return []*v1.RelationshipUpdate{role, touch(saGrant, "holder", saDave)}
				}()...)
			step("billing gets the app role", map[engine.CheckRequest]bool{view(saBilling): true, orgView(saBilling): true},
				touch(acme, "app", saBilling))
			step("bob becomes an org member", map[engine.CheckRequest]bool{orgView(bob): true},
				touch(acme, "member", bob))

			// And back again.
			step("bob leaves eng", map[engine.CheckRequest]bool{view(bob): false},
				saDelete(touch(saEng, "member", bob)))
			step("carol's redemption is deleted", map[engine.CheckRequest]bool{view(carol): false, edit(carol): false},
				saDelete(touch(saLink, "holder", carol)))
			step("dave's grant ends", map[engine.CheckRequest]bool{view(saDave): false},
				saDelete(saUserset(saEng, "member", saGrant, "holder")), saDelete(touch(saGrant, "holder", saDave)))
			step("billing loses the app role", map[engine.CheckRequest]bool{view(saBilling): false, orgView(saBilling): false},
				saDelete(touch(acme, "app", saBilling)))
			step("alice loses ownership", map[engine.CheckRequest]bool{view(alice): false, edit(alice): false},
				saDelete(touch(acme, "owner", alice)))
		})
	}
}

// TestAttackTwoSubjectWrites checks that a write naming two principals,
// or naming a grant vouched for another principal than the one it holds,
// is seen by each of them.
func TestAttackTwoSubjectWrites(t *testing.T) {
	for name, start := range bothDatastores() {
		t.Run(name, func(t *testing.T) {
			in := start(t)
			saSeed(t, in.a)
			bobView := engine.CheckRequest{Resource: doc, Permission: "view", Subject: bob}
			carolView := engine.CheckRequest{Resource: doc, Permission: "view", Subject: carol}
			saWant(t, in.a, bobView, false, "before")
			saWant(t, in.a, carolView, false, "before")

			saWrite(t, in.b, saAcme(t.Context()), touch(saProject, "viewer", bob), touch(saProject, "viewer", carol))
			saWant(t, in.a, bobView, true, "after a write naming bob and carol")
			saWant(t, in.a, carolView, true, "after a write naming bob and carol")

			// The grant is vouched for alice, but holds dave.
			daveView := engine.CheckRequest{Resource: doc, Permission: "view", Subject: saDave}
			saWant(t, in.a, daveView, false, "before the grant")
			role := saUserset(doc, "viewer", saGrant, "holder")
			role.Relationship.OptionalExpiresAt = timestamppb.New(time.Now().Add(time.Hour))
			saWrite(t, in.b, engine.ForSubject(saAcme(t.Context()), alice), role, touch(saGrant, "holder", saDave))
			saWant(t, in.a, daveView, true, "after a grant holding dave vouched for alice")

			// A grant to a group, vouched for the group, reaches its members.
			saWrite(t, in.b, saAcme(t.Context()), saDelete(saUserset(doc, "viewer", saOuter, "member")))
			bobThroughEng := engine.CheckRequest{Resource: doc, Permission: "view", Subject: bob}
			saWrite(t, in.b, saAcme(t.Context()), touch(saEng, "member", bob))
			saWant(t, in.a, bobThroughEng, true, "bob has his own project role")
			saWrite(t, in.b, saAcme(t.Context()), saDelete(touch(saProject, "viewer", bob)))
			saWant(t, in.a, bobThroughEng, false, "bob lost his project role")
			g2 := object.Ref{Type: "grant", ID: "g2"}
			groupRole := saUserset(doc, "viewer", g2, "holder")
			groupRole.Relationship.OptionalExpiresAt = timestamppb.New(time.Now().Add(time.Hour))
			saWrite(t, in.b, engine.ForSubject(saAcme(t.Context()), saEng), groupRole, saUserset(g2, "holder", saEng, "member"))
			saWant(t, in.a, bobThroughEng, true, "after a grant to eng, of which bob is a member")
		})
	}
}

// TestAttackCheckEachMixedSubjects checks results of several principals in
// one CheckEach, as a service's check on another subject does, across
// writes that name one of them.
func TestAttackCheckEachMixedSubjects(t *testing.T) {
	for name, start := range bothDatastores() {
		t.Run(name, func(t *testing.T) {
			in := start(t)
			saSeed(t, in.a)
			saWrite(t, in.a, saAcme(t.Context()), touch(acme, "app", saBilling))
			reqs := []engine.CheckRequest{
				{Resource: acme, Permission: "inspect", Subject: saBilling},
				{Resource: doc, Permission: "view", Subject: bob},
				{Resource: doc, Permission: "view", Subject: carol},
				{Resource: doc, Permission: "view", Subject: saEng, SubjectRelation: "member"},
			}
			checkEach := func(when string, want ...bool) {
				t.Helper()
				ctx, err := in.a.WithResource(t.Context(), doc)
				if err != nil {
					t.Fatalf("pin: %v", err)
				}
				results, err := in.a.CheckEach(ctx, reqs)
				if err != nil {
					t.Fatalf("%s: check each: %v", when, err)
				}
				for i, r := range results {
					if r.Err != nil || r.Decision.Allowed != want[i] {
						t.Errorf("%s: item %d (%s) = %+v, want %v", when, i, reqs[i].Subject, r, want[i])
					}
				}
			}
			checkEach("first", true, false, false, true)
			checkEach("cached", true, false, false, true)
			for i := range 3 {
				saWrite(t, in.b, saAcme(t.Context()), touch(saProject, "viewer", bob))
				checkEach(fmt.Sprintf("round %d, bob given a role", i), true, true, false, true)
				saWrite(t, in.b, saAcme(t.Context()), touch(saLink, "holder", carol))
				checkEach(fmt.Sprintf("round %d, carol redeemed", i), true, true, true, true)
				saWrite(t, in.b, saAcme(t.Context()), saDelete(touch(acme, "app", saBilling)))
				checkEach(fmt.Sprintf("round %d, billing lost app", i), false, true, true, true)
				saWrite(t, in.b, saAcme(t.Context()), saDelete(touch(saProject, "viewer", bob)), saDelete(touch(saLink, "holder", carol)))
				checkEach(fmt.Sprintf("round %d, bob and carol removed", i), false, false, false, true)
				saWrite(t, in.b, saAcme(t.Context()), touch(acme, "app", saBilling))
				checkEach(fmt.Sprintf("round %d, billing has app again", i), true, false, false, true)
			}
		})
	}
}

// TestAttackPrincipalWriteUnderLoad toggles bob's membership on instance b
// while writes under carol move the org's state and checks keep bob's
// result warm. Right after each write returns, bob's check on instance a
// must reflect it.
func TestAttackPrincipalWriteUnderLoad(t *testing.T) {
	for name, start := range bothDatastores() {
		t.Run(name, func(t *testing.T) {
			in := start(t)
			saSeed(t, in.a)
			ctx := saAcme(t.Context())
			bobView := engine.CheckRequest{Resource: doc, Permission: "view", Subject: bob}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			// Carol's role toggles, and a second goroutine keeps bob's result warm.
			wg.Add(2)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					u := touch(saProject, "viewer", carol)
					if i%2 == 1 {
						u = saDelete(u)
					}
					if _, err := in.b.Write(ctx, []*v1.RelationshipUpdate{u}, nil); err != nil {
						t.Errorf("noise write: %v", err)
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := in.a.WithResource(t.Context(), doc)
					if err == nil {
						_, err = in.a.Check(c, bobView)
					}
					if err != nil {
						t.Errorf("warm check: %v", err)
						return
					}
				}
			}()
			for i := range 40 {
				u := touch(saEng, "member", bob)
				if i%2 == 1 {
					u = saDelete(u)
				}
				if _, err := in.b.Write(ctx, []*v1.RelationshipUpdate{u}, nil); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				if got := checkIn(t, in.a, bobView).Allowed; got != (i%2 == 0) {
					t.Errorf("round %d: bob's view right after the write = %v, want %v", i, got, i%2 == 0)
				}
			}
			close(stop)
			wg.Wait()
		})
	}
}
