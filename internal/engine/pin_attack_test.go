package engine

// The tests in this file attack the revisions that uncached checks run at
// (see pinForCheck). On PostgreSQL these are the shared pin of a global
// state and the base pin of an org. On both datastores, verifiedOrg reads
// parent links at the shared pin. Two engines with result caches share a
// datastore with a third engine that has none, whose fully consistent
// results are the truth. After every write that has returned, each cached
// engine's result must equal the truth.

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/store"
	"github.com/gatehouse-authz/gatehouse/schema"
)

// paEngines are two engines with result caches on one datastore, as two
// Gatehouse instances run, and one engine without a result cache, whose
// checks are fully consistent.
type paEngines struct {
	a, b, plain *Engine
	url         string         // the PostgreSQL database, if any
	hook        *paHookedStore // a's datastore on PostgreSQL
}

// paHookedStore is a datastore that runs a function once, when armed,
// right after it reads the head revision. The function runs before the
// caller gets the revision, so whatever it writes is not in it.
type paHookedStore struct {
	datastore.Datastore
	armed atomic.Pointer[func()]
}

func (d *paHookedStore) HeadRevision(ctx context.Context) (datastore.RevisionWithSchemaHash, error) {
	head, err := d.Datastore.HeadRevision(ctx)
	if f := d.armed.Swap(nil); f != nil {
		(*f)()
	}
	return head, err
}

func (d *paHookedStore) Unwrap() datastore.Datastore { return d.Datastore }

// arm makes the next head revision read run f. fired reports whether f
// has started since.
func (d *paHookedStore) arm(f func()) (fired func() bool) {
	d.armed.Store(&f)
	return func() bool { return d.armed.Load() == nil }
}

func paEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	cfg.Schema = schema.Text
	cfg.Logger = slog.New(slog.DiscardHandler)
	e, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start engine: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	return e
}

func paStart(t *testing.T, kind string) paEngines {
	t.Helper()
	if kind == "memory" {
		a := paEngine(t, Config{})
		return paEngines{
			a:     a,
			b:     paEngine(t, Config{Datastore: a.Datastore()}),
			plain: paEngine(t, Config{Datastore: a.Datastore(), ResultCacheBytes: -1}),
		}
	}
	url := pgtest.NewDatabase(t)
	if err := store.Migrate(t.Context(), store.Config{URL: url}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	open := func() datastore.Datastore {
		ds, err := NewPostgresDatastore(t.Context(), PostgresConfig{URL: url})
		if err != nil {
			t.Fatalf("open datastore: %v", err)
		}
		t.Cleanup(func() { ds.Close() }) // runs after the engine's Close
		return ds
	}
	hook := &paHookedStore{Datastore: open()}
	return paEngines{
		a:     paEngine(t, Config{Datastore: hook, PostgresURL: url}),
		b:     paEngine(t, Config{Datastore: open(), PostgresURL: url}),
		plain: paEngine(t, Config{Datastore: open(), ResultCacheBytes: -1}),
		url:   url,
		hook:  hook,
	}
}

func paRef(typ, id string) object.Ref { return object.Ref{Type: typ, ID: id} }

var (
	paPlatform = paRef("platform", "gatehouse")
	paAcme     = paRef("org", "acme")
	paGlobex   = paRef("org", "globex")
	paW1       = paRef("workspace", "w1") // in acme
	paP1       = paRef("project", "p1")   // in w1
	paD1       = paRef("document", "d1")  // in p1
	paW2       = paRef("workspace", "w2") // in globex
	paP2       = paRef("project", "p2")   // in w2
	paD2       = paRef("document", "d2")  // in p2
	paD3       = paRef("document", "d3")  // created and deleted by the tests
	paD4       = paRef("document", "d4")  // in p1, moved to p2 and back by the tests
	paEng      = paRef("group", "eng")    // in acme, a viewer of p1
	paOps      = paRef("group", "ops")    // in acme, with frank as a member
	paGrant    = paRef("grant", "g1")
	paLink     = paRef("link", "l1") // its holders are editors of d1

	paAlice   = paRef("user", "dev|alice") // owner of acme
	paBob     = paRef("user", "dev|bob")
	paCarol   = paRef("user", "dev|carol") // owner of globex
	paDave    = paRef("user", "dev|dave")
	paErin    = paRef("user", "dev|erin")
	paFrank   = paRef("user", "dev|frank")
	paGina    = paRef("user", "dev|gina")
	paHank    = paRef("user", "dev|hank")
	paIvan    = paRef("user", "dev|ivan")
	paBilling = paRef("service", "corp|billing")
)

// paRel returns a touch of resource#relation@subject, or of
// subject#subjectRel when subjectRel is not empty.
func paRel(resource object.Ref, relation string, subject object.Ref, subjectRel string) *v1.RelationshipUpdate {
	return &v1.RelationshipUpdate{
		Operation: v1.RelationshipUpdate_OPERATION_TOUCH,
		Relationship: &v1.Relationship{
			Resource: &v1.ObjectReference{ObjectType: resource.Type, ObjectId: resource.ID},
			Relation: relation,
			Subject: &v1.SubjectReference{
				Object:           &v1.ObjectReference{ObjectType: subject.Type, ObjectId: subject.ID},
				OptionalRelation: subjectRel,
			},
		},
	}
}

func paDelete(u *v1.RelationshipUpdate) *v1.RelationshipUpdate {
	u.Operation = v1.RelationshipUpdate_OPERATION_DELETE
	u.Relationship.OptionalExpiresAt = nil
	return u
}

func paCreate(u *v1.RelationshipUpdate) *v1.RelationshipUpdate {
	u.Operation = v1.RelationshipUpdate_OPERATION_CREATE
	return u
}

// paExpiring sets an expiration an hour away, past the end of the test.
func paExpiring(u *v1.RelationshipUpdate) *v1.RelationshipUpdate {
	u.Relationship.OptionalExpiresAt = timestamppb.New(time.Now().Add(time.Hour))
	return u
}

func paWrite(t *testing.T, ctx context.Context, e *Engine, updates ...*v1.RelationshipUpdate) {
	t.Helper()
	if _, err := e.Write(ctx, updates, nil); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// paRemove deletes every relationship of resource, with a write of no
// org, as Gatehouse deletes a resource.
func paRemove(ctx context.Context, e *Engine, resource object.Ref) error {
	_, err := e.DeleteMatching(ctx, &v1.RelationshipFilter{ResourceType: resource.Type, OptionalResourceId: resource.ID}, nil)
	return err
}

// paMove deletes resource and creates it again under parent, recorded
// under org, as a move through Gatehouse's API does.
func paMove(ctx context.Context, e *Engine, resource, parent object.Ref, org string) error {
	if err := paRemove(ctx, e, resource); err != nil {
		return fmt.Errorf("delete %s: %w", resource, err)
	}
	create := paCreate(paRel(resource, object.ParentRelation(resource.Type), parent, ""))
	if _, err := e.Write(ForOrg(ctx, org), []*v1.RelationshipUpdate{create}, nil); err != nil {
		return fmt.Errorf("create %s under %s: %w", resource, parent, err)
	}
	return nil
}

// paSeed writes two orgs, each recorded under its org as Gatehouse
// records them. No toggle of TestAttackPinConcurrentToggles is on, but d4
// is in acme.
func paSeed(t *testing.T, e *Engine) {
	t.Helper()
	ctx := t.Context()
	paWrite(t, ctx, e, paRel(paAcme, "platform", paPlatform, ""), paRel(paGlobex, "platform", paPlatform, ""))
	paWrite(t, ForOrg(ctx, paAcme.ID), e,
		paCreate(paRel(paW1, "org", paAcme, "")),
		paCreate(paRel(paP1, "workspace", paW1, "")),
		paCreate(paRel(paD1, "project", paP1, "")),
		paCreate(paRel(paD4, "project", paP1, "")),
		paCreate(paRel(paEng, "org", paAcme, "")),
		paCreate(paRel(paOps, "org", paAcme, "")),
		paRel(paAcme, "owner", paAlice, ""),
		paRel(paP1, "viewer", paEng, "member"),
		paRel(paOps, "member", paFrank, ""),
		paRel(paD1, "editor", paLink, "holder"),
	)
	paWrite(t, ForOrg(ctx, paGlobex.ID), e,
		paCreate(paRel(paW2, "org", paGlobex, "")),
		paCreate(paRel(paP2, "workspace", paW2, "")),
		paCreate(paRel(paD2, "project", paP2, "")),
		paRel(paGlobex, "owner", paCarol, ""),
	)
}

// paRequests returns the checks that the sweeps compare: every subject,
// principals and usersets, on the resources that the tests change.
func paRequests() []CheckRequest {
	subjects := []struct {
		ref object.Ref
		rel string
	}{
		{paAlice, ""}, {paBob, ""}, {paCarol, ""}, {paDave, ""}, {paErin, ""}, {paFrank, ""},
		{paGina, ""}, {paHank, ""}, {paIvan, ""}, {paBilling, ""},
		{paEng, "member"}, {paOps, "member"}, {paGrant, "holder"},
	}
	var reqs []CheckRequest
	for _, s := range subjects {
		for _, res := range []object.Ref{paAcme, paP1, paD1, paEng, paD2, paD3, paD4} {
			reqs = append(reqs, CheckRequest{Resource: res, Permission: "view", Subject: s.ref, SubjectRelation: s.rel})
		}
		for _, res := range []object.Ref{paD1, paD3} {
			reqs = append(reqs, CheckRequest{Resource: res, Permission: "edit", Subject: s.ref, SubjectRelation: s.rel})
		}
	}
	return reqs
}

func paOutcome(d Decision, err error) string {
	switch {
	case err != nil:
		return "error"
	case d.Allowed:
		return "allowed"
	case d.Conditional:
		return "conditional"
	}
	return "denied"
}

func paName(req CheckRequest) string {
	subject := req.Subject.String()
	if req.SubjectRelation != "" {
		subject += "#" + req.SubjectRelation
	}
	return fmt.Sprintf("%s %s %s", subject, req.Permission, req.Resource)
}

// paTruth returns the outcome of each request on the engine without a
// result cache, all at the head revision.
func paTruth(t *testing.T, e *Engine, reqs []CheckRequest) []string {
	t.Helper()
	results, err := e.CheckBulk(t.Context(), reqs, Consistency{})
	if err != nil {
		t.Fatalf("fully consistent bulk check: %v", err)
	}
	out := make([]string, len(results))
	for i, r := range results {
		out[i] = paOutcome(r.Decision, r.Err)
	}
	return out
}

// paCheck runs one check in a request of its own, as the check API does.
func paCheck(ctx context.Context, e *Engine, req CheckRequest) (Decision, error) {
	ctx, err := e.WithResource(ctx, req.Resource)
	if err != nil {
		return Decision{}, err
	}
	return e.Check(ctx, req)
}

// paSweep compares every request with the truth: one at a time on a and
// on b (if b keeps per-org states), in random order, then, unless quick,
// on a with CheckEach and CheckBulk, one request context per resource. It
// returns how many results differed.
func paSweep(t *testing.T, in paEngines, reqs []CheckRequest, rng *rand.Rand, when string) int {
	return paSweepAll(t, in, reqs, rng, when, false)
}

func paSweepAll(t *testing.T, in paEngines, reqs []CheckRequest, rng *rand.Rand, when string, quick bool) int {
	t.Helper()
	truth := paTruth(t, in.plain, reqs)
	wrong := 0
	compare := func(how string, i int, d Decision, err error) {
		if got := paOutcome(d, err); got != truth[i] {
			wrong++
			t.Errorf("%s, %s: %s = %s (%v), want %s", when, how, paName(reqs[i]), got, err, truth[i])
		}
	}
	engines := []struct {
		name string
		e    *Engine
	}{{"a", in.a}}
	// On memory, b reads the head revision, which keeps no per-org states.
	if in.b.results.perOrg {
		engines = append(engines, engines[0])
		engines[1].name, engines[1].e = "b", in.b
	}
	for _, e := range engines {
		for _, i := range rng.Perm(len(reqs)) {
			d, err := paCheck(t.Context(), e.e, reqs[i])
			compare("check on "+e.name, i, d, err)
		}
	}

	if quick {
		return wrong
	}
	byResource := map[object.Ref][]int{}
	for i, req := range reqs {
		byResource[req.Resource] = append(byResource[req.Resource], i)
	}
	for resource, index := range byResource {
		rng.Shuffle(len(index), func(x, y int) { index[x], index[y] = index[y], index[x] })
		batch := make([]CheckRequest, len(index))
		for n, i := range index {
			batch[n] = reqs[i]
		}
		ctx, err := in.a.WithResource(t.Context(), resource)
		if err != nil {
			t.Fatalf("%s: pin %s: %v", when, resource, err)
		}
		// One request first, so that CheckEach and CheckBulk also meet a
		// single uncached request.
		single, err := in.a.CheckBulk(ctx, batch[:1], Consistency{})
		if err != nil {
			t.Fatalf("%s: bulk check of one on a: %v", when, err)
		}
		compare("bulk check of one on a", index[0], single[0].Decision, single[0].Err)
		perItem, err := in.a.CheckEach(ctx, batch)
		if err != nil {
			t.Fatalf("%s: check each on a: %v", when, err)
		}
		for n, r := range perItem {
			compare("check each on a", index[n], r.Decision, r.Err)
		}
		bulk, err := in.a.CheckBulk(ctx, batch, Consistency{})
		if err != nil {
			t.Fatalf("%s: bulk check on a: %v", when, err)
		}
		for n, r := range bulk {
			compare("bulk check on a", index[n], r.Decision, r.Err)
		}
	}
	return wrong
}

// paOrgTruth returns the org that resource belongs to, walking its parent
// links with fully consistent reads on e, or "" for none.
func paOrgTruth(t *testing.T, e *Engine, resource object.Ref) string {
	t.Helper()
	for ref := resource; ; {
		if ref.Type == object.TypeOrg {
			return ref.ID
		}
		parentType, ok := object.ParentType(ref.Type)
		if !ok {
			return ""
		}
		rels, _, err := e.Read(t.Context(), &v1.RelationshipFilter{
			ResourceType: ref.Type, OptionalResourceId: ref.ID, OptionalRelation: object.ParentRelation(ref.Type),
		}, 1, nil)
		if err != nil {
			t.Fatalf("read parent of %s: %v", ref, err)
		}
		if len(rels) == 0 || rels[0].GetSubject().GetObject().GetObjectType() != parentType {
			return ""
		}
		ref = object.Ref{Type: parentType, ID: rels[0].GetSubject().GetObject().GetObjectId()}
	}
}

// paCompareOrgs fails for each resource whose org, as a and b verify it in
// a new request, differs from the one its parent links give.
func paCompareOrgs(t *testing.T, in paEngines, when string) {
	t.Helper()
	for _, resource := range []object.Ref{paD1, paD2, paD3, paD4, paP1, paEng} {
		want := paOrgTruth(t, in.plain, resource)
		for name, e := range map[string]*Engine{"a": in.a, "b": in.b} {
			if !e.results.perOrg {
				continue
			}
			org, ok, err := e.ResourceOrg(t.Context(), resource)
			if err != nil {
				t.Fatalf("%s: org of %s on %s: %v", when, resource, name, err)
			}
			if got := org.ID; got != want || ok != (want != "") {
				t.Errorf("%s: org of %s on %s = %q, %v; want %q", when, resource, name, got, ok, want)
			}
		}
	}
}

// paPinKinds counts the pins that e holds, by kind: "shared", "base" and
// "state" for the pins of org and whole states.
func paPinKinds(e *Engine) map[string]int {
	kinds := map[string]int{}
	for key := range e.results.pins.Keys() {
		switch {
		case strings.HasPrefix(key, "shared/"):
			kinds["shared"]++
		case strings.HasPrefix(key, "base/"):
			kinds["base"]++
		default:
			kinds["state"]++
		}
	}
	return kinds
}

// paDropPins removes e's pins of one kind, as if they had expired: "shared",
// "base", "state" or "all".
func paDropPins(e *Engine, kind string) {
	for key := range e.results.pins.Keys() {
		shared, base := strings.HasPrefix(key, "shared/"), strings.HasPrefix(key, "base/")
		if kind == "all" || (kind == "shared" && shared) || (kind == "base" && base) || (kind == "state" && !shared && !base) {
			e.results.pins.Invalidate(key)
		}
	}
}

// paStates returns the PostgreSQL state reader of e.
func paStates(t *testing.T, e *Engine) *pgTransactions {
	t.Helper()
	c, ok := e.results.states.(*coalesced)
	if !ok {
		t.Fatalf("state reader is %T, want *coalesced", e.results.states)
	}
	p, ok := c.reader.(*pgTransactions)
	if !ok {
		t.Fatalf("state reader is %T, want *pgTransactions", c.reader)
	}
	return p
}

// TestAttackPinWriteSequence writes, on one instance or the other, each
// kind of change that a check may depend on. These are a principal's own
// role, a group membership, a grant, a service's app role, a link
// redemption and a group's role. Then come a write of no org, a write to
// another org, resources created, deleted, re-created in another org and
// moved, and writes of another SpiceDB server. After each write, every check and the org of
// each resource are compared with the truth, also through CheckEach and
// CheckBulk after every other write on PostgreSQL. Before the sweep, b's
// pins of one kind (a's on memory, where b keeps no per-org states) are
// dropped, as if they had expired. On PostgreSQL, a's horizon also moves
// twice.
func TestAttackPinWriteSequence(t *testing.T) {
	for _, kind := range []string{"postgres", "memory"} {
		t.Run(kind, func(t *testing.T) {
			in := paStart(t, kind)
			paSeed(t, in.b)
			reqs := paRequests()
			seed := time.Now().UnixNano()
			t.Logf("random seed %d", seed)
			rng := rand.New(rand.NewPCG(uint64(seed), 0))
			paSweep(t, in, reqs, rng, "after the seed")

			acme := ForOrg(t.Context(), paAcme.ID)
			globex := ForOrg(t.Context(), paGlobex.ID)
			write := func(e *Engine, ctx context.Context, updates ...*v1.RelationshipUpdate) func() error {
				return func() error {
					_, err := e.Write(ctx, updates, nil)
					return err
				}
			}
			steps := []struct {
				name  string
				apply func() error
			}{
				{"bob is given p1 viewer", write(in.b, acme, paRel(paP1, "viewer", paBob, ""))},
				{"dave joins eng", write(in.a, acme, paRel(paEng, "member", paDave, ""))},
				{"erin is granted d1 editor", write(in.b, ForSubject(acme, paErin),
					paExpiring(paRel(paD1, "editor", paGrant, "holder")), paRel(paGrant, "holder", paErin, ""))},
				{"billing gets the app role", write(in.a, acme, paRel(paAcme, "app", paBilling, ""))},
				{"ivan redeems the link", write(in.b, acme, paRel(paLink, "holder", paIvan, ""))},
				{"ops becomes a d1 viewer", write(in.a, acme, paRel(paD1, "viewer", paOps, "member"))},
				{"gina becomes an acme member, with no org", write(in.b, t.Context(), paRel(paAcme, "member", paGina, ""))},
				{"hank is given d2 viewer", write(in.a, globex, paRel(paD2, "viewer", paHank, ""))},
				{"carol is given d1 viewer", write(in.b, acme, paRel(paD1, "viewer", paCarol, ""))},
				{"d3 is created in acme", write(in.b, acme, paCreate(paRel(paD3, "project", paP1, "")))},
				{"d4 moves to globex", func() error { return paMove(t.Context(), in.a, paD4, paP2, paGlobex.ID) }},
				{"bob loses p1 viewer", write(in.a, acme, paDelete(paRel(paP1, "viewer", paBob, "")))},
				{"dave leaves eng", write(in.b, acme, paDelete(paRel(paEng, "member", paDave, "")))},
				{"erin's grant ends", write(in.a, ForSubject(acme, paErin),
					paDelete(paRel(paD1, "editor", paGrant, "holder")), paDelete(paRel(paGrant, "holder", paErin, "")))},
				{"d3 is deleted", func() error { return paRemove(t.Context(), in.b, paD3) }},
				{"d3 is created again in globex", write(in.a, globex, paCreate(paRel(paD3, "project", paP2, "")))},
				{"d4 moves back to acme", func() error { return paMove(t.Context(), in.b, paD4, paP1, paAcme.ID) }},
				{"billing loses the app role", write(in.b, acme, paDelete(paRel(paAcme, "app", paBilling, "")))},
				{"frank leaves ops", write(in.a, acme, paDelete(paRel(paOps, "member", paFrank, "")))},
				{"gina leaves acme, with no org", write(in.a, t.Context(), paDelete(paRel(paAcme, "member", paGina, "")))},
				{"alice loses acme ownership", write(in.b, acme, paDelete(paRel(paAcme, "owner", paAlice, "")))},
				{"dave joins eng again", write(in.b, acme, paRel(paEng, "member", paDave, ""))},
				{"another server makes bob an acme member, without metadata", write(in.plain, t.Context(), paRel(paAcme, "member", paBob, ""))},
				{"another server gives hank d1 viewer, without metadata", write(in.plain, t.Context(), paRel(paD1, "viewer", paHank, ""))},
			}
			drops := []string{"none", "shared", "base", "state", "all"}
			used := map[string]int{}
			for i, step := range steps {
				if err := step.apply(); err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				if drop := drops[i%len(drops)]; drop != "none" {
					if in.b.results.perOrg {
						paDropPins(in.b, drop)
					} else {
						paDropPins(in.a, drop)
					}
				}
				if kind == "postgres" && (i == 6 || i == 15) {
					if err := paStates(t, in.a).moveHorizon(t.Context()); err != nil {
						t.Fatalf("move the horizon: %v", err)
					}
				}
				paCompareOrgs(t, in, "after "+step.name)
				quick := i%2 == 1 || kind == "memory"
				if paSweepAll(t, in, reqs, rng, "after "+step.name, quick) > 0 {
					t.Fatalf("wrong results after %s", step.name)
				}
				for k, n := range paPinKinds(in.a) {
					used[k] += n
				}
			}
			t.Logf("pins held by a after each step, summed: %v", used)
			if kind == "postgres" && (used["shared"] == 0 || used["base"] == 0) {
				t.Errorf("pins held by a: %v, want shared and base pins to have been used", used)
			}
		})
	}
}

// TestAttackPinOldRequest lets a request that read its state before a
// write create the shared pin and the base pin after the write, as a slow
// request would once the earlier pins expired. The pins then hold a
// revision newer than the state they were pinned for, and requests that
// start after the write must still see it.
func TestAttackPinOldRequest(t *testing.T) {
	in := paStart(t, "postgres")
	paSeed(t, in.b)
	reqs := paRequests()
	rng := rand.New(rand.NewPCG(1, 2))
	acme := ForOrg(t.Context(), paAcme.ID)
	bobView := CheckRequest{Resource: paD1, Permission: "view", Subject: paBob}
	daveView := CheckRequest{Resource: paD1, Permission: "view", Subject: paDave}

	paSweep(t, in, reqs, rng, "after the seed")

	// A write of no one principal changes the base of acme, so the shared
	// pin taken before it no longer serves principals of acme.
	paWrite(t, acme, in.b, paRel(paD1, "viewer", paOps, "member"))
	old, err := in.a.WithResource(t.Context(), paD1)
	if err != nil {
		t.Fatalf("pin d1: %v", err)
	}
	paWrite(t, acme, in.b, paRel(paP1, "viewer", paBob, ""))

	// The old request pins the base of acme for dave after bob's write,
	// with the principals' states read before it.
	paDropPins(in.a, "base")
	if _, err := in.a.Check(old, daveView); err != nil {
		t.Fatalf("dave's check in the old request: %v", err)
	}
	if kinds := paPinKinds(in.a); kinds["base"] == 0 {
		t.Errorf("pins after dave's check in the old request: %v, want a base pin", kinds)
	}
	if d, err := in.a.Check(old, bobView); err != nil {
		t.Fatalf("bob's check in the old request: %v", err)
	} else {
		t.Logf("bob's view of d1 in the request that started before his role: %v", d.Allowed)
	}
	if d, err := paCheck(t.Context(), in.a, bobView); err != nil || !d.Allowed {
		t.Errorf("bob's view of d1 after his role = %+v, %v; want allowed", d, err)
	}
	paSweep(t, in, reqs, rng, "after the old request pinned acme's base")

	// The same with the shared pin. It expires, a request reads its state,
	// bob loses his role, and then the old request pins the global state.
	paDropPins(in.a, "all")
	old, err = in.a.WithResource(t.Context(), paD1)
	if err != nil {
		t.Fatalf("pin d1: %v", err)
	}
	paWrite(t, acme, in.b, paDelete(paRel(paP1, "viewer", paBob, "")))
	if _, err := in.a.Check(old, daveView); err != nil {
		t.Fatalf("dave's check in the old request: %v", err)
	}
	if _, err := in.a.Check(old, bobView); err != nil {
		t.Fatalf("bob's check in the old request: %v", err)
	}
	if d, err := paCheck(t.Context(), in.a, bobView); err != nil || d.Allowed {
		t.Errorf("bob's view of d1 after he lost his role = %+v, %v; want denied", d, err)
	}
	paSweep(t, in, reqs, rng, "after the old request pinned the global state")

	// A resource created after the old request read its state is not in
	// that state. Requests after the creation must find it in acme.
	paDropPins(in.a, "all")
	old, err = in.a.WithResource(t.Context(), paD1)
	if err != nil {
		t.Fatalf("pin d1: %v", err)
	}
	paWrite(t, acme, in.b, paCreate(paRel(paD3, "project", paP1, "")))
	if org, ok, err := in.a.ResourceOrg(old, paD3); err != nil {
		t.Fatalf("org of d3 in the old request: %v", err)
	} else {
		t.Logf("org of d3 in the request that started before it: %v, %v", org, ok)
	}
	if org, ok, err := in.a.ResourceOrg(t.Context(), paD3); err != nil || !ok || org != paAcme {
		t.Errorf("org of d3 after its creation = %v, %v, %v; want %s", org, ok, err, paAcme)
	}
	paSweep(t, in, reqs, rng, "after d3 was created behind the old request")
}

// TestAttackPinWriteBetweenReads commits a write on b right after a reads
// the head revision for a new pin, so that the pin misses a write that
// committed after the state it was pinned for. A later request whose state
// covers the write must not run at that pin. The write lands behind the
// shared pin, behind the base pin of acme, and behind the shared pin that
// parent links are read at, where it creates or moves a resource.
func TestAttackPinWriteBetweenReads(t *testing.T) {
	in := paStart(t, "postgres")
	paSeed(t, in.b)
	acme := ForOrg(t.Context(), paAcme.ID)
	aliceView := CheckRequest{Resource: paD1, Permission: "view", Subject: paAlice}
	bobView := CheckRequest{Resource: paD1, Permission: "view", Subject: paBob}
	daveView := CheckRequest{Resource: paD1, Permission: "view", Subject: paDave}
	// behind arms a's next head revision read with a write on b.
	behind := func(what string, updates ...*v1.RelationshipUpdate) func() bool {
		return in.hook.arm(func() {
			if _, err := in.b.Write(acme, updates, nil); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		})
	}
	want := func(req CheckRequest, allowed bool, when string) {
		t.Helper()
		d, err := paCheck(t.Context(), in.a, req)
		if err != nil {
			t.Fatalf("%s: check %s: %v", when, paName(req), err)
		}
		if d.Allowed != allowed {
			t.Errorf("%s: %s = %v, want %v", when, paName(req), d.Allowed, allowed)
		}
	}

	// The shared pin: alice's request pins the global state, and bob's
	// role commits between its state read and its head revision read.
	paDropPins(in.a, "all")
	fired := behind("give bob p1 viewer", paRel(paP1, "viewer", paBob, ""))
	want(aliceView, true, "alice's check that pins the global state")
	if !fired() {
		t.Fatal("the shared pin read no head revision")
	}
	want(bobView, true, "bob's check after his role committed behind the shared pin")
	want(daveView, false, "dave's check at the shared pin")

	// The base pin: a write of no one principal moves acme's base, then
	// dave's request pins the new base, and bob loses his role between its
	// state read and its head revision read.
	paWrite(t, acme, in.b, paRel(paD1, "viewer", paOps, "member"))
	want(aliceView, true, "alice's check after acme's base moved")
	paDropPins(in.a, "base")
	fired = behind("take bob's p1 viewer role", paDelete(paRel(paP1, "viewer", paBob, "")))
	want(daveView, false, "dave's check that pins acme's base")
	if !fired() {
		t.Fatal("the base pin read no head revision")
	}
	if kinds := paPinKinds(in.a); kinds["base"] == 0 {
		t.Errorf("pins after dave's check: %v, want a base pin", kinds)
	}
	want(bobView, false, "bob's check after he lost his role behind the base pin")
	want(CheckRequest{Resource: paD1, Permission: "view", Subject: paFrank}, true, "frank's check at the base pin")

	// The parent links: a request reads its state and pins the global
	// state to find the org of d2, whose org is not cached yet, and d3 is
	// created in acme between the two reads. A request after the creation
	// must find d3 in acme, and check it there.
	paDropPins(in.a, "all")
	fired = behind("create d3 in acme", paCreate(paRel(paD3, "project", paP1, "")))
	if org, ok, err := in.a.ResourceOrg(t.Context(), paD2); err != nil || !ok || org != paGlobex {
		t.Fatalf("org of d2 = %v, %v, %v; want %s", org, ok, err, paGlobex)
	}
	if !fired() {
		t.Fatal("the shared pin read no head revision")
	}
	if org, ok, err := in.a.ResourceOrg(t.Context(), paD3); err != nil || !ok || org != paAcme {
		t.Errorf("org of d3 after it was created behind the shared pin = %v, %v, %v; want %s", org, ok, err, paAcme)
	}
	want(CheckRequest{Resource: paD3, Permission: "edit", Subject: paAlice}, true, "alice's check of d3")
	want(CheckRequest{Resource: paD3, Permission: "view", Subject: paFrank}, false, "frank's check of d3")

	// A move: the request that first looks for the org of d4 pins the
	// global state, and d4 moves to globex between its two reads. That
	// request may still find d4 in acme, but a request after the move must
	// find it in globex.
	paDropPins(in.a, "all")
	fired = in.hook.arm(func() {
		if err := paMove(t.Context(), in.b, paD4, paP2, paGlobex.ID); err != nil {
			t.Errorf("move d4 to globex: %v", err)
		}
	})
	if org, ok, err := in.a.ResourceOrg(t.Context(), paD4); err != nil {
		t.Fatalf("org of d4 in the request that pinned the global state: %v", err)
	} else {
		t.Logf("org of d4 in the request that pinned the global state: %v, %v", org, ok)
	}
	if !fired() {
		t.Fatal("the shared pin read no head revision")
	}
	if org, ok, err := in.a.ResourceOrg(t.Context(), paD4); err != nil || !ok || org != paGlobex {
		t.Errorf("org of d4 after it moved behind the shared pin = %v, %v, %v; want %s", org, ok, err, paGlobex)
	}
	want(CheckRequest{Resource: paD4, Permission: "view", Subject: paCarol}, true, "carol's check of d4")
	want(CheckRequest{Resource: paD4, Permission: "view", Subject: paAlice}, false, "alice's check of d4")
	paSweep(t, in, paRequests(), rand.New(rand.NewPCG(10, 11)), "after the writes behind the pins")
}

// TestAttackPinSelfWriteThenCheck has each principal change its own
// access on one instance and check it at once on both, many times, while
// the other principals' checks keep the shared and base pins warm. The
// consistency token of each result must cover the write, and a check with
// the write's token must see it.
func TestAttackPinSelfWriteThenCheck(t *testing.T) {
	in := paStart(t, "postgres")
	paSeed(t, in.b)
	acme := ForOrg(t.Context(), paAcme.ID)
	warm := []CheckRequest{
		{Resource: paD1, Permission: "view", Subject: paAlice},
		{Resource: paD1, Permission: "view", Subject: paFrank},
		{Resource: paD1, Permission: "view", Subject: paEng, SubjectRelation: "member"},
		{Resource: paD2, Permission: "view", Subject: paCarol},
		{Resource: paAcme, Permission: "view", Subject: paGina},
	}
	type change struct {
		principal object.Ref
		ctx       context.Context
		updates   func(on bool) []*v1.RelationshipUpdate
		check     CheckRequest
	}
	flip := func(on bool, u *v1.RelationshipUpdate) *v1.RelationshipUpdate {
		if on {
			return u
		}
		return paDelete(u)
	}
	changes := []change{
		{paBob, acme, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{flip(on, paRel(paP1, "viewer", paBob, ""))}
		}, CheckRequest{Resource: paD1, Permission: "view", Subject: paBob}},
		{paDave, acme, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{flip(on, paRel(paEng, "member", paDave, ""))}
		}, CheckRequest{Resource: paD1, Permission: "view", Subject: paDave}},
		{paErin, ForSubject(acme, paErin), func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{
				flip(on, paExpiring(paRel(paD1, "editor", paGrant, "holder"))),
				flip(on, paRel(paGrant, "holder", paErin, "")),
			}
		}, CheckRequest{Resource: paD1, Permission: "edit", Subject: paErin}},
		{paBilling, acme, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{flip(on, paRel(paAcme, "app", paBilling, ""))}
		}, CheckRequest{Resource: paD1, Permission: "view", Subject: paBilling}},
		{paIvan, acme, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{flip(on, paRel(paLink, "holder", paIvan, ""))}
		}, CheckRequest{Resource: paD1, Permission: "edit", Subject: paIvan}},
	}
	engines := []*Engine{in.a, in.b}
	for round := range 12 {
		on := round%2 == 0
		for n, c := range changes {
			writer, checker := engines[(round+n)%2], engines[(round+n+1)%2]
			for _, req := range warm {
				if _, err := paCheck(t.Context(), checker, req); err != nil {
					t.Fatalf("warm check: %v", err)
				}
			}
			if _, err := paCheck(t.Context(), checker, c.check); err != nil {
				t.Fatalf("check before the write: %v", err)
			}
			written, err := writer.Write(c.ctx, c.updates(on), nil)
			if err != nil {
				t.Fatalf("round %d: write of %s: %v", round, c.principal, err)
			}
			for _, e := range []*Engine{checker, writer} {
				d, err := paCheck(t.Context(), e, c.check)
				if err != nil {
					t.Fatalf("round %d: check: %v", round, err)
				}
				if d.Allowed != on {
					t.Errorf("round %d: %s right after the write = %v, want %v", round, paName(c.check), d.Allowed, on)
				}
				// The token of that result names a revision that contains
				// the write.
				req := c.check
				req.Consistency = Consistency{Token: d.Token}
				at, err := in.plain.Check(t.Context(), req)
				if err != nil {
					t.Fatalf("round %d: check at the result's token: %v", round, err)
				}
				if at.Allowed != on {
					t.Errorf("round %d: %s at the result's token = %v, want %v", round, paName(c.check), at.Allowed, on)
				}
				// A check with the write's token reads through the
				// relationship read cache at the write's revision or later.
				req.Consistency = Consistency{Token: written}
				at, err = e.Check(t.Context(), req)
				if err != nil {
					t.Fatalf("round %d: check at the write's token: %v", round, err)
				}
				if at.Allowed != on {
					t.Errorf("round %d: %s at the write's token = %v, want %v", round, paName(c.check), at.Allowed, on)
				}
			}
		}
	}
}

// TestAttackPinHorizonMoves moves the horizon of a's state reads with more
// than maxTransactionsAboveHorizon transactions of another org, with
// checks warm before, and a principal's write just before the read that
// moves it.
func TestAttackPinHorizonMoves(t *testing.T) {
	in := paStart(t, "postgres")
	paSeed(t, in.b)
	reqs := paRequests()
	rng := rand.New(rand.NewPCG(3, 4))
	acme := ForOrg(t.Context(), paAcme.ID)
	states := paStates(t, in.a)
	bobView := CheckRequest{Resource: paD1, Permission: "view", Subject: paBob}
	daveView := CheckRequest{Resource: paD1, Permission: "view", Subject: paDave}

	pool, err := pgxpool.New(t.Context(), in.url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	// fill adds transaction rows recorded under globex principals, in
	// parallel, as SpiceDB's writes of another org would.
	fill := func(n int) {
		t.Helper()
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					metadata := fmt.Sprintf(`{%q: %q, %q: "user:dev|n%d"}`, metadataOrg, paGlobex.ID, metadataSubject, i)
					if _, err := pool.Exec(t.Context(), `INSERT INTO relation_tuple_transaction (metadata) VALUES ($1::jsonb)`, metadata); err != nil {
						t.Errorf("add a row: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}

	paSweep(t, in, reqs, rng, "after the seed")
	for round := range 2 {
		horizon := states.horizon.Load().xid
		fill(maxTransactionsAboveHorizon + 1)
		on := round%2 == 0
		u := paRel(paP1, "viewer", paBob, "")
		if !on {
			u = paDelete(u)
		}
		paWrite(t, acme, in.b, u)
		// This read counts the rows and moves the horizon after it.
		if d, err := paCheck(t.Context(), in.a, bobView); err != nil || d.Allowed != on {
			t.Errorf("round %d: bob's view right after his write = %+v, %v; want %v", round, d, err, on)
		}
		if states.horizon.Load().xid == horizon {
			t.Errorf("round %d: the horizon stayed at %s", round, horizon)
		}
		// Dave's role changes in the first read above the new horizon.
		v := paRel(paEng, "member", paDave, "")
		if !on {
			v = paDelete(v)
		}
		paWrite(t, acme, in.a, v)
		if d, err := paCheck(t.Context(), in.a, daveView); err != nil || d.Allowed != on {
			t.Errorf("round %d: dave's view right after his write = %+v, %v; want %v", round, d, err, on)
		}
		if d, err := paCheck(t.Context(), in.a, bobView); err != nil || d.Allowed != on {
			t.Errorf("round %d: bob's view above the new horizon = %+v, %v; want %v", round, d, err, on)
		}
		paSweep(t, in, reqs, rng, fmt.Sprintf("round %d, after the horizon moved", round))
	}
}

// paToggle is a change that a writer turns on and off while checkers
// compare. Each of its requests is allowed exactly when the change is on
// (or exactly when it is off, for the requests listed in whenOff), and no
// other toggle changes them.
type paToggle struct {
	name    string
	writer  *Engine
	set     func(ctx context.Context, on bool) error
	reqs    []CheckRequest
	whenOff map[int]bool // indexes of reqs allowed when the toggle is off

	mu       sync.Mutex
	started  int  // writes started
	returned int  // writes returned
	on       bool // as of the last write returned
}

func (tg *paToggle) want(i int, on bool) bool { return on != tg.whenOff[i] }

// TestAttackPinConcurrentToggles runs one writer per toggle, writers of
// noise that move the global state, acme's state and globex's state, and
// checkers on both instances. A checker's result must match the toggle
// whenever no write of that toggle started between the last write that
// returned before the check and the end of the check. Each writer also
// checks its own change right after its write returns, on the other
// instance.
func TestAttackPinConcurrentToggles(t *testing.T) {
	in := paStart(t, "postgres")
	paSeed(t, in.b)
	acme := func(ctx context.Context) context.Context { return ForOrg(ctx, paAcme.ID) }
	globex := func(ctx context.Context) context.Context { return ForOrg(ctx, paGlobex.ID) }
	flip := func(on bool, u *v1.RelationshipUpdate) *v1.RelationshipUpdate {
		if on {
			return u
		}
		return paDelete(u)
	}
	writeIn := func(e *Engine, scope func(context.Context) context.Context, updates func(on bool) []*v1.RelationshipUpdate) func(context.Context, bool) error {
		return func(ctx context.Context, on bool) error {
			_, err := e.Write(scope(ctx), updates(on), nil)
			return err
		}
	}
	view := func(res object.Ref, s object.Ref, rel string) CheckRequest {
		return CheckRequest{Resource: res, Permission: "view", Subject: s, SubjectRelation: rel}
	}
	edit := func(res object.Ref, s object.Ref, rel string) CheckRequest {
		return CheckRequest{Resource: res, Permission: "edit", Subject: s, SubjectRelation: rel}
	}
	toggles := []*paToggle{
		{name: "bob's p1 viewer role", writer: in.b,
			set: writeIn(in.b, acme, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{flip(on, paRel(paP1, "viewer", paBob, ""))}
			}),
			reqs: []CheckRequest{view(paD1, paBob, ""), view(paP1, paBob, "")}},
		{name: "dave's membership of eng", writer: in.a,
			set: writeIn(in.a, acme, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{flip(on, paRel(paEng, "member", paDave, ""))}
			}),
			reqs: []CheckRequest{view(paD1, paDave, ""), view(paEng, paDave, "")}},
		{name: "erin's grant", writer: in.b,
			set: writeIn(in.b, func(ctx context.Context) context.Context { return ForSubject(acme(ctx), paErin) }, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{
					flip(on, paExpiring(paRel(paD1, "editor", paGrant, "holder"))),
					flip(on, paRel(paGrant, "holder", paErin, "")),
				}
			}),
			reqs: []CheckRequest{edit(paD1, paErin, ""), edit(paD1, paGrant, "holder")}},
		{name: "ops' d1 viewer role", writer: in.a,
			set: writeIn(in.a, acme, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{flip(on, paRel(paD1, "viewer", paOps, "member"))}
			}),
			reqs: []CheckRequest{view(paD1, paFrank, ""), view(paD1, paOps, "member")}},
		{name: "gina's acme membership, of no org", writer: in.b,
			set: writeIn(in.b, func(ctx context.Context) context.Context { return ctx }, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{flip(on, paRel(paAcme, "member", paGina, ""))}
			}),
			reqs: []CheckRequest{view(paAcme, paGina, "")}},
		{name: "hank's d2 viewer role", writer: in.a,
			set: writeIn(in.a, globex, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{flip(on, paRel(paD2, "viewer", paHank, ""))}
			}),
			reqs: []CheckRequest{view(paD2, paHank, "")}},
		{name: "d3 in acme", writer: in.b,
			set: func(ctx context.Context, on bool) error {
				if !on {
					return paRemove(ctx, in.b, paD3)
				}
				_, err := in.b.Write(acme(ctx), []*v1.RelationshipUpdate{paCreate(paRel(paD3, "project", paP1, ""))}, nil)
				return err
			},
			reqs: []CheckRequest{view(paD3, paAlice, ""), edit(paD3, paAlice, "")}},
		{name: "d4 in acme, else in globex", writer: in.a, on: true,
			set: func(ctx context.Context, on bool) error {
				if on {
					return paMove(ctx, in.a, paD4, paP1, paAcme.ID)
				}
				return paMove(ctx, in.a, paD4, paP2, paGlobex.ID)
			},
			reqs:    []CheckRequest{view(paD4, paAlice, ""), view(paD4, paCarol, "")},
			whenOff: map[int]bool{1: true}},
		{name: "billing's app role", writer: in.b,
			set: writeIn(in.b, acme, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{flip(on, paRel(paAcme, "app", paBilling, ""))}
			}),
			reqs: []CheckRequest{view(paD1, paBilling, ""), view(paAcme, paBilling, "")}},
		{name: "ivan's link redemption", writer: in.a,
			set: writeIn(in.a, acme, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{flip(on, paRel(paLink, "holder", paIvan, ""))}
			}),
			reqs: []CheckRequest{edit(paD1, paIvan, "")}},
	}
	noise := []struct {
		name string
		set  func(ctx context.Context, on bool) error
	}{
		{"an auditor of the platform, of no org", writeIn(in.b, func(ctx context.Context) context.Context { return ctx }, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{flip(on, paRel(paPlatform, "auditor", paRef("user", "dev|noise1"), ""))}
		})},
		{"a member of acme", writeIn(in.a, acme, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{flip(on, paRel(paAcme, "member", paRef("user", "dev|noise2"), ""))}
		})},
		{"a member of globex", writeIn(in.b, globex, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{flip(on, paRel(paGlobex, "member", paRef("user", "dev|noise3"), ""))}
		})},
		{"a role of acme of no one principal", writeIn(in.a, acme, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{flip(on, paRel(paW1, "viewer", paRef("group", "noise"), "member"))}
		})},
	}

	// The writers and checkers run for at least minDuration, and on until
	// enough checks were verified, so that a loaded machine gets more time
	// rather than a failure.
	const minDuration, maxDuration = 4 * time.Second, 30 * time.Second
	const minVerified, minSelfChecked = 20, 50
	ctx, cancel := context.WithTimeout(t.Context(), maxDuration)
	defer cancel()
	var wg sync.WaitGroup
	var verified, selfChecked atomic.Int64
	go func() {
		select {
		case <-time.After(minDuration):
		case <-ctx.Done():
			return
		}
		for ctx.Err() == nil {
			if verified.Load() >= minVerified && selfChecked.Load() >= minSelfChecked {
				cancel()
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	other := func(e *Engine) *Engine {
		if e == in.a {
			return in.b
		}
		return in.a
	}
	for n, tg := range toggles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(n), 5))
			for ctx.Err() == nil {
				tg.mu.Lock()
				next := !tg.on
				tg.started++
				tg.mu.Unlock()
				if err := tg.set(t.Context(), next); err != nil {
					t.Errorf("%s: write: %v", tg.name, err)
					return
				}
				tg.mu.Lock()
				tg.returned++
				tg.on = next
				tg.mu.Unlock()
				// No other goroutine writes this toggle, so its state is
				// known exactly until the next write.
				for i, req := range tg.reqs {
					d, err := paCheck(t.Context(), other(tg.writer), req)
					if err != nil {
						t.Errorf("%s: check: %v", tg.name, err)
						return
					}
					selfChecked.Add(1)
					if d.Allowed != tg.want(i, next) {
						t.Errorf("%s: %s right after the write = %v, want %v", tg.name, paName(req), d.Allowed, tg.want(i, next))
					}
				}
				time.Sleep(time.Duration(10+rng.IntN(30)) * time.Millisecond)
			}
		}()
	}
	for n, nz := range noise {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(n), 6))
			for on := true; ctx.Err() == nil; on = !on {
				if err := nz.set(t.Context(), on); err != nil {
					t.Errorf("noise, %s: %v", nz.name, err)
					return
				}
				time.Sleep(time.Duration(rng.IntN(6000)) * time.Microsecond)
			}
		}()
	}
	for n := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(n), 7))
			for ctx.Err() == nil {
				tg := toggles[rng.IntN(len(toggles))]
				e := in.a
				if rng.IntN(2) == 1 {
					e = in.b
				}
				tg.mu.Lock()
				before, on := tg.returned, tg.on
				tg.mu.Unlock()

				outcomes := make([]Decision, len(tg.reqs))
				if rng.IntN(3) == 0 {
					// Every request of the toggle in one CheckEach, in the
					// request context of the first one's resource.
					rctx, err := e.WithResource(t.Context(), tg.reqs[0].Resource)
					if err != nil {
						t.Errorf("pin: %v", err)
						return
					}
					results, err := e.CheckEach(rctx, tg.reqs)
					if err != nil {
						t.Errorf("check each: %v", err)
						return
					}
					for i, r := range results {
						if r.Err != nil {
							t.Errorf("check each, %s: %v", paName(tg.reqs[i]), r.Err)
							return
						}
						outcomes[i] = r.Decision
					}
				} else {
					for i, req := range tg.reqs {
						d, err := paCheck(t.Context(), e, req)
						if err != nil {
							t.Errorf("check %s: %v", paName(req), err)
							return
						}
						outcomes[i] = d
					}
				}

				tg.mu.Lock()
				after := tg.started
				tg.mu.Unlock()
				if after != before {
					continue // a write was in flight
				}
				verified.Add(1)
				for i, d := range outcomes {
					if d.Allowed != tg.want(i, on) {
						t.Errorf("%s: %s with no write in flight = %v, want %v", tg.name, paName(tg.reqs[i]), d.Allowed, tg.want(i, on))
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d checks verified with no write in flight, %d checks right after a write; pins of a: %v", verified.Load(), selfChecked.Load(), paPinKinds(in.a))
	if verified.Load() < minVerified || selfChecked.Load() < minSelfChecked {
		t.Errorf("only %d checks verified with no write in flight and %d right after a write in %s, want at least %d and %d",
			verified.Load(), selfChecked.Load(), maxDuration, minVerified, minSelfChecked)
	}

	// At rest, every result matches the truth.
	paSweep(t, in, paRequests(), rand.New(rand.NewPCG(8, 9)), "after the writers stopped")
}
