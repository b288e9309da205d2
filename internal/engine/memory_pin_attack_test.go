package engine_test

// The tests in this file attack the revision that an uncached check runs at
// on an engine's own in-memory datastore. Such a check runs at the shared
// pin of the global state unless a write counted since that pin was read
// changed the check's org (see countedPinForCheck). For a user or service
// subject, only the org's writes of no one principal and that principal's
// own writes count (see writeCounts.writtenSince). Engine a owns the
// datastore and counts its writes. Engine b, which has a result cache, and
// engine plain, which has none, write through a's datastore. After every
// write that has returned, a check on a must return what plain returns at
// the head revision, or the result that the test expects.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/tuple"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// mpEngines are the three engines on engine a's in-memory datastore.
type mpEngines struct {
	a     *engine.Engine // owns the datastore and counts its writes
	b     *engine.Engine // result cache keyed by the head revision
	plain *engine.Engine // no caches: every check is evaluated at the head revision
}

func mpStart(t *testing.T) mpEngines {
	t.Helper()
	a := startEngine(t, engine.Config{})
	return mpEngines{
		a:     a,
		b:     startEngine(t, engine.Config{Datastore: a.Datastore()}),
		plain: startEngine(t, engine.Config{Datastore: a.Datastore(), ResultCacheBytes: -1}),
	}
}

func mpRef(typ, id string) object.Ref { return object.Ref{Type: typ, ID: id} }

var (
	mpPlatform = mpRef("platform", "gatehouse")
	mpAcme     = mpRef("org", "acme")
	mpGlobex   = mpRef("org", "globex")
	mpW1       = mpRef("workspace", "w1") // in acme
	mpP1       = mpRef("project", "p1")   // in w1
	mpD1       = mpRef("document", "d1")  // in p1
	mpW2       = mpRef("workspace", "w2") // in globex
	mpP2       = mpRef("project", "p2")   // in w2
	mpD2       = mpRef("document", "d2")  // in p2
	mpD3       = mpRef("document", "d3")  // created, deleted and created in another org by the tests
	mpD4       = mpRef("document", "d4")  // in p1, moved to p2 and back by the tests
	mpEng      = mpRef("group", "eng")    // in acme, a viewer of p1
	mpOps      = mpRef("group", "ops")    // in acme, with frank as a member
	mpGrant    = mpRef("grant", "g1")
	mpHolders  = mpRef("link", "l1") // its holders are editors of d1
	mpAnyone   = mpRef("link", "l2") // an anonymous link, given d1 viewer by the tests

	mpAlice   = mpRef("user", "dev|alice") // owner of acme
	mpBob     = mpRef("user", "dev|bob")
	mpCarol   = mpRef("user", "dev|carol") // owner of globex
	mpDave    = mpRef("user", "dev|dave")
	mpErin    = mpRef("user", "dev|erin")
	mpFrank   = mpRef("user", "dev|frank")
	mpGina    = mpRef("user", "dev|gina")
	mpHank    = mpRef("user", "dev|hank")
	mpIvan    = mpRef("user", "dev|ivan")
	mpBilling = mpRef("service", "corp|billing")
)

// mpRel returns a touch of resource#relation@subject, or of
// subject#subjectRelation when subjectRelation is not empty.
func mpRel(resource object.Ref, relation string, subject object.Ref, subjectRelation string) *v1.RelationshipUpdate {
	return &v1.RelationshipUpdate{
		Operation: v1.RelationshipUpdate_OPERATION_TOUCH,
		Relationship: &v1.Relationship{
			Resource: &v1.ObjectReference{ObjectType: resource.Type, ObjectId: resource.ID},
			Relation: relation,
			Subject: &v1.SubjectReference{
				Object:           &v1.ObjectReference{ObjectType: subject.Type, ObjectId: subject.ID},
				OptionalRelation: subjectRelation,
			},
		},
	}
}

func mpDelete(u *v1.RelationshipUpdate) *v1.RelationshipUpdate {
	u.Operation = v1.RelationshipUpdate_OPERATION_DELETE
	u.Relationship.OptionalExpiresAt = nil
	return u
}

func mpCreate(u *v1.RelationshipUpdate) *v1.RelationshipUpdate {
	u.Operation = v1.RelationshipUpdate_OPERATION_CREATE
	return u
}

// mpExpiring sets an expiration an hour away, long after the test ends.
func mpExpiring(u *v1.RelationshipUpdate) *v1.RelationshipUpdate {
	u.Relationship.OptionalExpiresAt = timestamppb.New(time.Now().Add(time.Hour))
	return u
}

// mpFlip returns u when on, and else the delete of u's relationship.
func mpFlip(on bool, u *v1.RelationshipUpdate) *v1.RelationshipUpdate {
	if on {
		return u
	}
	return mpDelete(u)
}

func mpOrg(ctx context.Context, org object.Ref) context.Context { return engine.ForOrg(ctx, org.ID) }

func mpWrite(t *testing.T, ctx context.Context, e *engine.Engine, updates ...*v1.RelationshipUpdate) {
	t.Helper()
	if _, err := e.Write(ctx, updates, nil); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// mpRemove deletes every relationship of resource with a write of no org,
// as Gatehouse deletes a resource.
func mpRemove(ctx context.Context, e *engine.Engine, resource object.Ref) error {
	_, err := e.DeleteMatching(ctx, &v1.RelationshipFilter{ResourceType: resource.Type, OptionalResourceId: resource.ID}, nil)
	return err
}

// mpMove deletes resource and creates it again under parent, recorded
// under org, as a move through Gatehouse's API does.
func mpMove(ctx context.Context, e *engine.Engine, resource, parent, org object.Ref) error {
	if err := mpRemove(ctx, e, resource); err != nil {
		return fmt.Errorf("delete %s: %w", resource, err)
	}
	create := mpCreate(mpRel(resource, object.ParentRelation(resource.Type), parent, ""))
	if _, err := e.Write(mpOrg(ctx, org), []*v1.RelationshipUpdate{create}, nil); err != nil {
		return fmt.Errorf("create %s under %s: %w", resource, parent, err)
	}
	return nil
}

// mpWriteDatastore touches rel with a transaction on the datastore itself,
// bypassing SpiceDB's API, as a bulk load through Engine.Datastore does.
func mpWriteDatastore(ctx context.Context, e *engine.Engine, rel string) error {
	parsed, err := tuple.Parse(rel)
	if err != nil {
		return err
	}
	_, err = e.Datastore().ReadWriteTx(ctx, func(ctx context.Context, tx datastore.ReadWriteTransaction) error {
		return tx.WriteRelationships(ctx, []tuple.RelationshipUpdate{tuple.Touch(parsed)})
	})
	return err
}

// mpSeed writes two orgs, each recorded under its org as Gatehouse records
// them.
func mpSeed(t *testing.T, e *engine.Engine) {
	t.Helper()
	ctx := t.Context()
	mpWrite(t, ctx, e, mpRel(mpAcme, "platform", mpPlatform, ""), mpRel(mpGlobex, "platform", mpPlatform, ""))
	mpWrite(t, mpOrg(ctx, mpAcme), e,
		mpCreate(mpRel(mpW1, "org", mpAcme, "")),
		mpCreate(mpRel(mpP1, "workspace", mpW1, "")),
		mpCreate(mpRel(mpD1, "project", mpP1, "")),
		mpCreate(mpRel(mpD4, "project", mpP1, "")),
		mpCreate(mpRel(mpEng, "org", mpAcme, "")),
		mpCreate(mpRel(mpOps, "org", mpAcme, "")),
		mpRel(mpAcme, "owner", mpAlice, ""),
		mpRel(mpP1, "viewer", mpEng, "member"),
		mpRel(mpOps, "member", mpFrank, ""),
		mpRel(mpD1, "editor", mpHolders, "holder"),
	)
	mpWrite(t, mpOrg(ctx, mpGlobex), e,
		mpCreate(mpRel(mpW2, "org", mpGlobex, "")),
		mpCreate(mpRel(mpP2, "workspace", mpW2, "")),
		mpCreate(mpRel(mpD2, "project", mpP2, "")),
		mpRel(mpGlobex, "owner", mpCarol, ""),
	)
}

func mpView(resource, subject object.Ref, subjectRelation string) engine.CheckRequest {
	return engine.CheckRequest{Resource: resource, Permission: "view", Subject: subject, SubjectRelation: subjectRelation}
}

func mpEdit(resource, subject object.Ref, subjectRelation string) engine.CheckRequest {
	return engine.CheckRequest{Resource: resource, Permission: "edit", Subject: subject, SubjectRelation: subjectRelation}
}

// mpRequests returns the checks that the sweeps compare: every principal
// and userset of the tests, on every resource that the tests change.
func mpRequests() []engine.CheckRequest {
	subjects := []struct {
		ref      object.Ref
		relation string
	}{
		{mpAlice, ""}, {mpBob, ""}, {mpCarol, ""}, {mpDave, ""}, {mpErin, ""}, {mpFrank, ""},
		{mpGina, ""}, {mpHank, ""}, {mpIvan, ""}, {mpBilling, ""},
		{mpEng, "member"}, {mpOps, "member"}, {mpGrant, "holder"}, {mpAnyone, ""},
	}
	var reqs []engine.CheckRequest
	for _, s := range subjects {
		for _, resource := range []object.Ref{mpAcme, mpW1, mpP1, mpD1, mpEng, mpD2, mpD3, mpD4} {
			reqs = append(reqs, mpView(resource, s.ref, s.relation))
		}
		for _, resource := range []object.Ref{mpW1, mpD1, mpD3} {
			reqs = append(reqs, mpEdit(resource, s.ref, s.relation))
		}
	}
	return reqs
}

func mpName(req engine.CheckRequest) string {
	subject := req.Subject.String()
	if req.SubjectRelation != "" {
		subject += "#" + req.SubjectRelation
	}
	return fmt.Sprintf("%s %s %s", subject, req.Permission, req.Resource)
}

func mpOutcome(d engine.Decision, err error) string {
	switch {
	case err != nil:
		return "error: " + err.Error()
	case d.Allowed:
		return "allowed"
	case d.Conditional:
		return "conditional"
	}
	return "denied"
}

// mpPaths are the ways a check reaches SpiceDB on an engine with a result
// cache, each in a request context of its own, as the check API makes it.
// A single uncached request of CheckEach and CheckBulk takes the path of
// Check.
var mpPaths = []string{"check", "check each", "bulk check"}

// mpCheck runs req on e along the path named by mpPaths[path].
func mpCheck(ctx context.Context, e *engine.Engine, req engine.CheckRequest, path int) (engine.Decision, error) {
	ctx, err := e.WithResource(ctx, req.Resource)
	if err != nil {
		return engine.Decision{}, err
	}
	var results []engine.BulkResult
	switch mpPaths[path] {
	case "check":
		return e.Check(ctx, req)
	case "check each":
		results, err = e.CheckEach(ctx, []engine.CheckRequest{req})
	default:
		results, err = e.CheckBulk(ctx, []engine.CheckRequest{req}, engine.Consistency{})
	}
	if err != nil {
		return engine.Decision{}, err
	}
	return results[0].Decision, results[0].Err
}

// mpTruth returns the outcome of each request on plain, all at the head
// revision.
func mpTruth(t *testing.T, plain *engine.Engine, reqs []engine.CheckRequest) []string {
	t.Helper()
	results, err := plain.CheckBulk(t.Context(), reqs, engine.Consistency{})
	if err != nil {
		t.Fatalf("fully consistent bulk check: %v", err)
	}
	out := make([]string, len(reqs))
	for i, r := range results {
		out[i] = mpOutcome(r.Decision, r.Err)
	}
	return out
}

// mpSweep compares the result of every request on a and on b, in random
// order and along a random path, with the truth. It also compares the org
// that a finds for each resource that the tests move with the org of its
// parent links. It returns how many results differed.
func mpSweep(t *testing.T, in mpEngines, reqs []engine.CheckRequest, rng *rand.Rand, when string) int {
	t.Helper()
	truth := mpTruth(t, in.plain, reqs)
	wrong := 0
	for _, e := range []struct {
		name string
		e    *engine.Engine
	}{{"a", in.a}, {"b", in.b}} {
		for _, i := range rng.Perm(len(reqs)) {
			path := rng.IntN(len(mpPaths))
			d, err := mpCheck(t.Context(), e.e, reqs[i], path)
			if got := mpOutcome(d, err); got != truth[i] {
				wrong++
				t.Errorf("%s: %s on %s: %s = %s, want %s", when, mpPaths[path], e.name, mpName(reqs[i]), got, truth[i])
			}
		}
	}
	for _, resource := range []object.Ref{mpD1, mpD2, mpD3, mpD4, mpEng} {
		want := mpOrgTruth(t, in.plain, resource)
		org, ok, err := in.a.ResourceOrg(t.Context(), resource)
		if err != nil {
			t.Fatalf("%s: org of %s on a: %v", when, resource, err)
		}
		if org.ID != want || ok != (want != "") {
			wrong++
			t.Errorf("%s: org of %s on a = %q, %v; want %q", when, resource, org.ID, ok, want)
		}
	}
	return wrong
}

// mpOrgTruth returns the org that resource belongs to, walking its parent
// links with fully consistent reads on e, or "" for none.
func mpOrgTruth(t *testing.T, e *engine.Engine, resource object.Ref) string {
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

// mpExpect is a check and the result it must have right after a write.
type mpExpect struct {
	req     engine.CheckRequest
	allowed bool
}

// TestAttackMemoryPinWriteThenCheck makes each kind of change that a check
// may depend on, on one engine or another, and checks on a at once. The
// changes include principals' roles, a group membership, a grant, a
// service's app role, a link redemption, an anonymous link's role and a
// group's role. They also include writes of no org (through the API and
// through the datastore itself), writes to another org, and resources
// that are created, deleted, created again in another org and moved.
// Before each write, a check of a principal that a
// has never seen reads the shared pin of the global state, and each
// expected check is cached with its old result. Right after the write,
// each expected check on a must return its new result, along the three
// check paths in turn. Its consistency token must name a revision that
// contains the write. Then every request and the org of every moved
// resource are compared with the truth, on a and on b.
//
// A check of another new principal after the write shows whether the
// shared pin outlived the write. The test fails unless that happened after
// most writes of one principal and of another org, so that the expected
// checks met a shared pin read before their write.
func TestAttackMemoryPinWriteThenCheck(t *testing.T) {
	in := mpStart(t)
	mpSeed(t, in.b)
	reqs := mpRequests()
	seed := time.Now().UnixNano()
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	mpSweep(t, in, reqs, rng, "after the seed")

	ctx := t.Context()
	acme, globex := mpOrg(ctx, mpAcme), mpOrg(ctx, mpGlobex)
	write := func(e *engine.Engine, ctx context.Context, updates ...*v1.RelationshipUpdate) func() error {
		return func() error {
			_, err := e.Write(ctx, updates, nil)
			return err
		}
	}
	grantUpdates := func(on bool) []*v1.RelationshipUpdate {
		return []*v1.RelationshipUpdate{
			mpFlip(on, mpExpiring(mpRel(mpD1, "editor", mpGrant, "holder"))),
			mpFlip(on, mpRel(mpGrant, "holder", mpErin, "")),
		}
	}
	steps := []struct {
		name string
		// keepsPin is set for a write of one principal or of another org,
		// which must leave the shared pin in use for acme's other
		// principals.
		keepsPin bool
		apply    func() error
		expect   []mpExpect
	}{
		{"bob is given p1 viewer, through b", true, write(in.b, acme, mpRel(mpP1, "viewer", mpBob, "")),
			[]mpExpect{{mpView(mpD1, mpBob, ""), true}, {mpView(mpP1, mpBob, ""), true}, {mpView(mpW1, mpBob, ""), false}}},
		{"dave joins eng, through a", true, write(in.a, acme, mpRel(mpEng, "member", mpDave, "")),
			[]mpExpect{{mpView(mpD1, mpDave, ""), true}, {mpView(mpEng, mpDave, ""), true}}},
		{"erin is granted d1 editor, through plain", true, write(in.plain, engine.ForSubject(acme, mpErin), grantUpdates(true)...),
			[]mpExpect{{mpEdit(mpD1, mpErin, ""), true}, {mpEdit(mpD1, mpGrant, "holder"), true}}},
		{"billing gets the app role, through a", true, write(in.a, acme, mpRel(mpAcme, "app", mpBilling, "")),
			[]mpExpect{{mpView(mpD1, mpBilling, ""), true}, {mpView(mpAcme, mpBilling, ""), true}, {mpEdit(mpD1, mpBilling, ""), false}}},
		{"ivan redeems link l1, through b", true, write(in.b, acme, mpRel(mpHolders, "holder", mpIvan, "")),
			[]mpExpect{{mpEdit(mpD1, mpIvan, ""), true}, {mpView(mpP1, mpIvan, ""), false}}},
		{"ops becomes a d1 viewer, through plain", false, write(in.plain, acme, mpRel(mpD1, "viewer", mpOps, "member")),
			[]mpExpect{{mpView(mpD1, mpFrank, ""), true}, {mpView(mpD1, mpOps, "member"), true}}},
		{"anonymous link l2 becomes a d1 viewer, through a", false, write(in.a, acme, mpRel(mpD1, "viewer", mpAnyone, "")),
			[]mpExpect{{mpView(mpD1, mpAnyone, ""), true}, {mpEdit(mpD1, mpAnyone, ""), false}}},
		{"gina becomes an acme member, with no org", false, write(in.b, ctx, mpRel(mpAcme, "member", mpGina, "")),
			[]mpExpect{{mpView(mpAcme, mpGina, ""), true}}},
		{"hank is given d2 viewer in globex", true, write(in.a, globex, mpRel(mpD2, "viewer", mpHank, "")),
			[]mpExpect{{mpView(mpD2, mpHank, ""), true}}},
		{"carol is given d1 viewer", true, write(in.plain, acme, mpRel(mpD1, "viewer", mpCarol, "")),
			[]mpExpect{{mpView(mpD1, mpCarol, ""), true}, {mpView(mpD2, mpCarol, ""), true}}},
		{"d3 is created in acme", false, write(in.b, acme, mpCreate(mpRel(mpD3, "project", mpP1, ""))),
			[]mpExpect{{mpEdit(mpD3, mpAlice, ""), true}, {mpView(mpD3, mpDave, ""), true}, {mpView(mpD3, mpFrank, ""), false}}},
		{"bob is given d3 editor", true, write(in.a, acme, mpRel(mpD3, "editor", mpBob, "")),
			[]mpExpect{{mpEdit(mpD3, mpBob, ""), true}}},
		{"d4 moves to globex", false, func() error { return mpMove(ctx, in.a, mpD4, mpP2, mpGlobex) },
			[]mpExpect{{mpView(mpD4, mpCarol, ""), true}, {mpView(mpD4, mpAlice, ""), false}, {mpView(mpD4, mpDave, ""), false}}},
		{"bob loses p1 viewer", true, write(in.plain, acme, mpDelete(mpRel(mpP1, "viewer", mpBob, ""))),
			[]mpExpect{{mpView(mpD1, mpBob, ""), false}, {mpView(mpP1, mpBob, ""), false}, {mpEdit(mpD3, mpBob, ""), true}}},
		{"dave leaves eng", true, write(in.b, acme, mpDelete(mpRel(mpEng, "member", mpDave, ""))),
			[]mpExpect{{mpView(mpD1, mpDave, ""), false}, {mpView(mpD3, mpDave, ""), false}}},
		{"erin's grant ends", true, write(in.a, engine.ForSubject(acme, mpErin), grantUpdates(false)...),
			[]mpExpect{{mpEdit(mpD1, mpErin, ""), false}, {mpEdit(mpD1, mpGrant, "holder"), false}}},
		{"d3 is deleted", false, func() error { return mpRemove(ctx, in.plain, mpD3) },
			[]mpExpect{{mpEdit(mpD3, mpAlice, ""), false}, {mpEdit(mpD3, mpBob, ""), false}}},
		{"d3 is created again in globex", false, write(in.a, globex, mpCreate(mpRel(mpD3, "project", mpP2, ""))),
			[]mpExpect{{mpView(mpD3, mpCarol, ""), true}, {mpView(mpD3, mpAlice, ""), false}}},
		{"d4 moves back to acme", false, func() error { return mpMove(ctx, in.b, mpD4, mpP1, mpAcme) },
			[]mpExpect{{mpView(mpD4, mpAlice, ""), true}, {mpView(mpD4, mpCarol, ""), false}}},
		{"billing loses the app role", true, write(in.b, acme, mpDelete(mpRel(mpAcme, "app", mpBilling, ""))),
			[]mpExpect{{mpView(mpD1, mpBilling, ""), false}, {mpView(mpAcme, mpBilling, ""), false}}},
		{"frank leaves ops", true, write(in.a, acme, mpDelete(mpRel(mpOps, "member", mpFrank, ""))),
			[]mpExpect{{mpView(mpD1, mpFrank, ""), false}, {mpView(mpD1, mpOps, "member"), true}}},
		{"anonymous link l2 loses d1 viewer", false, write(in.plain, acme, mpDelete(mpRel(mpD1, "viewer", mpAnyone, ""))),
			[]mpExpect{{mpView(mpD1, mpAnyone, ""), false}}},
		{"ivan's redemption of l1 is deleted", true, write(in.a, acme, mpDelete(mpRel(mpHolders, "holder", mpIvan, ""))),
			[]mpExpect{{mpEdit(mpD1, mpIvan, ""), false}}},
		{"gina leaves acme, with no org", false, write(in.plain, ctx, mpDelete(mpRel(mpAcme, "member", mpGina, ""))),
			[]mpExpect{{mpView(mpAcme, mpGina, ""), false}}},
		{"hank becomes an acme admin through the datastore itself", false,
			func() error { return mpWriteDatastore(ctx, in.b, "org:acme#admin@user:dev|hank") },
			[]mpExpect{{mpEdit(mpW1, mpHank, ""), true}, {mpView(mpD1, mpHank, ""), true}}},
		{"dave joins eng again", true, write(in.b, acme, mpRel(mpEng, "member", mpDave, "")),
			[]mpExpect{{mpView(mpD1, mpDave, ""), true}, {mpEdit(mpW1, mpDave, ""), false}}},
		{"eng becomes an acme admin", false, write(in.a, acme, mpRel(mpAcme, "admin", mpEng, "member")),
			[]mpExpect{{mpEdit(mpW1, mpDave, ""), true}, {mpEdit(mpW1, mpEng, "member"), true}}},
		{"alice loses acme ownership", true, write(in.plain, acme, mpDelete(mpRel(mpAcme, "owner", mpAlice, ""))),
			[]mpExpect{{mpView(mpD1, mpAlice, ""), false}, {mpEdit(mpW1, mpAlice, ""), false}, {mpView(mpAcme, mpAlice, ""), false}}},
	}

	probes := 0
	// probe checks a principal that no check has named, so that its result
	// is not cached and it runs at the shared pin unless acme's writes of
	// no one principal moved it to a pin of its own. It returns the check's
	// token, which names the revision that the check ran at.
	probe := func(when string) string {
		t.Helper()
		probes++
		req := mpView(mpD1, mpRef("user", fmt.Sprintf("dev|probe%d", probes)), "")
		d, err := mpCheck(t.Context(), in.a, req, 0)
		if err != nil || d.Allowed {
			t.Fatalf("%s: %s = %+v, %v; want denied", when, mpName(req), d, err)
		}
		return d.Token
	}
	pinKept, pinKeepers := 0, 0
	for i, step := range steps {
		for _, x := range step.expect {
			if _, err := mpCheck(t.Context(), in.a, x.req, 0); err != nil {
				t.Fatalf("before %s: %s: %v", step.name, mpName(x.req), err)
			}
		}
		before := probe("before " + step.name)

		if err := step.apply(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for n, x := range step.expect {
			path := (i + n) % len(mpPaths)
			d, err := mpCheck(t.Context(), in.a, x.req, path)
			if err != nil {
				t.Fatalf("right after %s: %s: %v", step.name, mpName(x.req), err)
			}
			if d.Allowed != x.allowed {
				t.Errorf("right after %s: %s on a = %v, want %v", step.name, mpName(x.req), d.Allowed, x.allowed)
			}
			// The result's token names a revision that contains the write.
			at := x.req
			at.Consistency = engine.Consistency{Token: d.Token}
			if d, err := in.plain.Check(t.Context(), at); err != nil || d.Allowed != x.allowed {
				t.Errorf("right after %s: %s at the token of a's result = %+v, %v; want %v", step.name, mpName(x.req), d, err, x.allowed)
			}
		}

		if step.keepsPin {
			pinKeepers++
			if probe("after "+step.name) == before {
				pinKept++
			}
		}
		if mpSweep(t, in, reqs, rng, "after "+step.name) > 0 {
			t.Fatalf("wrong results after %s", step.name)
		}
	}
	t.Logf("the shared pin outlived %d of %d writes of one principal or of another org", pinKept, pinKeepers)
	if pinKept*2 < pinKeepers {
		t.Errorf("the shared pin outlived %d of %d writes of one principal or of another org, want most", pinKept, pinKeepers)
	}
}

// TestAttackMemoryPinOtherPrincipalsKeepPin writes, many times, the roles
// of acme's principals other than bob, each in a write of its own, so that
// bob's checks keep running at one shared pin read before all of them.
// Then bob's own role changes, and his next check must see it. A check of
// the group that bob's new role came through must too.
func TestAttackMemoryPinOtherPrincipalsKeepPin(t *testing.T) {
	in := mpStart(t)
	mpSeed(t, in.a)
	ctx := t.Context()
	acme := mpOrg(ctx, mpAcme)
	bobView := mpView(mpD1, mpBob, "")
	first, err := mpCheck(ctx, in.a, bobView, 0)
	if err != nil || first.Allowed {
		t.Fatalf("bob's first view of d1 = %+v, %v; want denied", first, err)
	}
	for round := range 6 {
		on := round%2 == 0
		// Writes of other principals, on all three engines.
		for n := range 30 {
			writer := []*engine.Engine{in.a, in.b, in.plain}[n%3]
			other := mpRef("user", fmt.Sprintf("dev|other%d", n))
			mpWrite(t, acme, writer, mpFlip(on, mpRel(mpP1, "viewer", other, "")))
			// Half of the others check at once, and each check must reflect its own write.
			if n%2 == 0 {
				if d, err := mpCheck(ctx, in.a, mpView(mpD1, other, ""), n%len(mpPaths)); err != nil || d.Allowed != on {
					t.Fatalf("round %d: %s's view of d1 right after its write = %+v, %v; want %v", round, other, d, err, on)
				}
			}
		}
		// Bob is still where he was, at the shared pin, in a new request.
		d, err := mpCheck(ctx, in.a, mpEdit(mpD1, mpBob, ""), round%len(mpPaths))
		if err != nil || d.Allowed {
			t.Fatalf("round %d: bob's edit of d1 = %+v, %v; want denied", round, d, err)
		}
		if round == 0 && d.Token != first.Token {
			t.Errorf("bob's check after 30 writes of other principals ran at %q, want the shared pin %q", d.Token, first.Token)
		}

		// Bob joins ops, and ops is a viewer of d1 from round 1: a write
		// of no one principal first, then bob's own write.
		if round == 1 {
			mpWrite(t, acme, in.b, mpRel(mpD1, "viewer", mpOps, "member"))
		}
		mpWrite(t, acme, []*engine.Engine{in.plain, in.b, in.a}[round%3], mpFlip(on, mpRel(mpOps, "member", mpBob, "")))
		want := on && round >= 1
		for path := range mpPaths {
			if d, err := mpCheck(ctx, in.a, bobView, path); err != nil || d.Allowed != want {
				t.Errorf("round %d: %s: bob's view of d1 right after he joined or left ops = %+v, %v; want %v", round, mpPaths[path], d, err, want)
			}
		}
		if d, err := mpCheck(ctx, in.a, mpView(mpD1, mpOps, "member"), round%len(mpPaths)); err != nil || d.Allowed != (round >= 1) {
			t.Errorf("round %d: ops' view of d1 = %+v, %v; want %v", round, d, err, round >= 1)
		}
	}
	mpSweep(t, in, mpRequests(), rand.New(rand.NewPCG(1, 2)), "after the rounds")
}

// mpToggle is a change that one writer goroutine turns on and off. Each
// of its requests is allowed exactly when the change is on, or exactly
// when it is off for the requests listed in whenOff, and no other toggle
// changes them.
type mpToggle struct {
	name    string
	set     func(ctx context.Context, e *engine.Engine, on bool) error
	reqs    []engine.CheckRequest
	whenOff map[int]bool
	pause   bool // sleep between writes, so that checkers meet it at rest

	mu       sync.Mutex
	started  int  // writes started
	returned int  // writes returned
	on       bool // as of the last write returned
}

func (tg *mpToggle) want(i int, on bool) bool { return on != tg.whenOff[i] }

// TestAttackMemoryPinConcurrentToggles runs one writer goroutine per
// toggle, each writing through a, b or plain in turn, and checker
// goroutines on a. Writers of noise meanwhile change the global state,
// acme's state for no one principal, acme's state for principals that no
// check names, and globex's state. After each of its writes, a writer checks its
// toggle on a at once. A checker's result must match the toggle whenever
// no write of that toggle started between the last write that returned
// before the check and the end of the check. Run it with -race.
func TestAttackMemoryPinConcurrentToggles(t *testing.T) {
	in := mpStart(t)
	mpSeed(t, in.a)
	engines := []*engine.Engine{in.a, in.b, in.plain}
	inOrg := func(org object.Ref, updates func(on bool) []*v1.RelationshipUpdate) func(context.Context, *engine.Engine, bool) error {
		return func(ctx context.Context, e *engine.Engine, on bool) error {
			if org.ID != "" {
				ctx = mpOrg(ctx, org)
			}
			_, err := e.Write(ctx, updates(on), nil)
			return err
		}
	}
	noOrg := object.Ref{}
	toggles := []*mpToggle{
		{name: "bob's p1 viewer role",
			set: inOrg(mpAcme, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpP1, "viewer", mpBob, ""))}
			}),
			reqs: []engine.CheckRequest{mpView(mpD1, mpBob, ""), mpView(mpP1, mpBob, "")}},
		{name: "dave's membership of eng",
			set: inOrg(mpAcme, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpEng, "member", mpDave, ""))}
			}),
			reqs: []engine.CheckRequest{mpView(mpD1, mpDave, ""), mpView(mpEng, mpDave, "")}},
		{name: "erin's grant",
			set: func(ctx context.Context, e *engine.Engine, on bool) error {
				_, err := e.Write(engine.ForSubject(mpOrg(ctx, mpAcme), mpErin), []*v1.RelationshipUpdate{
					mpFlip(on, mpExpiring(mpRel(mpD1, "editor", mpGrant, "holder"))),
					mpFlip(on, mpRel(mpGrant, "holder", mpErin, "")),
				}, nil)
				return err
			},
			reqs: []engine.CheckRequest{mpEdit(mpD1, mpErin, ""), mpEdit(mpD1, mpGrant, "holder")}},
		{name: "ops' d1 viewer role",
			set: inOrg(mpAcme, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpD1, "viewer", mpOps, "member"))}
			}),
			reqs: []engine.CheckRequest{mpView(mpD1, mpFrank, ""), mpView(mpD1, mpOps, "member")}},
		{name: "anonymous link l2's d1 viewer role",
			set: inOrg(mpAcme, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpD1, "viewer", mpAnyone, ""))}
			}),
			reqs: []engine.CheckRequest{mpView(mpD1, mpAnyone, "")}},
		{name: "ivan's redemption of l1",
			set: inOrg(mpAcme, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpHolders, "holder", mpIvan, ""))}
			}),
			reqs: []engine.CheckRequest{mpEdit(mpD1, mpIvan, "")}},
		{name: "billing's app role",
			set: inOrg(mpAcme, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpAcme, "app", mpBilling, ""))}
			}),
			reqs: []engine.CheckRequest{mpView(mpD1, mpBilling, ""), mpView(mpAcme, mpBilling, "")}},
		{name: "gina's acme membership, of no org",
			set: inOrg(noOrg, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpAcme, "member", mpGina, ""))}
			}),
			reqs: []engine.CheckRequest{mpView(mpAcme, mpGina, "")}, pause: true},
		{name: "hank's d2 viewer role in globex",
			set: inOrg(mpGlobex, func(on bool) []*v1.RelationshipUpdate {
				return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpD2, "viewer", mpHank, ""))}
			}),
			reqs: []engine.CheckRequest{mpView(mpD2, mpHank, "")}},
		{name: "d3 in acme",
			set: func(ctx context.Context, e *engine.Engine, on bool) error {
				if !on {
					return mpRemove(ctx, e, mpD3)
				}
				_, err := e.Write(mpOrg(ctx, mpAcme), []*v1.RelationshipUpdate{mpCreate(mpRel(mpD3, "project", mpP1, ""))}, nil)
				return err
			},
			reqs: []engine.CheckRequest{mpView(mpD3, mpAlice, ""), mpEdit(mpD3, mpAlice, "")}, pause: true},
		{name: "d4 in acme, else in globex", on: true,
			set: func(ctx context.Context, e *engine.Engine, on bool) error {
				if on {
					return mpMove(ctx, e, mpD4, mpP1, mpAcme)
				}
				return mpMove(ctx, e, mpD4, mpP2, mpGlobex)
			},
			reqs:    []engine.CheckRequest{mpView(mpD4, mpAlice, ""), mpView(mpD4, mpCarol, "")},
			whenOff: map[int]bool{1: true}, pause: true},
	}
	noise := []func(context.Context, *engine.Engine, bool) error{
		// A platform auditor: a write of no org, which moves the shared pin.
		inOrg(noOrg, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpPlatform, "auditor", mpRef("user", "dev|noise1"), ""))}
		}),
		// A role of acme of no one principal.
		inOrg(mpAcme, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpW1, "viewer", mpRef("group", "noise"), "member"))}
		}),
		// A member of globex.
		inOrg(mpGlobex, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpGlobex, "member", mpRef("user", "dev|noise2"), ""))}
		}),
	}
	// Writes of acme principals that no check names, which leave the
	// shared pin in use for every other principal.
	for n := range 3 {
		noise = append(noise, inOrg(mpAcme, func(on bool) []*v1.RelationshipUpdate {
			return []*v1.RelationshipUpdate{mpFlip(on, mpRel(mpP1, "viewer", mpRef("user", fmt.Sprintf("dev|noise-principal%d", n)), ""))}
		}))
	}

	const duration = 4 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), duration)
	defer cancel()
	var wg sync.WaitGroup
	var verified, selfChecked atomic.Int64
	for n, tg := range toggles {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(n), 5))
			for writes := 0; ctx.Err() == nil; writes++ {
				tg.mu.Lock()
				next := !tg.on
				tg.started++
				tg.mu.Unlock()
				writer := engines[writes%len(engines)]
				if err := tg.set(t.Context(), writer, next); err != nil {
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
					path := rng.IntN(len(mpPaths))
					d, err := mpCheck(t.Context(), in.a, req, path)
					if err != nil {
						t.Errorf("%s: check: %v", tg.name, err)
						return
					}
					selfChecked.Add(1)
					if d.Allowed != tg.want(i, next) {
						t.Errorf("%s: %s: %s right after the write = %v, want %v", tg.name, mpPaths[path], mpName(req), d.Allowed, tg.want(i, next))
					}
				}
				if tg.pause {
					time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
				}
			}
		})
	}
	for n, set := range noise {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(n), 6))
			for on := true; ctx.Err() == nil; on = !on {
				if err := set(t.Context(), engines[rng.IntN(len(engines))], on); err != nil {
					t.Errorf("noise %d: %v", n, err)
					return
				}
				time.Sleep(time.Duration(rng.IntN(4000)) * time.Microsecond)
			}
		})
	}
	for n := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(n), 7))
			for ctx.Err() == nil {
				tg := toggles[rng.IntN(len(toggles))]
				tg.mu.Lock()
				before, on := tg.returned, tg.on
				tg.mu.Unlock()
				outcomes := make([]engine.Decision, len(tg.reqs))
				for i, req := range tg.reqs {
					d, err := mpCheck(t.Context(), in.a, req, rng.IntN(len(mpPaths)))
					if err != nil {
						t.Errorf("check %s: %v", mpName(req), err)
						return
					}
					outcomes[i] = d
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
						t.Errorf("%s: %s with no write in flight = %v, want %v", tg.name, mpName(tg.reqs[i]), d.Allowed, tg.want(i, on))
					}
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d checks verified with no write in flight, %d checks right after a write", verified.Load(), selfChecked.Load())
	if verified.Load() < 20 || selfChecked.Load() < 100 {
		t.Errorf("only %d checks verified with no write in flight and %d right after a write, want at least 20 and 100", verified.Load(), selfChecked.Load())
	}
	mpSweep(t, in, mpRequests(), rand.New(rand.NewPCG(8, 9)), "after the writers stopped")
}

// mpBulkCheck runs req on a as the only request of CheckBulk, in a request
// context from WithResource, where it takes the path of Check but its
// result is cached under the whole datastore's state.
func mpBulkCheck(t *testing.T, a *engine.Engine, req engine.CheckRequest) bool {
	t.Helper()
	d, err := mpCheck(t.Context(), a, req, 2)
	if err != nil {
		t.Fatalf("bulk check of %s: %v", mpName(req), err)
	}
	return d.Allowed
}

// TestAttackMemoryPinBulkCheckAfterUncountedWrite replays, one step at a
// time, a request whose state read and check fall between the commit of a
// write and the moment countingDatastore counts it. That request reads the
// new head revision, which keys CheckBulk's results, but its check runs at
// the shared pin read before the write, because no count shows the write
// yet. The request's own result may miss the write, since the two overlap.
// But once the write is counted, as it is before it returns, every later
// check must see it.
//
// The test commits the write on the datastore under countingDatastore,
// which does not count it. Then a write with the same org and a failing
// precondition counts it, because countingDatastore counts failed
// transactions too, and a failed transaction makes no revision. The
// datastore then holds what one write that returned would leave.
// TestAttackMemoryPinBulkCheckUnderLoad makes the same interleaving with
// real writes.
func TestAttackMemoryPinBulkCheckAfterUncountedWrite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		org      object.Ref             // empty for a write of no org
		relation string                 // the relationship written, in SpiceDB's syntax
		touch    *v1.RelationshipUpdate // the same relationship, for the write that counts it
		req      engine.CheckRequest
	}{
		{"gina's acme membership, of no org", object.Ref{}, "org:acme#member@user:dev|gina",
			mpRel(mpAcme, "member", mpGina, ""), mpView(mpAcme, mpGina, "")},
		{"ops' d1 viewer role, of acme and no one principal", mpAcme, "document:d1#viewer@group:ops#member",
			mpRel(mpD1, "viewer", mpOps, "member"), mpView(mpD1, mpFrank, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := mpStart(t)
			mpSeed(t, in.a)
			ctx := t.Context()
			if tc.org.ID != "" {
				ctx = mpOrg(ctx, tc.org)
			}
			if mpBulkCheck(t, in.a, tc.req) {
				t.Fatalf("%s before the write = true, want false", mpName(tc.req))
			}

			wrapper, ok := in.a.Datastore().(interface{ Unwrap() datastore.Datastore })
			if !ok {
				t.Fatalf("the engine's datastore is %T, want a wrapper with Unwrap", in.a.Datastore())
			}
			parsed := tuple.MustParse(tc.relation)
			if _, err := wrapper.Unwrap().ReadWriteTx(ctx, func(ctx context.Context, tx datastore.ReadWriteTransaction) error {
				return tx.WriteRelationships(ctx, []tuple.RelationshipUpdate{tuple.Touch(parsed)})
			}); err != nil {
				t.Fatalf("commit %s: %v", tc.relation, err)
			}
			overlapping := mpBulkCheck(t, in.a, tc.req)
			t.Logf("%s in the request that overlapped the write = %v", mpName(tc.req), overlapping)
			missing := &v1.Precondition{
				Operation: v1.Precondition_OPERATION_MUST_MATCH,
				Filter:    &v1.RelationshipFilter{ResourceType: "document", OptionalResourceId: "missing"},
			}
			if _, err := in.a.Write(ctx, []*v1.RelationshipUpdate{tc.touch}, []*v1.Precondition{missing}); !errors.Is(err, engine.ErrPreconditionFailed) {
				t.Fatalf("write with a failing precondition = %v, want %v", err, engine.ErrPreconditionFailed)
			}

			if truth := mpTruth(t, in.plain, []engine.CheckRequest{tc.req}); truth[0] != "allowed" {
				t.Fatalf("%s on plain after the write = %s, want allowed", mpName(tc.req), truth[0])
			}
			for path := range mpPaths {
				d, err := mpCheck(t.Context(), in.a, tc.req, path)
				if err != nil {
					t.Fatalf("%s: %s: %v", mpPaths[path], mpName(tc.req), err)
				}
				if !d.Allowed {
					t.Errorf("%s: %s after the write was counted = false, want true", mpPaths[path], mpName(tc.req))
				}
			}
		})
	}
}

// TestAttackMemoryPinBulkCheckUnderLoad writes on one goroutine, and after
// each write checks its change on a as the only request of CheckBulk,
// while two goroutines run the same check without pause. The writes
// alternate between gina's acme membership, a write of no org, and ops'
// d1 viewer role, a write of acme and no one principal. A checker whose
// state read falls between a write's commit and its count must not leave
// a result that misses the write for the writer's check after it.
func TestAttackMemoryPinBulkCheckUnderLoad(t *testing.T) {
	in := mpStart(t)
	mpSeed(t, in.a)
	changes := []struct {
		name   string
		ctx    context.Context
		update func(on bool) *v1.RelationshipUpdate
		req    engine.CheckRequest
	}{
		{"gina's acme membership, of no org", t.Context(),
			func(on bool) *v1.RelationshipUpdate { return mpFlip(on, mpRel(mpAcme, "member", mpGina, "")) },
			mpView(mpAcme, mpGina, "")},
		{"ops' d1 viewer role", mpOrg(t.Context(), mpAcme),
			func(on bool) *v1.RelationshipUpdate { return mpFlip(on, mpRel(mpD1, "viewer", mpOps, "member")) },
			mpView(mpD1, mpFrank, "")},
	}
	for _, change := range changes {
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for ctx.Err() == nil {
					if _, err := mpCheck(t.Context(), in.a, change.req, 2); err != nil {
						t.Errorf("%s: concurrent bulk check: %v", change.name, err)
						return
					}
				}
			})
		}
		writes, wrong := 0, 0
		for on := true; ctx.Err() == nil; on = !on {
			mpWrite(t, change.ctx, in.a, change.update(on))
			writes++
			if mpBulkCheck(t, in.a, change.req) != on {
				wrong++
			}
		}
		cancel()
		wg.Wait()
		t.Logf("%s: %d of %d bulk checks right after the write missed it", change.name, wrong, writes)
		if wrong > 0 {
			t.Errorf("%s: %d of %d bulk checks right after the write missed it, want none", change.name, wrong, writes)
		}
		// Return to the seed's state for the next change.
		if writes%2 == 1 {
			mpWrite(t, change.ctx, in.a, change.update(false))
		}
	}
}
