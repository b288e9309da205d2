package engine_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

func newEngine(tb testing.TB) *engine.Engine {
	tb.Helper()
	return startEngine(tb, engine.Config{})
}

func touch(resource object.Ref, relation string, subject object.Ref) *v1.RelationshipUpdate {
	return &v1.RelationshipUpdate{
		Operation: v1.RelationshipUpdate_OPERATION_TOUCH,
		Relationship: &v1.Relationship{
			Resource: &v1.ObjectReference{ObjectType: resource.Type, ObjectId: resource.ID},
			Relation: relation,
			Subject:  &v1.SubjectReference{Object: &v1.ObjectReference{ObjectType: subject.Type, ObjectId: subject.ID}},
		},
	}
}

var (
	alice = object.Ref{Type: "user", ID: "dev|alice"}
	bob   = object.Ref{Type: "user", ID: "dev|bob"}
	acme  = object.Ref{Type: "org", ID: "acme"}
	doc   = object.Ref{Type: "document", ID: "d1"}
)

func seed(tb testing.TB, e *engine.Engine) {
	tb.Helper()
	_, err := e.Write(tb.Context(), []*v1.RelationshipUpdate{
		touch(acme, "platform", object.Ref{Type: "platform", ID: "gatehouse"}),
		touch(acme, "owner", alice),
		touch(object.Ref{Type: "workspace", ID: "w1"}, "org", acme),
		touch(object.Ref{Type: "project", ID: "p1"}, "workspace", object.Ref{Type: "workspace", ID: "w1"}),
		touch(doc, "project", object.Ref{Type: "project", ID: "p1"}),
	}, nil)
	if err != nil {
		tb.Fatalf("seed: %v", err)
	}
}

func TestCheckPathsAgree(t *testing.T) {
	e := newEngine(t)
	seed(t, e)

	for _, tc := range []struct {
		name    string
		subject object.Ref
		want    bool
	}{
		{"org owner edits document", alice, true},
		{"stranger cannot edit", bob, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := engine.CheckRequest{Resource: doc, Permission: "edit", Subject: tc.subject}
			viaAPI, err := e.Check(t.Context(), req)
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			inProcess, err := e.CheckInProcess(t.Context(), req)
			if err != nil {
				t.Fatalf("in-process check: %v", err)
			}
			if viaAPI.Allowed != tc.want {
				t.Errorf("API check allowed = %v, want %v", viaAPI.Allowed, tc.want)
			}
			if inProcess.Allowed != tc.want {
				t.Errorf("in-process check allowed = %v, want %v", inProcess.Allowed, tc.want)
			}
			if viaAPI.Token == "" {
				t.Error("API check returned no consistency token")
			}
		})
	}
}

func TestWritePreconditionFailed(t *testing.T) {
	e := newEngine(t)
	seed(t, e)

	_, err := e.Write(t.Context(), []*v1.RelationshipUpdate{touch(acme, "owner", bob)}, []*v1.Precondition{{
		Operation: v1.Precondition_OPERATION_MUST_NOT_MATCH,
		Filter:    &v1.RelationshipFilter{ResourceType: "org", OptionalResourceId: "acme"},
	}})
	if !errors.Is(err, engine.ErrPreconditionFailed) {
		t.Fatalf("err = %v, want ErrPreconditionFailed", err)
	}
	got, err := e.Check(t.Context(), engine.CheckRequest{Resource: acme, Permission: "view", Subject: bob})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if got.Allowed {
		t.Error("a write whose precondition failed still granted access")
	}
}

func TestRejectedSchemaStopsStart(t *testing.T) {
	_, err := engine.New(context.Background(), engine.Config{
		Schema: "definition user {}\ndefinition doc {\n\trelation viewer: nosuchtype\n}",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil {
		t.Fatal("engine started with a schema that names an unknown type")
	}
	if !strings.Contains(err.Error(), "nosuchtype") {
		t.Errorf("error %q does not name the unknown type", err)
	}
}

// BenchmarkCheck compares the check paths on the same datastore: the v1
// API with and without the result cache, and pkg/embedded.
func BenchmarkCheck(b *testing.B) {
	cached := startEngine(b, engine.Config{})
	seed(b, cached)
	uncached := startEngine(b, engine.Config{Datastore: cached.Datastore(), ResultCacheBytes: -1})
	benchmarkCheckPaths(b, cached, uncached)
}

// BenchmarkCheckPostgres compares the check paths on PostgreSQL.
func BenchmarkCheckPostgres(b *testing.B) {
	url := pgtest.NewDatabase(b)
	if err := store.Migrate(b.Context(), store.Config{URL: url}, slog.New(slog.DiscardHandler)); err != nil {
		b.Fatalf("migrate: %v", err)
	}
	ds, err := engine.NewPostgresDatastore(b.Context(), engine.PostgresConfig{URL: url})
	if err != nil {
		b.Fatalf("open datastore: %v", err)
	}
	b.Cleanup(func() { ds.Close() })
	cached := startEngine(b, engine.Config{Datastore: ds, PostgresURL: url})
	seed(b, cached)
	uncached := startEngine(b, engine.Config{Datastore: ds, ResultCacheBytes: -1})
	benchmarkCheckPaths(b, cached, uncached)
}

func benchmarkCheckPaths(b *testing.B, cached, uncached *engine.Engine) {
	req := engine.CheckRequest{Resource: doc, Permission: "view", Subject: alice}
	for _, path := range []struct {
		name  string
		check func(context.Context, engine.CheckRequest) (engine.Decision, error)
	}{
		{"api_cached", cached.Check},
		{"api", uncached.Check},
		{"in_process", uncached.CheckInProcess},
	} {
		b.Run(path.name, func(b *testing.B) {
			for b.Loop() {
				d, err := path.check(b.Context(), req)
				if err != nil {
					b.Fatal(err)
				}
				if !d.Allowed {
					b.Fatal("check denied")
				}
			}
		})
	}
}
