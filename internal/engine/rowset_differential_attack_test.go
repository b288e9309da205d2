package engine_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// These tests compare an engine with every cache on against one with them
// off, on one datastore, after writes that the read cache must represent
// exactly: expirations in the past and the near future, group#member
// subjects, nested groups, and objects and relations with more than 128
// relationships. Only the cached engine writes, so that its write counts include every write.

// world is the data that a differential round checks.
type world struct {
	users     []object.Ref
	groups    []object.Ref
	resources []object.Ref // workspaces, projects and documents
}

func rel(resource object.Ref, relation string, subject object.Ref, subjectRelation string, expires time.Time) *v1.RelationshipUpdate {
	r := &v1.Relationship{
		Resource: &v1.ObjectReference{ObjectType: resource.Type, ObjectId: resource.ID},
		Relation: relation,
		Subject: &v1.SubjectReference{
			Object:           &v1.ObjectReference{ObjectType: subject.Type, ObjectId: subject.ID},
			OptionalRelation: subjectRelation,
		},
	}
	if !expires.IsZero() {
		r.OptionalExpiresAt = timestamppb.New(expires)
	}
	return &v1.RelationshipUpdate{Operation: v1.RelationshipUpdate_OPERATION_TOUCH, Relationship: r}
}

// buildWorld writes a tree of one org with groups and many roles, and
// returns what to check. soon is when the short expirations end.
func buildWorld(t *testing.T, e *engine.Engine, r *rand.Rand, soon time.Time) world {
	t.Helper()
	var w world
	org := object.Ref{Type: "org", ID: "diff"}
	var ups []*v1.RelationshipUpdate
	ups = append(ups, rel(org, "platform", object.Ref{Type: "platform", ID: "gatehouse"}, "", time.Time{}))
	for i := range 40 {
		w.users = append(w.users, object.Ref{Type: "user", ID: fmt.Sprintf("dev|u%03d", i)})
	}
	for i := range 4 {
		g := object.Ref{Type: "group", ID: fmt.Sprintf("g%d", i)}
		w.groups = append(w.groups, g)
		ups = append(ups, rel(g, "org", org, "", time.Time{}))
	}
	// g1 and g2 are members of g0. g3 is a member of g1 until soon.
	ups = append(ups,
		rel(w.groups[0], "member", w.groups[1], "member", time.Time{}),
		rel(w.groups[0], "member", w.groups[2], "member", time.Time{}),
		rel(w.groups[1], "member", w.groups[3], "member", soon),
	)
	var projects []object.Ref
	for i := range 2 {
		ws := object.Ref{Type: "workspace", ID: fmt.Sprintf("w%d", i)}
		w.resources = append(w.resources, ws)
		ups = append(ups, rel(ws, "org", org, "", time.Time{}))
		for j := range 2 {
			p := object.Ref{Type: "project", ID: fmt.Sprintf("w%dp%d", i, j)}
			projects = append(projects, p)
			w.resources = append(w.resources, p)
			ups = append(ups, rel(p, "workspace", ws, "", time.Time{}))
			for k := range 2 {
				d := object.Ref{Type: "document", ID: fmt.Sprintf("w%dp%dd%d", i, j, k)}
				w.resources = append(w.resources, d)
				ups = append(ups, rel(d, "project", p, "", time.Time{}))
			}
		}
	}
	write(t, e, ups)

	// Group memberships: g0 has more than 128 members (the large path),
	// some of them until soon. The other groups have a few each.
	ups = nil
	for i, u := range w.users {
		exp := time.Time{}
		if i%5 == 0 {
			exp = soon
		}
		ups = append(ups, rel(w.groups[i%4], "member", u, "", exp))
	}
	for i := range 140 {
		ups = append(ups, rel(w.groups[0], "member", object.Ref{Type: "user", ID: fmt.Sprintf("dev|filler%03d", i)}, "", time.Time{}))
	}
	write(t, e, ups)

	// Roles: a random role for each user on a few resources, some until
	// soon. w0 gets more than 128 viewers, and groups get roles too.
	ups = nil
	roles := []string{"viewer", "editor", "admin"}
	for _, u := range w.users {
		for range 3 {
			res := w.resources[r.IntN(len(w.resources))]
			role := roles[r.IntN(3)]
			if res.Type == "document" && role == "admin" {
				role = "owner"
			}
			exp := time.Time{}
			if r.IntN(4) == 0 {
				exp = soon
			}
			ups = append(ups, rel(res, role, u, "", exp))
		}
	}
	for i := range 150 {
		ups = append(ups, rel(w.resources[0], "viewer", object.Ref{Type: "user", ID: fmt.Sprintf("dev|filler%03d", i)}, "", time.Time{}))
	}
	ups = append(ups,
		rel(projects[1], "editor", w.groups[0], "member", time.Time{}),
		rel(projects[2], "viewer", w.groups[3], "member", time.Time{}),
		rel(w.resources[0], "admin", w.groups[2], "member", soon),
	)
	for i := 0; i < len(ups); i += 200 {
		write(t, e, ups[i:min(i+200, len(ups))])
	}
	return w
}

func write(t *testing.T, e *engine.Engine, ups []*v1.RelationshipUpdate) {
	t.Helper()
	// A batch may name one relationship twice, so only the last update of each is kept.
	seen := map[string]int{}
	var out []*v1.RelationshipUpdate
	for _, u := range ups {
		r := u.GetRelationship()
		k := fmt.Sprintf("%s:%s#%s@%s:%s#%s", r.GetResource().GetObjectType(), r.GetResource().GetObjectId(), r.GetRelation(),
			r.GetSubject().GetObject().GetObjectType(), r.GetSubject().GetObject().GetObjectId(), r.GetSubject().GetOptionalRelation())
		if i, ok := seen[k]; ok {
			out[i] = u
			continue
		}
		seen[k] = len(out)
		out = append(out, u)
	}
	if _, err := e.Write(t.Context(), out, nil); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// compare checks each user's perms on every resource, and view lookups, on both engines, from several goroutines at once.
//
// The oracle is the uncached engine's in-process checker. Its v1 API is
// not: SpiceDB's dispatch cache keeps serving a result computed before an
// expiration while no write makes a new revision, and so does the result
// cache (see resultCache). The round after the expirations therefore
// checks permissions that no earlier round checked.
// A difference found near or past the boundary, when the short
// expirations end, is only logged (see nearOrPast).
func compare(t *testing.T, round string, cached, uncached *engine.Engine, w world, boundary time.Time, perms ...string) {
	t.Helper()
	type q struct {
		user object.Ref
		perm string
		res  object.Ref
	}
	var qs []q
	for _, u := range w.users {
		for _, p := range perms {
			for _, res := range w.resources {
				qs = append(qs, q{u, p, res})
			}
			qs = append(qs, q{u, p, w.groups[0]})
		}
	}

	var mu sync.Mutex
	var diffs []string
	var wg sync.WaitGroup
	const workers = 6
	for wk := range workers {
		wg.Go(func() {
			for i := wk; i < len(qs); i += workers {
				c := qs[i]
				req := engine.CheckRequest{Resource: c.res, Permission: c.perm, Subject: c.user}
				started := time.Now()
				a, errA := cached.Check(t.Context(), req)
				b, errB := uncached.CheckInProcess(t.Context(), req)
				if errA != nil || errB != nil {
					mu.Lock()
					diffs = append(diffs, fmt.Sprintf("check %v: errors %v / %v", c, errA, errB))
					mu.Unlock()
					continue
				}
				if a.Allowed != b.Allowed || a.Conditional != b.Conditional {
					if d := started.Sub(boundary); nearOrPast(round, d) {
						t.Logf("%s: %s %s %s at the expiration boundary (%s): cached %v, uncached %v", round, c.user, c.perm, c.res, d, a.Allowed, b.Allowed)
						continue
					}
					mu.Lock()
					diffs = append(diffs, fmt.Sprintf("%s %s %s: cached %v, uncached %v", c.user, c.perm, c.res, a.Allowed, b.Allowed))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()

	for _, u := range w.users[:12] {
		if round == "after the expirations" {
			break // the earlier rounds made the same lookups
		}
		for _, typ := range []string{"document", "project", "workspace"} {
			// The same holds for lookups as for checks.
			d := time.Since(boundary)
			if nearOrPast(round, d) {
				t.Logf("%s: lookups of %s not compared at the expiration boundary (%s)", round, u, d)
				break
			}
			req := engine.LookupResourcesRequest{ResourceType: typ, Permission: "view", Subject: u}
			a, _, errA := cached.LookupResources(t.Context(), req, 1000)
			b, _, errB := uncached.LookupResources(t.Context(), req, 1000)
			if errA != nil || errB != nil {
				diffs = append(diffs, fmt.Sprintf("lookup %s %s: %v / %v", u, typ, errA, errB))
				continue
			}
			if !slices.Equal(a, b) {
				diffs = append(diffs, fmt.Sprintf("lookup %s %s: cached %v, uncached %v", u, typ, a, b))
			}
		}
	}

	slices.Sort(diffs)
	for i, d := range diffs {
		if i == 20 {
			t.Errorf("%s: %d differences in all", round, len(diffs))
			break
		}
		t.Errorf("%s: %s", round, d)
	}
}

// nearOrPast reports whether a difference found d after the boundary (d
// is negative before it) proves nothing. Within a second of it, the two
// engines may read on either side. Past it, only the round after the
// expirations checks permissions that no earlier round cached. In the
// others, the caches may still contain a result read before the
// boundary, and a loaded machine can stretch those rounds that far.
func nearOrPast(round string, d time.Duration) bool {
	return d > -time.Second && (d < time.Second || round != "after the expirations")
}

func runDifferential(t *testing.T, cached, uncached *engine.Engine) {
	r := rand.New(rand.NewPCG(7, 11))
	soon := time.Now().Add(6 * time.Second)
	w := buildWorld(t, cached, r, soon)

	// A relationship that expired before it was written, if SpiceDB accepts
	// it, must not count.
	past := time.Now().Add(-time.Hour)
	if _, err := cached.Write(t.Context(), []*v1.RelationshipUpdate{rel(w.resources[1], "admin", w.users[39], "", past)}, nil); err != nil {
		t.Logf("SpiceDB refuses an expiration in the past: %v", err)
	}
	compare(t, "before the expirations", cached, uncached, w, soon, "view", "edit")

	// Writes that change entries the read cache contains.
	var ups []*v1.RelationshipUpdate
	for _, u := range w.users[:20] {
		ups = append(ups, rel(w.resources[r.IntN(len(w.resources))], "editor", u, "", time.Time{}))
	}
	ups = append(ups, rel(w.groups[2], "member", w.groups[3], "member", time.Time{}))
	write(t, cached, ups)
	del := []*v1.RelationshipUpdate{rel(w.groups[0], "member", w.groups[1], "member", time.Time{})}
	del[0].Operation = v1.RelationshipUpdate_OPERATION_DELETE
	write(t, cached, del)
	compare(t, "after writes", cached, uncached, w, soon, "view", "manage")

	time.Sleep(time.Until(soon) + 1200*time.Millisecond)
	compare(t, "after the expirations", cached, uncached, w, soon, "inspect", "share", "delete")
}

func TestReadCacheMatchesUncachedEngine(t *testing.T) {
	reg := prometheus.NewRegistry()
	cached := startEngine(t, engine.Config{Registry: reg})
	uncached := startEngine(t, engine.Config{Datastore: cached.Datastore(), ResultCacheBytes: -1})
	runDifferential(t, cached, uncached)
	requireReadCacheHits(t, reg)
}

// requireReadCacheHits fails unless the read cache served queries, so that
// a comparison that passes did compare the cache.
func requireReadCacheHits(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "gatehouse_relationship_reads_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == "hit" && m.GetCounter().GetValue() > 0 {
					t.Logf("read cache hits: %v", m.GetCounter().GetValue())
					return
				}
			}
		}
	}
	t.Fatal("the read cache served no query, so the comparison did not test it")
}
