package engine

import (
	"errors"
	"testing"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"github.com/authzed/spicedb/pkg/datastore"
	core "github.com/authzed/spicedb/pkg/proto/core/v1"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

func newMemoryEngine(t *testing.T) *Engine {
	t.Helper()
	return rvStart(t, Config{})
}

func TestPinnedDatastoreReportsThePinnedHead(t *testing.T) {
	e := newMemoryEngine(t)
	ctx := t.Context()
	pinned, err := newPinnedDatastore(e.reads)
	if err != nil {
		t.Fatal(err)
	}
	first, err := pinned.HeadRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writeViewer(t, e, "d1", "alice")
	head, err := pinned.HeadRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !head.Revision.GreaterThan(first.Revision) {
		t.Fatalf("head %s after a write is not after %s", head.Revision, first.Revision)
	}
	got, err := pinned.HeadRevision(withHead(ctx, first))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Revision.Equal(first.Revision) {
		t.Errorf("head with a pin = %s, want the pinned %s", got.Revision, first.Revision)
	}

	// A check pinned before the write does not see it; one at the head does.
	req := CheckRequest{Resource: object.Ref{Type: "document", ID: "d1"}, Permission: "view", Subject: object.Ref{Type: "user", ID: "alice"}}
	before, err := e.CheckInProcess(withHead(ctx, first), req)
	if err != nil {
		t.Fatal(err)
	}
	after, err := e.CheckInProcess(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if before.Allowed || !after.Allowed {
		t.Errorf("allowed before the write = %v, after = %v; want false, true", before.Allowed, after.Allowed)
	}
}

func TestDefinitionsSharedAcrossRevisions(t *testing.T) {
	e := newMemoryEngine(t)
	ctx := t.Context()
	pinned, err := newPinnedDatastore(e.reads)
	if err != nil {
		t.Fatal(err)
	}

	read := func() []datastore.RevisionedNamespace {
		t.Helper()
		head, err := pinned.HeadRevision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defs, err := pinned.SnapshotReader(head.Revision).LegacyLookupNamespacesWithNames(ctx, []string{"document", "project"})
		if err != nil {
			t.Fatal(err)
		}
		if len(defs) != 2 {
			t.Fatalf("read %d definitions, want 2", len(defs))
		}
		return defs
	}

	first := read()
	writeViewer(t, e, "d1", "alice")
	second := read()
	for i := range first {
		if first[i].Definition != second[i].Definition {
			t.Errorf("definition %q read at two revisions is stored twice", first[i].Definition.GetName())
		}
	}

	again := read()
	again[0].Definition = nil // a caller's change to its copy of the list
	if cached := read(); cached[0].Definition == nil {
		t.Error("a caller's change to the returned list reached the cache")
	}
}

func TestPinnedCheckRejectsUnknownNames(t *testing.T) {
	e := newMemoryEngine(t)
	alice := object.Ref{Type: "user", ID: "alice"}
	tests := map[string]CheckRequest{
		"permission":    {Resource: object.Ref{Type: "document", ID: "d1"}, Permission: "fly", Subject: alice},
		"resource type": {Resource: object.Ref{Type: "spaceship", ID: "d1"}, Permission: "view", Subject: alice},
	}
	for name, req := range tests {
		t.Run(name, func(t *testing.T) {
			d, err := e.Check(t.Context(), req)
			if !errors.Is(err, ErrPreconditionFailed) {
				t.Errorf("check = %+v, %v; want ErrPreconditionFailed", d, err)
			}
		})
	}
}

// writeViewer makes user a viewer of document id.
func writeViewer(t *testing.T, e *Engine, id, user string) {
	t.Helper()
	_, err := e.Write(t.Context(), []*v1.RelationshipUpdate{{
		Operation: v1.RelationshipUpdate_OPERATION_TOUCH,
		Relationship: &v1.Relationship{
			Resource: &v1.ObjectReference{ObjectType: "document", ObjectId: id},
			Relation: "viewer",
			Subject:  &v1.SubjectReference{Object: &v1.ObjectReference{ObjectType: "user", ObjectId: user}},
		},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

// The v1 API caches definitions per revision; the read cache below it gives
// each revision the same copy.
func TestReadCacheSharesDefinitionsAcrossRevisions(t *testing.T) {
	e := newMemoryEngine(t)
	ctx := t.Context()
	if _, ok := e.reads.(cachingDatastore); !ok {
		t.Fatalf("the engine reads through %T, not the read cache", e.reads)
	}

	read := func() (*core.NamespaceDefinition, []datastore.RevisionedNamespace) {
		t.Helper()
		head, err := e.reads.HeadRevision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		reader := e.reads.SnapshotReader(head.Revision)
		def, _, err := reader.LegacyReadNamespaceByName(ctx, "document")
		if err != nil {
			t.Fatal(err)
		}
		defs, err := reader.LegacyLookupNamespacesWithNames(ctx, []string{"project", "workspace"})
		if err != nil {
			t.Fatal(err)
		}
		if len(defs) != 2 {
			t.Fatalf("read %d definitions, want 2", len(defs))
		}
		return def, defs
	}

	firstDoc, first := read()
	writeViewer(t, e, "d1", "alice")
	secondDoc, second := read()
	if firstDoc != secondDoc {
		t.Error("the document definition read at two revisions is stored twice")
	}
	for i := range first {
		if first[i].Definition != second[i].Definition {
			t.Errorf("definition %q read at two revisions is stored twice", first[i].Definition.GetName())
		}
	}
}
