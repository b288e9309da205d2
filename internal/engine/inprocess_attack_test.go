package engine

// The tests in this file compare SpiceDB's in-process checker, pinned with
// withHead, with the v1 API at the same exact snapshot. The dataset has two
// orgs with nested groups, expiring grants and links. It also has a group
// loop and a chain of groups deeper than SpiceDB's maximum depth. The tests
// also compare the engine's cached check path (Check in a context from
// WithResource) with an engine without a result cache, after each write.

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"github.com/authzed/spicedb/pkg/datalayer"
	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/zedtoken"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/store"
	"github.com/gatehouse-authz/gatehouse/schema"
)

func rvStart(t *testing.T, cfg Config) *Engine {
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

// rvPair returns an engine with a result cache and one without, on one
// datastore.
func rvPair(t *testing.T, kind string) (cached, plain *Engine) {
	t.Helper()
	if kind == "memory" {
		cached = rvStart(t, Config{})
		return cached, rvStart(t, Config{Datastore: cached.Datastore(), ResultCacheBytes: -1})
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
		t.Cleanup(func() { ds.Close() })
		return ds
	}
	cached = rvStart(t, Config{Datastore: open(), PostgresURL: url})
	return cached, rvStart(t, Config{Datastore: open(), ResultCacheBytes: -1})
}

func rvRel(resource object.Ref, relation string, subject object.Ref, subjectRel string, expires time.Duration) *v1.RelationshipUpdate {
	u := &v1.RelationshipUpdate{
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
	if expires != 0 {
		u.Relationship.OptionalExpiresAt = timestamppb.New(time.Now().Add(expires))
	}
	return u
}

func rvDel(u *v1.RelationshipUpdate) *v1.RelationshipUpdate {
	u.Operation = v1.RelationshipUpdate_OPERATION_DELETE
	u.Relationship.OptionalExpiresAt = nil
	return u
}

func rvWrite(t *testing.T, e *Engine, org string, updates ...*v1.RelationshipUpdate) {
	t.Helper()
	ctx := t.Context()
	if org != "" {
		ctx = ForOrg(ctx, org)
	}
	if _, err := e.Write(ctx, updates, nil); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func rvRef(typ, id string) object.Ref { return object.Ref{Type: typ, ID: id} }

var (
	rvAcme   = rvRef("org", "acme")
	rvDeep   = 60        // groups in the chain, more than SpiceDB's maximum depth of 50
	rvExpiry = time.Hour // the seed's expirations, past the test's end
	rvPerms  = []string{"view", "edit", "manage", "delete", "share", "create", "inspect"}
)

// rvSeed writes the dataset, org by org, as Gatehouse records its writes.
func rvSeed(t *testing.T, e *Engine) {
	t.Helper()
	platform := rvRef("platform", "gatehouse")
	rvWrite(t, e, "", rvRel(platform, "auditor", rvRef("user", "dev|auditor"), "", 0))
	for _, org := range []string{"acme", "globex"} {
		o := rvRef("org", org)
		ws := rvRef("workspace", org+"-w")
		eng, outer := rvRef("group", org+"-eng"), rvRef("group", org+"-outer")
		grant, link := rvRef("grant", org+"-g"), rvRef("link", org+"-l")
		u := func(n string) object.Ref { return rvRef("user", "dev|"+org+"-"+n) }
		updates := []*v1.RelationshipUpdate{
			rvRel(o, "platform", platform, "", 0),
			rvRel(o, "owner", u("owner"), "", 0),
			rvRel(o, "admin", u("admin"), "", 0),
			rvRel(o, "member", u("member"), "", 0),
			rvRel(o, "app", rvRef("service", "corp|"+org+"-app"), "", 0),
			rvRel(o, "admin", outer, "member", 0),
			rvRel(ws, "org", o, "", 0),
			rvRel(eng, "org", o, "", 0),
			rvRel(outer, "org", o, "", 0),
			rvRel(eng, "member", u("engineer"), "", 0),
			rvRel(eng, "member", u("expiring"), "", rvExpiry),
			rvRel(eng, "admin", u("engadmin"), "", 0),
			rvRel(outer, "member", eng, "member", 0),
			rvRel(ws, "viewer", u("wsviewer"), "", 0),
			rvRel(ws, "editor", link, "holder", 0),
			rvRel(link, "holder", u("redeemer"), "", 0),
			rvRel(link, "holder", u("shortredeemer"), "", rvExpiry),
		}
		for p := range 2 {
			project := rvRef("project", fmt.Sprintf("%s-p%d", org, p))
			updates = append(updates,
				rvRel(project, "workspace", ws, "", 0),
				rvRel(project, "viewer", eng, "member", 0),
			)
			for d := range 3 {
				doc := rvRef("document", fmt.Sprintf("%s-p%d-d%d", org, p, d))
				updates = append(updates, rvRel(doc, "project", project, "", 0))
				switch d {
				case 0:
					updates = append(updates, rvRel(doc, "owner", u("docowner"), "", 0))
				case 1:
					updates = append(updates,
						rvRel(doc, "viewer", grant, "holder", time.Hour),
						rvRel(doc, "editor", grant, "holder", rvExpiry))
				case 2:
					updates = append(updates, rvRel(doc, "viewer", link, "", 0))
				}
			}
		}
		updates = append(updates, rvRel(grant, "holder", u("granted"), "", 0), rvRel(grant, "holder", outer, "member", 0))
		rvWrite(t, e, org, updates...)
	}

	// A loop of two groups, a chain deeper than the maximum depth, and a
	// document whose viewers are the top of each, all in acme.
	loopA, loopB := rvRef("group", "acme-loopa"), rvRef("group", "acme-loopb")
	loopDoc, deepDoc := rvRef("document", "acme-loop"), rvRef("document", "acme-deep")
	updates := []*v1.RelationshipUpdate{
		rvRel(loopA, "org", rvAcme, "", 0),
		rvRel(loopB, "org", rvAcme, "", 0),
		rvRel(loopA, "member", loopB, "member", 0),
		rvRel(loopB, "member", loopA, "member", 0),
		rvRel(loopDoc, "project", rvRef("project", "acme-p0"), "", 0),
		rvRel(loopDoc, "viewer", loopA, "member", 0),
		rvRel(deepDoc, "project", rvRef("project", "acme-p0"), "", 0),
		rvRel(deepDoc, "viewer", rvRef("group", fmt.Sprintf("acme-deep%d", rvDeep-1)), "member", 0),
		rvRel(rvRef("group", "acme-deep0"), "member", rvRef("user", "dev|acme-deepest"), "", 0),
	}
	for i := range rvDeep {
		g := rvRef("group", fmt.Sprintf("acme-deep%d", i))
		updates = append(updates, rvRel(g, "org", rvAcme, "", 0))
		if i > 0 {
			updates = append(updates, rvRel(g, "member", rvRef("group", fmt.Sprintf("acme-deep%d", i-1)), "member", 0))
		}
	}
	rvWrite(t, e, "acme", updates...)
}

// rvSubjects returns the subjects to check: every principal of the dataset
// and strangers, groups and grants with their relations, links, and odd
// subjects that no request should reach SpiceDB with.
func rvSubjects() []struct {
	ref object.Ref
	rel string
} {
	type s = struct {
		ref object.Ref
		rel string
	}
	var out []s
	for _, org := range []string{"acme", "globex"} {
		for _, n := range []string{"owner", "admin", "member", "engineer", "expiring", "engadmin", "wsviewer", "redeemer", "shortredeemer", "docowner", "granted", "stranger"} {
			out = append(out, s{rvRef("user", "dev|"+org+"-"+n), ""})
		}
		out = append(out,
			s{rvRef("service", "corp|"+org+"-app"), ""},
			s{rvRef("group", org+"-eng"), "member"},
			s{rvRef("group", org+"-outer"), "member"},
			s{rvRef("grant", org+"-g"), "holder"},
			s{rvRef("link", org+"-l"), ""},
			s{rvRef("link", org+"-l"), "holder"},
		)
	}
	out = append(out,
		s{rvRef("user", "dev|auditor"), ""},
		s{rvRef("user", "dev|acme-deepest"), ""},
		s{rvRef("group", "acme-loopa"), "member"},
		s{rvRef("group", "acme-deep0"), "member"},
	)
	return out
}

// rvOddSubjects are subjects that Gatehouse's API never sends to the
// engine: a wildcard, a principal with a relation, an unknown type and an
// unknown relation.
var rvOddSubjects = []struct {
	ref object.Ref
	rel string
}{
	{rvRef("user", "*"), ""},
	{rvRef("user", "dev|acme-owner"), "member"},
	{rvRef("nosuchtype", "x"), ""},
	{rvRef("group", "acme-eng"), "nosuch"},
	{rvRef("group", "acme-eng"), ""},
}

func rvResources() []object.Ref {
	var out []object.Ref
	for _, org := range []string{"acme", "globex"} {
		out = append(out, rvRef("org", org), rvRef("workspace", org+"-w"), rvRef("group", org+"-eng"), rvRef("group", org+"-outer"))
		for p := range 2 {
			out = append(out, rvRef("project", fmt.Sprintf("%s-p%d", org, p)))
			for d := range 3 {
				out = append(out, rvRef("document", fmt.Sprintf("%s-p%d-d%d", org, p, d)))
			}
		}
	}
	return append(out,
		rvRef("document", "acme-loop"), rvRef("document", "acme-deep"), rvRef("document", "nowhere"))
}

// rvLoopy reports whether res is one of the documents that the group
// loop or the deep chain of groups can view.
func rvLoopy(res object.Ref) bool { return res.ID == "acme-loop" || res.ID == "acme-deep" }

// rvClass names the error sentinel that err wraps, or "" for no error.
func rvClass(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrMaxDepth):
		return "max depth"
	case errors.Is(err, ErrPreconditionFailed):
		return "precondition"
	case errors.Is(err, ErrInvalidConsistencyToken):
		return "token"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	default:
		return "other"
	}
}

func rvOutcome(d Decision, err error) string {
	if err != nil {
		return "error(" + rvClass(err) + ")"
	}
	return fmt.Sprintf("allowed=%v conditional=%v", d.Allowed, d.Conditional)
}

// rvExact returns the v1 consistency of exactly head.
func rvExact(t *testing.T, e *Engine, head datastore.RevisionWithSchemaHash) *v1.Consistency {
	t.Helper()
	token, err := zedtoken.NewFromRevision(t.Context(), head.Revision, datalayer.SchemaHash(head.SchemaHash), e.ds)
	if err != nil {
		t.Fatalf("encode revision: %v", err)
	}
	return &v1.Consistency{Requirement: &v1.Consistency_AtExactSnapshot{AtExactSnapshot: token}}
}

// rvCompareAt checks every request in process at head and through the v1
// API at the same snapshot, and fails on any difference. It returns the
// number of allowed checks.
func rvCompareAt(t *testing.T, e *Engine, head datastore.RevisionWithSchemaHash, when string) int {
	t.Helper()
	consistency := rvExact(t, e, head)
	ctx := withHead(t.Context(), head)
	allowed, compared := 0, 0
	diffs := 0
	for _, res := range rvResources() {
		for _, perm := range rvPerms {
			for _, sub := range rvSubjects() {
				req := CheckRequest{Resource: res, Permission: perm, Subject: sub.ref, SubjectRelation: sub.rel}
				inProc, inErr := e.CheckInProcess(ctx, req)
				api, apiErr := e.checkAt(t.Context(), req, consistency)
				compared++
				got, want := rvOutcome(inProc, inErr), rvOutcome(api, apiErr)
				if rvLoopy(res) {
					// SpiceDB evaluates the branches of a union in parallel.
					// So a check that one branch allows and another takes
					// past the maximum depth is allowed or fails by timing,
					// on either path (seen in this test). An allow must then
					// come from the project.
					direct := res.ID == "acme-loop" && sub.ref.ID == "acme-loopa" // a viewer itself
					if (inProc.Allowed || api.Allowed) && !direct {
						p := CheckRequest{Resource: rvRef("project", "acme-p0"), Permission: perm, Subject: sub.ref, SubjectRelation: sub.rel}
						if pd, err := e.checkAt(t.Context(), p, consistency); err != nil || !pd.Allowed {
							t.Errorf("%s: %s %s %s#%s allowed (in process %s, v1 API %s) without the project allowing it (%+v, %v)",
								when, res, perm, sub.ref, sub.rel, got, want, pd, err)
						}
					}
					if inErr != nil && !errors.Is(inErr, ErrMaxDepth) {
						t.Errorf("%s: %s %s %s#%s: in process error %v", when, res, perm, sub.ref, sub.rel, inErr)
					}
					continue
				}
				if got != want {
					diffs++
					if diffs <= 25 {
						t.Errorf("%s: %s %s %s#%s: in process %s (%v), v1 API %s (%v)",
							when, res, perm, sub.ref, sub.rel, got, inErr, want, apiErr)
					}
				}
				if inErr == nil && inProc.Allowed {
					allowed++
				}
			}
		}
	}
	if diffs > 25 {
		t.Errorf("%s: %d of %d checks differ, first 25 shown", when, diffs, compared)
	}
	t.Logf("%s: %d checks compared, %d allowed", when, compared, allowed)
	return allowed
}

func rvHead(t *testing.T, e *Engine) datastore.RevisionWithSchemaHash {
	t.Helper()
	head, err := e.ds.HeadRevision(t.Context())
	if err != nil {
		t.Fatalf("head revision: %v", err)
	}
	return head
}

// TestAttackInProcessMatchesAPI compares the two checkers
// at the head after seeding, then at that old head and the new one after
// writes that remove and add access.
func TestAttackInProcessMatchesAPI(t *testing.T) {
	for _, kind := range []string{"memory", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			if testing.Short() {
				t.Skip("long")
			}
			e, _ := rvPair(t, kind)
			rvSeed(t, e)
			first := rvHead(t, e)
			allowedFirst := rvCompareAt(t, e, first, "after seeding")
			if allowedFirst == 0 {
				t.Fatal("no check allowed after seeding")
			}

			// Remove and add access in both orgs.
			rvWrite(t, e, "acme",
				rvDel(rvRel(rvRef("group", "acme-eng"), "member", rvRef("user", "dev|acme-engineer"), "", 0)),
				rvDel(rvRel(rvRef("org", "acme"), "owner", rvRef("user", "dev|acme-owner"), "", 0)),
				rvRel(rvRef("project", "acme-p1"), "editor", rvRef("user", "dev|acme-stranger"), "", 0),
			)
			rvWrite(t, e, "globex", rvDel(rvRel(rvRef("link", "globex-l"), "holder", rvRef("user", "dev|globex-redeemer"), "", 0)))
			second := rvHead(t, e)
			if rvCompareAt(t, e, first, "at the first head, after later writes") != allowedFirst {
				t.Error("the number of allowed checks at the first head changed after later writes")
			}
			rvCompareAt(t, e, second, "at the second head")

			// The pinned first head must not see the later writes.
			ctx := withHead(t.Context(), first)
			for _, c := range []struct {
				req  CheckRequest
				at1  bool
				head bool
			}{
				{CheckRequest{Resource: rvRef("document", "acme-p0-d0"), Permission: "manage", Subject: rvRef("user", "dev|acme-owner")}, true, false},
				{CheckRequest{Resource: rvRef("document", "acme-p1-d0"), Permission: "edit", Subject: rvRef("user", "dev|acme-stranger")}, false, true},
				{CheckRequest{Resource: rvRef("document", "acme-p0-d1"), Permission: "view", Subject: rvRef("user", "dev|acme-engineer")}, true, false},
			} {
				d1, err := e.CheckInProcess(ctx, c.req)
				if err != nil || d1.Allowed != c.at1 {
					t.Errorf("%+v at the first head = %+v, %v; want %v", c.req, d1, err, c.at1)
				}
				d2, err := e.CheckInProcess(withHead(t.Context(), second), c.req)
				if err != nil || d2.Allowed != c.head {
					t.Errorf("%+v at the second head = %+v, %v; want %v", c.req, d2, err, c.head)
				}
			}

		})
	}
}

// TestAttackMaxDepthFailsClosed checks that the group loop and the deep
// chain never allow in process, and that the deep chain is an ErrMaxDepth
// error on both the in-process and the cached check path.
func TestAttackMaxDepthFailsClosed(t *testing.T) {
	for _, kind := range []string{"memory", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e, plain := rvPair(t, kind)
			rvSeed(t, e)
			deep := CheckRequest{Resource: rvRef("document", "acme-deep"), Permission: "view", Subject: rvRef("user", "dev|acme-deepest")}
			loop := CheckRequest{Resource: rvRef("document", "acme-loop"), Permission: "view", Subject: rvRef("user", "dev|acme-stranger")}
			for _, req := range []CheckRequest{deep, loop} {
				d, err := e.CheckInProcess(t.Context(), req)
				if d.Allowed {
					t.Errorf("%s in process allowed", req.Resource)
				}
				if !errors.Is(err, ErrMaxDepth) {
					t.Errorf("%s in process: err = %v, want ErrMaxDepth", req.Resource, err)
				}
				ctx, err := e.WithResource(t.Context(), req.Resource)
				if err != nil {
					t.Fatalf("pin: %v", err)
				}
				for i := range 2 { // an error must not be cached as a deny or an allow
					d, err = e.Check(ctx, req)
					if d.Allowed || !errors.Is(err, ErrMaxDepth) {
						t.Errorf("%s cached path, try %d = %+v, %v; want ErrMaxDepth", req.Resource, i, d, err)
					}
				}
				d, err = plain.Check(t.Context(), req)
				if d.Allowed || !errors.Is(err, ErrMaxDepth) {
					t.Errorf("%s v1 API = %+v, %v; want ErrMaxDepth", req.Resource, d, err)
				}
				// CheckEach sends one item in process, and two through
				// the bulk API. Both must fail the item.
				for _, reqs := range [][]CheckRequest{{req}, {req, {Resource: req.Resource, Permission: "view", Subject: rvRef("user", "dev|acme-owner")}}} {
					results, err := e.CheckEach(ctx, reqs)
					if err != nil {
						t.Errorf("%s check each of %d: %v", req.Resource, len(reqs), err)
						continue
					}
					if r := results[0]; r.Decision.Allowed || !errors.Is(r.Err, ErrMaxDepth) {
						t.Errorf("%s check each of %d: item = %+v, want ErrMaxDepth", req.Resource, len(reqs), r)
					}
				}
			}
		})
	}
}

// TestAttackCachedPathFollowsWrites checks, right after each write, that
// Check through the result cache and the in-process checker agrees with an
// engine without a result cache, for every subject on a set of resources.
func TestAttackCachedPathFollowsWrites(t *testing.T) {
	for _, kind := range []string{"memory", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e, plain := rvPair(t, kind)
			rvSeed(t, e)
			resources := []object.Ref{
				rvRef("document", "acme-p0-d0"), rvRef("document", "acme-p1-d1"), rvRef("document", "acme-p0-d2"),
				rvRef("document", "globex-p0-d0"), rvRef("project", "acme-p1"), rvRef("org", "acme"), rvRef("group", "acme-eng"),
			}
			compare := func(when string) {
				t.Helper()
				for _, res := range resources {
					for _, perm := range []string{"view", "edit", "manage"} {
						for _, sub := range rvSubjects()[:40] {
							req := CheckRequest{Resource: res, Permission: perm, Subject: sub.ref, SubjectRelation: sub.rel}
							ctx, err := e.WithResource(t.Context(), res)
							if err != nil {
								t.Fatalf("pin: %v", err)
							}
							got, gotErr := e.Check(ctx, req)
							want, wantErr := plain.Check(t.Context(), req)
							if rvOutcome(got, gotErr) != rvOutcome(want, wantErr) {
								t.Errorf("%s: %s %s %s#%s: cached path %s (%v), v1 API %s (%v)",
									when, res, perm, sub.ref, sub.rel, rvOutcome(got, gotErr), gotErr, rvOutcome(want, wantErr), wantErr)
							}
						}
					}
				}
			}
			compare("after seeding")
			compare("again, from the cache")
			steps := []struct {
				org     string
				updates []*v1.RelationshipUpdate
			}{
				{"acme", []*v1.RelationshipUpdate{rvRel(rvRef("group", "acme-eng"), "member", rvRef("user", "dev|acme-stranger"), "", 0)}},
				{"acme", []*v1.RelationshipUpdate{rvDel(rvRel(rvRef("group", "acme-outer"), "member", rvRef("group", "acme-eng"), "member", 0))}},
				{"globex", []*v1.RelationshipUpdate{rvRel(rvRef("org", "globex"), "admin", rvRef("user", "dev|acme-owner"), "", 0)}},
				{"acme", []*v1.RelationshipUpdate{rvDel(rvRel(rvRef("org", "acme"), "owner", rvRef("user", "dev|acme-owner"), "", 0))}},
				{"acme", []*v1.RelationshipUpdate{rvRel(rvRef("document", "acme-p0-d0"), "viewer", rvRef("grant", "acme-g"), "holder", time.Hour)}},
				{"", []*v1.RelationshipUpdate{rvRel(rvRef("org", "acme"), "owner", rvRef("user", "dev|acme-owner"), "", 0)}},
			}
			for i, s := range steps {
				rvWrite(t, plain, s.org, s.updates...) // written by the other engine
				compare(fmt.Sprintf("after write %d", i))
			}
		})
	}
}

// TestAttackExpiryInProcess writes a membership and a link redemption that
// expire in two seconds, and checks that the in-process checker drops them
// once expired, at the revision pinned before and at a new one, where the
// v1 API must agree.
func TestAttackExpiryInProcess(t *testing.T) {
	for _, kind := range []string{"memory", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e, _ := rvPair(t, kind)
			rvSeed(t, e)
			short := 2 * time.Second
			rvWrite(t, e, "acme",
				rvRel(rvRef("group", "acme-eng"), "member", rvRef("user", "dev|acme-brief"), "", short),
				rvRel(rvRef("link", "acme-l"), "holder", rvRef("user", "dev|acme-briefholder"), "", short),
				rvRel(rvRef("document", "acme-p0-d0"), "viewer", rvRef("user", "dev|acme-briefviewer"), "", short),
			)
			reqs := []CheckRequest{
				{Resource: rvRef("document", "acme-p0-d0"), Permission: "view", Subject: rvRef("user", "dev|acme-brief")},
				{Resource: rvRef("project", "acme-p1"), Permission: "edit", Subject: rvRef("user", "dev|acme-briefholder")},
				{Resource: rvRef("document", "acme-p0-d0"), Permission: "view", Subject: rvRef("user", "dev|acme-briefviewer")},
			}
			before := rvHead(t, e)
			for _, req := range reqs {
				if d, err := e.CheckInProcess(withHead(t.Context(), before), req); err != nil || !d.Allowed {
					t.Fatalf("%s before expiry = %+v, %v; want allowed", req.Subject, d, err)
				}
				if d, err := e.checkAt(t.Context(), req, rvExact(t, e, before)); err != nil || !d.Allowed {
					t.Fatalf("%s before expiry, v1 API = %+v, %v; want allowed", req.Subject, d, err)
				}
			}
			time.Sleep(short + 500*time.Millisecond)
			rvWrite(t, e, "globex", rvRel(rvRef("org", "globex"), "member", rvRef("user", "dev|globex-new"), "", 0))
			after := rvHead(t, e)
			for _, req := range reqs {
				if d, err := e.CheckInProcess(withHead(t.Context(), before), req); err != nil || d.Allowed {
					t.Errorf("%s expired, at the earlier pin = %+v, %v; want a deny", req.Subject, d, err)
				}
				if d, err := e.checkAt(t.Context(), req, rvExact(t, e, before)); err != nil || d.Allowed {
					t.Logf("%s expired, v1 API at the earlier pin = %+v, %v (SpiceDB's dispatch cache)", req.Subject, d, err)
				}
				in, inErr := e.CheckInProcess(withHead(t.Context(), after), req)
				api, apiErr := e.checkAt(t.Context(), req, rvExact(t, e, after))
				if inErr != nil || in.Allowed || rvOutcome(in, inErr) != rvOutcome(api, apiErr) {
					t.Errorf("%s expired, at a new revision: in process %s (%v), v1 API %s (%v); want both denied",
						req.Subject, rvOutcome(in, inErr), inErr, rvOutcome(api, apiErr), apiErr)
				}
			}
		})
	}
}

// TestAttackOddSubjectsFailClosed checks subjects that the API rejects
// before they reach the engine: the in-process checker must never allow
// them, on any resource and permission. It logs where the v1 API would
// have returned an error instead of a deny.
func TestAttackOddSubjectsFailClosed(t *testing.T) {
	e, _ := rvPair(t, "memory")
	rvSeed(t, e)
	head := rvHead(t, e)
	ctx := withHead(t.Context(), head)
	differ := map[string]bool{}
	for _, res := range append(rvResources(), rvRef("nosuchtype", "x")) {
		for _, perm := range append(rvPerms, "manage_owners", "nosuch") {
			for _, sub := range rvOddSubjects {
				req := CheckRequest{Resource: res, Permission: perm, Subject: sub.ref, SubjectRelation: sub.rel}
				d, err := e.CheckInProcess(ctx, req)
				if d.Allowed {
					t.Errorf("%s %s %s#%s allowed in process", res, perm, sub.ref, sub.rel)
				}
				api, apiErr := e.checkAt(t.Context(), req, rvExact(t, e, head))
				if api.Allowed {
					t.Errorf("%s %s %s#%s allowed by the v1 API", res, perm, sub.ref, sub.rel)
				}
				if got, want := rvOutcome(d, err), rvOutcome(api, apiErr); got != want {
					differ[fmt.Sprintf("%s#%s: in process %s, v1 API %s", sub.ref.Type+":"+sub.ref.ID, sub.rel, got, want)] = true
				}
			}
		}
	}
	for k := range differ {
		t.Logf("differs: %s", k)
	}
}
