package integration

// The tests in this file attack the check result cache keyed by each org's
// state: a write must be seen by every fully consistent check that starts
// after it returned, whichever org or instance it came through, and a
// resource that moves to another org must be gated by its new org at once.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/schema"
)

// ocTwoTenants creates org:acme (owner alice, app service billing, viewer
// bob on document:d1) with workspace:w1, project:p1 and document:d1, and
// org:globex (owner carol) with workspace:gw, project:gp and document:gd.
func ocTwoTenants(t *testing.T, alice, carol *caller, bob, billing string) {
	t.Helper()
	caTenant(t, alice, bob)
	alice.setRole(t, "document:d1", bob, "viewer")
	alice.setRole(t, "org:acme", billing, "app")
	carol.create(t, "org:globex", "")
	carol.create(t, "workspace:gw", "org:globex")
	carol.create(t, "project:gp", "workspace:gw")
	carol.create(t, "document:gd", "project:gp")
}

// ocProbe is one named check whose decision a write should change.
type ocProbe struct {
	name  string
	check func() bool
}

// ocCheckStatus sends one check by c about subject and returns the status
// and, for 200, the decision.
func ocCheckStatus(t *testing.T, c *caller, subject, permission, resource string) (int, bool) {
	t.Helper()
	r := c.do(t, http.MethodPost, "/v1/check", checkBody(subject, permission, resource))
	if r.status != http.StatusOK {
		return r.status, false
	}
	var out struct {
		Allowed          bool   `json:"allowed"`
		ConsistencyToken string `json:"consistency_token"`
	}
	decodeJSON(t, r, &out)
	return r.status, out.Allowed
}

// ocBulkItems sends one bulk check by c and returns, per item, the status
// of its error (0 for none) and its decision.
func ocBulkItems(t *testing.T, c *caller, checks []map[string]string) (statuses []int, allowed []bool) {
	t.Helper()
	r := c.do(t, http.MethodPost, "/v1/check/bulk", map[string]any{"checks": checks})
	wantStatus(t, r, http.StatusOK)
	var out struct {
		Results []struct {
			Allowed          bool   `json:"allowed"`
			ConsistencyToken string `json:"consistency_token"`
			Error            *struct {
				Status int    `json:"status"`
				Title  string `json:"title"`
				Detail string `json:"detail"`
				Type   string `json:"type"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("bulk check: decode %s: %v", r.body, err)
	}
	if len(out.Results) != len(checks) {
		t.Fatalf("bulk check: %d results for %d checks", len(out.Results), len(checks))
	}
	for _, res := range out.Results {
		status := 0
		if res.Error != nil {
			status = res.Error.Status
		}
		statuses = append(statuses, status)
		allowed = append(allowed, res.Allowed)
	}
	return statuses, allowed
}

// ocWantGated fails unless a check by acme's app service about carol on
// resource, now globex's, returns 404 Not Found, both alone and as an item
// of a bulk check.
func ocWantGated(t *testing.T, billing *caller, carol, resource, when string) {
	t.Helper()
	if status, allowed := ocCheckStatus(t, billing, carol, "view", resource); status != http.StatusNotFound {
		t.Errorf("%s: acme's app service checking carol's view of globex's %s got %d (allowed %v), want 404", when, resource, status, allowed)
	}
	statuses, allowed := ocBulkItems(t, billing, []map[string]string{checkBody(carol, "view", resource)})
	if statuses[0] != http.StatusNotFound {
		t.Errorf("%s: acme's app service bulk-checking carol's view of globex's %s got item status %d (allowed %v), want 404", when, resource, statuses[0], allowed[0])
	}
}

// TestOrgCacheServiceGateMovedResource moves a document from acme to
// globex between two checks by acme's app service. With warm caches, the
// second check must return 404, on the instance that moved it and on
// another one.
func TestOrgCacheServiceGateMovedResource(t *testing.T) {
	run := func(t *testing.T, reader, writer *gatehouse) {
		alice, carol := writer.user(t, "alice"), writer.user(t, "carol")
		billing := reader.service(t, "billing")
		bob := reader.user(t, "bob")
		ocTwoTenants(t, alice, carol, bob.ref, billing.ref)

		caWarm(t, reader, func() bool { return billing.allowed(t, bob.ref, "view", "document:d1") }, true)
		caWarm(t, reader, func() bool { return billing.allowed(t, carol.ref, "view", "document:d1") }, false)
		ocWantGated(t, billing, carol.ref, "document:gd", "before the move")

		wantStatus(t, alice.do(t, http.MethodDelete, resourcePath("document:d1"), nil), http.StatusNoContent)
		if status, allowed := ocCheckStatus(t, billing, bob.ref, "view", "document:d1"); status != http.StatusNotFound && allowed {
			t.Errorf("deleted document: got %d, allowed; want denied", status)
		}
		carol.create(t, "document:d1", "project:gp")
		ocWantGated(t, billing, carol.ref, "document:d1", "after the move")
		if bob.allowed(t, "", "view", "document:d1") {
			t.Error("bob views globex's new document:d1 through his role on acme's deleted one")
		}
	}
	t.Run("memory", func(t *testing.T) {
		g := grStart(t, "")
		run(t, g, g)
	})
	t.Run("postgres", func(t *testing.T) {
		g := grStart(t, pgtest.NewDatabase(t))
		run(t, g, g)
	})
	t.Run("postgres two instances", func(t *testing.T) {
		dbURL := pgtest.NewDatabase(t)
		run(t, grStart(t, dbURL), grStart(t, dbURL))
	})
}

// TestOrgCacheInspectBelowOrg gives pat inspect on one project only, and
// vic view without inspect. pat may check other subjects on that project's
// documents and nowhere else, and vic gets 403. Another org's document
// returns the same 404 as a missing one. Role changes made on the other
// instance apply at once.
func TestOrgCacheInspectBelowOrg(t *testing.T) {
	run := func(t *testing.T, reader, writer *gatehouse) {
		alice, carol := writer.user(t, "alice"), writer.user(t, "carol")
		pat, vic, bob := reader.user(t, "pat"), reader.user(t, "vic"), reader.user(t, "bob")
		ocTwoTenants(t, alice, carol, bob.ref, "service:dev|billing")
		alice.create(t, "project:p2", "workspace:w1")
		alice.create(t, "document:d3", "project:p2")
		alice.setRole(t, "document:d3", bob.ref, "viewer")
		alice.setRole(t, "project:p1", pat.ref, "admin")
		alice.setRole(t, "workspace:w1", vic.ref, "viewer")

		wantCheck := func(c *caller, resource string, wantStatus int, when string) {
			t.Helper()
			for range 3 { // the later ones come from the cache
				if status, _ := ocCheckStatus(t, c, bob.ref, "view", resource); status != wantStatus {
					t.Errorf("%s: %s checking bob's view of %s got %d, want %d", when, c.ref, resource, status, wantStatus)
					return
				}
			}
		}
		wantCheck(pat, "document:d1", http.StatusOK, "project admin")
		wantCheck(pat, "project:p1", http.StatusOK, "project admin")
		wantCheck(pat, "document:d3", http.StatusNotFound, "project admin")
		wantCheck(pat, "project:p2", http.StatusNotFound, "project admin")
		wantCheck(pat, "org:acme", http.StatusNotFound, "project admin")
		wantCheck(pat, "document:gd", http.StatusNotFound, "project admin")
		wantCheck(vic, "document:d1", http.StatusForbidden, "workspace viewer")
		wantCheck(vic, "org:acme", http.StatusNotFound, "workspace viewer")

		// Another org's document and a missing one look alike.
		other := pat.do(t, http.MethodPost, "/v1/check", checkBody(bob.ref, "view", "document:gd"))
		missing := pat.do(t, http.MethodPost, "/v1/check", checkBody(bob.ref, "view", "document:nowhere"))
		if a, b := normalizedProblem(t, other, "gd"), normalizedProblem(t, missing, "nowhere"); a != b {
			t.Errorf("another org's document and a missing one differ:\n%s\n%s", a, b)
		}

		// pat becomes an org admin, then loses every role.
		alice.setRole(t, "org:acme", pat.ref, "admin")
		wantCheck(pat, "document:d3", http.StatusOK, "after pat became org admin")
		wantCheck(pat, "document:gd", http.StatusNotFound, "after pat became org admin")
		alice.removeRole(t, "org:acme", pat.ref)
		wantCheck(pat, "document:d3", http.StatusNotFound, "after pat lost the org role")
		wantCheck(pat, "document:d1", http.StatusOK, "after pat lost the org role")
		alice.removeRole(t, "project:p1", pat.ref)
		wantCheck(pat, "document:d1", http.StatusNotFound, "after pat lost the project role")

		// vic's view through the workspace ends; bob's own view does not.
		alice.removeRole(t, "workspace:w1", vic.ref)
		wantCheck(vic, "document:d1", http.StatusNotFound, "after vic lost the workspace role")
	}
	t.Run("memory", func(t *testing.T) {
		g := grStart(t, "")
		run(t, g, g)
	})
	t.Run("postgres two instances", func(t *testing.T) {
		dbURL := pgtest.NewDatabase(t)
		run(t, grStart(t, dbURL), grStart(t, dbURL))
	})
}

// TestOrgCacheWritesOnOtherInstance warms instance A's cache of acme's and
// globex's checks before each write on instance B, and checks on A right
// after the write returned.
func TestOrgCacheWritesOnOtherInstance(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	a, b := grStart(t, dbURL), grStart(t, dbURL)
	aliceB, carolB := b.user(t, "alice"), b.user(t, "carol")
	bobA, daveA, zedA, zedB := a.user(t, "bob"), a.user(t, "dave"), a.user(t, "zed"), b.user(t, "zed")
	billingA := a.service(t, "billing")
	ocTwoTenants(t, aliceB, carolB, bobA.ref, billingA.ref)
	aliceB.create(t, "group:outer", "org:acme")
	aliceB.create(t, "group:inner", "org:acme")
	aliceB.setRole(t, "document:d2", "group:outer", "editor")
	aliceB.setRole(t, "group:inner", daveA.ref, "member")
	carolB.setRole(t, "document:gd", daveA.ref, "viewer")

	daveEditsD2 := ocProbe{"dave edits document:d2", func() bool { return daveA.allowed(t, "", "edit", "document:d2") }}
	daveViewsGD := ocProbe{"dave views document:gd", func() bool { return daveA.allowed(t, "", "view", "document:gd") }}
	bobEditsD1 := ocProbe{"bob edits document:d1", func() bool { return bobA.allowed(t, "", "edit", "document:d1") }}
	billingAsksBob := ocProbe{"billing: bob edits document:d1", func() bool { return billingA.allowed(t, bobA.ref, "edit", "document:d1") }}
	zedViewsD1 := ocProbe{"zed views document:d1", func() bool { return zedA.allowed(t, "", "view", "document:d1") }}

	var grantID string
	var link linkOut
	steps := []struct {
		name   string
		change func()
		probes []ocProbe
		want   bool
	}{
		{"inner nested in outer", func() { aliceB.setRole(t, "group:outer", "group:inner", "member") }, []ocProbe{daveEditsD2}, true},
		{"globex's role removed", func() { carolB.removeRole(t, "document:gd", daveA.ref) }, []ocProbe{daveViewsGD}, false},
		{"inner taken out of outer", func() { aliceB.removeRole(t, "group:outer", "group:inner") }, []ocProbe{daveEditsD2}, false},
		{"globex's role back", func() { carolB.setRole(t, "document:gd", daveA.ref, "viewer") }, []ocProbe{daveViewsGD}, true},
		{"grant to bob", func() {
			grantID = aliceB.grant(t, map[string]any{"resource": "document:d1", "subject": bobA.ref, "role": "editor", "duration": "1h"}).ID
		}, []ocProbe{bobEditsD1, billingAsksBob}, true},
		{"grant revoked", func() { aliceB.revokeGrant(t, grantID) }, []ocProbe{bobEditsD1, billingAsksBob}, false},
		{"grant to inner", func() {
			aliceB.setRole(t, "group:outer", "group:inner", "member")
			aliceB.removeRole(t, "document:d2", "group:outer")
			grantID = aliceB.grant(t, map[string]any{"resource": "document:d2", "subject": "group:inner", "role": "editor", "duration": "1h"}).ID
		}, []ocProbe{daveEditsD2}, true},
		{"dave leaves inner", func() { aliceB.removeRole(t, "group:inner", daveA.ref) }, []ocProbe{daveEditsD2}, false},
		{"dave back in inner", func() { aliceB.setRole(t, "group:inner", daveA.ref, "member") }, []ocProbe{daveEditsD2}, true},
		{"group grant revoked", func() { aliceB.revokeGrant(t, grantID) }, []ocProbe{daveEditsD2}, false},
		{"link redeemed", func() {
			link = aliceB.createLink(t, map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone"})
			wantStatus(t, zedB.redeem(t, link.Token), http.StatusOK)
		}, []ocProbe{zedViewsD1}, true},
		{"link revoked", func() {
			wantStatus(t, aliceB.do(t, http.MethodDelete, "/v1/links/"+link.ID, nil), http.StatusNoContent)
		}, []ocProbe{zedViewsD1}, false},
	}
	for _, step := range steps {
		for _, p := range append(slices.Clone(step.probes), daveViewsGD) {
			p.check() // warm whatever A caches in this state
		}
		step.change()
		for _, p := range step.probes {
			if got := p.check(); got != step.want {
				t.Errorf("%s on B: %s on A = %v right after, want %v", step.name, p.name, got, step.want)
			}
		}
	}
}

// ocDirectEngine returns an engine of its own on g's datastore, whose
// writes carry no org, as any SpiceDB client's do.
func ocDirectEngine(t *testing.T, g *gatehouse, dbURL string) *engine.Engine {
	t.Helper()
	cfg := engine.Config{Schema: schema.Text, ResultCacheBytes: -1}
	if dbURL == "" {
		cfg.Datastore = g.srv.Engine().Datastore()
	} else {
		ds, err := engine.NewPostgresDatastore(t.Context(), engine.PostgresConfig{URL: dbURL})
		if err != nil {
			t.Fatalf("open datastore: %v", err)
		}
		t.Cleanup(func() { ds.Close() })
		cfg.Datastore = ds
	}
	e, err := engine.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start direct engine: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// ocRel returns the relationship resource#relation@subject, with subject
// relation subjectRelation; types and ids are split at the first colon.
func ocRel(op v1.RelationshipUpdate_Operation, resource, relation, subject, subjectRelation string) *v1.RelationshipUpdate {
	ref := func(s string) *v1.ObjectReference {
		for i := range len(s) {
			if s[i] == ':' {
				return &v1.ObjectReference{ObjectType: s[:i], ObjectId: s[i+1:]}
			}
		}
		return nil
	}
	return &v1.RelationshipUpdate{Operation: op, Relationship: &v1.Relationship{
		Resource: ref(resource), Relation: relation,
		Subject: &v1.SubjectReference{Object: ref(subject), OptionalRelation: subjectRelation},
	}}
}

// TestOrgCacheDirectSpiceDBWrites writes through a SpiceDB client of its
// own on Gatehouse's datastore, without org metadata, and checks through
// Gatehouse right after each write, with warm caches, in both orgs.
func TestOrgCacheDirectSpiceDBWrites(t *testing.T) {
	run := func(t *testing.T, dbURL string) {
		g := grStart(t, dbURL)
		alice, carol, bob, dave := g.user(t, "alice"), g.user(t, "carol"), g.user(t, "bob"), g.user(t, "dave")
		billing := g.service(t, "billing")
		ocTwoTenants(t, alice, carol, bob.ref, billing.ref)
		alice.create(t, "group:team", "org:acme")
		alice.setRole(t, "document:d2", "group:team", "viewer")
		direct := ocDirectEngine(t, g, dbURL)

		write := func(updates ...*v1.RelationshipUpdate) {
			t.Helper()
			if _, err := direct.Permissions.WriteRelationships(t.Context(), &v1.WriteRelationshipsRequest{Updates: updates}); err != nil {
				t.Fatalf("direct write: %v", err)
			}
		}
		const (
			touchOp  = v1.RelationshipUpdate_OPERATION_TOUCH
			deleteOp = v1.RelationshipUpdate_OPERATION_DELETE
			createOp = v1.RelationshipUpdate_OPERATION_CREATE
		)
		daveViewsGD := ocProbe{"dave views document:gd", func() bool { return dave.allowed(t, "", "view", "document:gd") }}
		daveViewsD1 := ocProbe{"dave views document:d1", func() bool { return dave.allowed(t, "", "view", "document:d1") }}
		daveViewsD2 := ocProbe{"dave views document:d2", func() bool { return dave.allowed(t, "", "view", "document:d2") }}
		billingDave := ocProbe{"billing: dave views document:d1", func() bool {
			// Once document:d1 lies in globex, billing gets 404, a deny.
			_, allowed := ocCheckStatus(t, billing, dave.ref, "view", "document:d1")
			return allowed
		}}
		steps := []struct {
			name    string
			updates []*v1.RelationshipUpdate
			probes  []ocProbe
			want    bool
		}{
			{"dave views gd", []*v1.RelationshipUpdate{ocRel(touchOp, "document:gd", "viewer", dave.ref, "")}, []ocProbe{daveViewsGD}, true},
			{"dave views d1", []*v1.RelationshipUpdate{ocRel(touchOp, "document:d1", "viewer", dave.ref, "")}, []ocProbe{daveViewsD1, billingDave}, true},
			{"dave's view of gd removed", []*v1.RelationshipUpdate{ocRel(deleteOp, "document:gd", "viewer", dave.ref, "")}, []ocProbe{daveViewsGD}, false},
			{"dave joins team", []*v1.RelationshipUpdate{ocRel(touchOp, "group:team", "member", dave.ref, "")}, []ocProbe{daveViewsD2}, true},
			{"dave leaves team", []*v1.RelationshipUpdate{ocRel(deleteOp, "group:team", "member", dave.ref, "")}, []ocProbe{daveViewsD2}, false},
			{"d1 moved to globex's project", []*v1.RelationshipUpdate{
				ocRel(deleteOp, "document:d1", "project", "project:p1", ""),
				ocRel(createOp, "document:d1", "project", "project:gp", ""),
			}, []ocProbe{billingDave}, false},
		}
		for _, step := range steps {
			for _, p := range append(slices.Clone(step.probes), daveViewsGD, daveViewsD1) {
				p.check()
			}
			write(step.updates...)
			for _, p := range step.probes {
				if got := p.check(); got != step.want {
					t.Errorf("direct write %q: %s = %v right after, want %v", step.name, p.name, got, step.want)
				}
			}
		}
		ocWantGated(t, billing, carol.ref, "document:d1", "after a direct move to globex")
	}
	t.Run("memory", func(t *testing.T) { run(t, "") })
	t.Run("postgres", func(t *testing.T) { run(t, pgtest.NewDatabase(t)) })
}

// ocFillerDocs is how many documents of acme each bulk check of
// TestOrgCacheBulkGateWhileMoving resolves before the one that moves, so
// that the bulk check is still resolving orgs when the move commits.
const ocFillerDocs = 99

// TestOrgCacheBulkGateWhileMoving has acme's app service send bulk checks
// about bob without pause while documents of acme are deleted and created
// again in globex, one per round. Once a round's move has returned and the
// bulk checks have stopped, a check by the service on the moved document
// must return 404, because the document lies in globex now.
//
// NOTE: the race between a bulk check's snapshot and a move is narrow, so
// this test may pass while a bug in it exists. TestOrgOfOlderSnapshotAfterMove
// in internal/engine reproduces that race deterministically.
func TestOrgCacheBulkGateWhileMoving(t *testing.T) {
	caForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, carol, bob := g.user(t, "alice"), g.user(t, "carol"), g.user(t, "bob")
		billing := g.service(t, "billing")
		ocTwoTenants(t, alice, carol, bob.ref, billing.ref)
		var filler []map[string]string
		for i := range ocFillerDocs {
			doc := fmt.Sprintf("document:f%d", i)
			alice.create(t, doc, "project:p1")
			filler = append(filler, checkBody(bob.ref, "view", doc))
		}
		const rounds = 12
		for round := range rounds {
			alice.create(t, fmt.Sprintf("document:m%d", round), "project:p1")
		}

		sender := caSender(billing)
		var leaks []string
		for round := range rounds {
			moved := fmt.Sprintf("document:m%d", round)
			checks := append(slices.Clone(filler), checkBody(bob.ref, "view", moved))
			bulk := func(ctx context.Context) error {
				r, err := sender.send(ctx, http.MethodPost, "/v1/check/bulk", map[string]any{"checks": checks})
				if err == nil && r.status != http.StatusOK {
					err = fmt.Errorf("%v", r)
				}
				return err
			}
			errs := caRepeat(func() {
				time.Sleep(30 * time.Millisecond)
				wantStatus(t, alice.do(t, http.MethodDelete, resourcePath(moved), nil), http.StatusNoContent)
				carol.create(t, moved, "project:gp")
			}, bulk, bulk, bulk, bulk)
			for _, err := range errs {
				t.Errorf("round %d: %v", round, err)
			}
			if status, allowed := ocCheckStatus(t, billing, carol.ref, "view", moved); status != http.StatusNotFound {
				leaks = append(leaks, fmt.Sprintf("%s: %d (allowed %v)", moved, status, allowed))
			}
		}
		if len(leaks) > 0 {
			t.Errorf("after moving documents to globex, acme's app service may still ask about them, want 404: %v", leaks)
		}
	})
}

// TestOrgCacheMoveUnderLoad has probes on instance A ask about bob's view
// of document:d1 while instance B deletes it and carol creates it again in
// globex. No probe sent after the delete returned may allow, and acme's
// app service must be refused once the new document exists.
func TestOrgCacheMoveUnderLoad(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	a, b := grStart(t, dbURL), grStart(t, dbURL)
	aliceB, carolB := b.user(t, "alice"), b.user(t, "carol")
	bobA, billingA := a.user(t, "bob"), a.service(t, "billing")
	ocTwoTenants(t, aliceB, carolB, bobA.ref, billingA.ref)

	own, asker := caSender(bobA), caSender(billingA)
	probe := func(c *pgClient, subject string) caProbe {
		return caProbe{name: "check by " + c.subject, ask: func(ctx context.Context) (bool, error) {
			r, err := c.send(ctx, http.MethodPost, "/v1/check", checkBody(subject, "view", "document:d1"))
			if err != nil {
				return false, err
			}
			if r.status == http.StatusNotFound {
				return false, nil
			}
			var out struct {
				Allowed bool `json:"allowed"`
			}
			if err := caDecode(r, nil, &out); err != nil {
				return false, err
			}
			return out.Allowed, nil
		}}
	}
	probes := []caProbe{probe(own, ""), probe(asker, bobA.ref), probe(own, ""), probe(asker, bobA.ref)}

	for round := range 5 {
		var deleted time.Time
		var mu sync.Mutex
		seen := caObserve(probes, func() {
			time.Sleep(20 * time.Millisecond)
			wantStatus(t, aliceB.do(t, http.MethodDelete, resourcePath("document:d1"), nil), http.StatusNoContent)
			mu.Lock()
			deleted = time.Now()
			mu.Unlock()
			carolB.create(t, "document:d1", "project:gp")
			time.Sleep(20 * time.Millisecond)
		})
		var after int
		for _, o := range seen {
			switch {
			case o.err != nil:
				t.Errorf("round %d, %s: %v", round, o.probe, o.err)
			case o.sent.After(deleted):
				after++
				if o.allowed {
					t.Errorf("round %d, %s: sent %v after the delete returned, allowed; want denied", round, o.probe, o.sent.Sub(deleted))
				}
			}
		}
		if after == 0 {
			t.Errorf("round %d: no probe was sent after the delete", round)
		}
		ocWantGated(t, billingA, carolB.ref, "document:d1", fmt.Sprintf("round %d", round))

		// Move it back for the next round, with bob's role again.
		wantStatus(t, carolB.do(t, http.MethodDelete, resourcePath("document:d1"), nil), http.StatusNoContent)
		aliceB.create(t, "document:d1", "project:p1")
		aliceB.setRole(t, "document:d1", bobA.ref, "viewer")
		if !bobA.allowed(t, "", "view", "document:d1") {
			t.Fatalf("round %d: bob cannot view document:d1 after it came back to acme", round)
		}
	}
}
