package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dsconfig "github.com/authzed/spicedb/pkg/cmd/datastore"
	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/datastore/options"
	"github.com/authzed/spicedb/pkg/tuple"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

// readStores returns an empty memory datastore and, when a PostgreSQL test
// server is configured, an empty PostgreSQL one.
func readStores(t *testing.T) map[string]datastore.Datastore {
	t.Helper()
	mem, err := dsconfig.NewDatastore(t.Context(),
		dsconfig.WithEngine(dsconfig.MemoryEngine),
		dsconfig.WithGCWindow(time.Hour),
		dsconfig.WithRevisionQuantization(0),
	)
	if err != nil {
		t.Fatalf("create memory datastore: %v", err)
	}
	t.Cleanup(func() { mem.Close() })
	stores := map[string]datastore.Datastore{"memory": mem}
	if pgtest.Available() {
		url := pgtest.NewDatabase(t)
		if err := store.Migrate(t.Context(), store.Config{URL: url}, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		pg, err := NewPostgresDatastore(t.Context(), PostgresConfig{URL: url})
		if err != nil {
			t.Fatalf("open datastore: %v", err)
		}
		t.Cleanup(func() { pg.Close() })
		stores["postgres"] = pg
	}
	return stores
}

// writeRels writes relationships given as SpiceDB strings and returns the
// revision of the write.
func writeRels(t *testing.T, d datastore.Datastore, op tuple.UpdateOperation, rels ...string) datastore.Revision {
	t.Helper()
	updates := make([]tuple.RelationshipUpdate, 0, len(rels))
	for _, r := range rels {
		updates = append(updates, tuple.RelationshipUpdate{Operation: op, Relationship: tuple.MustParse(r)})
	}
	rev, err := d.ReadWriteTx(t.Context(), func(ctx context.Context, rwt datastore.ReadWriteTransaction) error {
		return rwt.WriteRelationships(ctx, updates)
	})
	if err != nil {
		t.Fatalf("write %v: %v", rels, err)
	}
	return rev
}

// queryStrings runs a query and returns its relationships as sorted
// strings.
func queryStrings(t *testing.T, r datastore.Reader, filter datastore.RelationshipsFilter, opts ...options.QueryOptionsOption) []string {
	t.Helper()
	it, err := r.QueryRelationships(t.Context(), filter, opts...)
	if err != nil {
		t.Fatalf("query %+v: %v", filter, err)
	}
	var out []string
	for rel, err := range it {
		if err != nil {
			t.Fatalf("query %+v: %v", filter, err)
		}
		out = append(out, tuple.MustString(rel))
	}
	slices.Sort(out)
	return out
}

func newTestReadCache(t *testing.T, whole bool) *readCache {
	t.Helper()
	c, err := newReadCache(1<<20, whole, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReadCacheMatchesDatastore compares every kind of query a
// check makes, and some it does not, between the datastore and the cache,
// on a first (reading) and a second (cached) run.
func TestReadCacheMatchesDatastore(t *testing.T) {
	rels := []string{
		"document:d1#viewer@user:alice",
		"document:d1#viewer@user:bob",
		"document:d1#viewer@user:*",
		"document:d1#viewer@group:eng#member",
		"document:d1#editor@user:carol",
		"document:d1#editor@link:l1",
		"document:d1#project@project:p1",
		"document:d2#viewer@user:alice",
		"document:d2#viewer@group:eng#admin",
		"document:d2#project@project:p1",
		"project:p1#viewer@user:alice",
		"document:big#project@project:p1",
	}
	for i := range maxCachedRows + 10 {
		rels = append(rels, fmt.Sprintf("document:big#viewer@user:u%d", i))
	}

	ids := [][]string{{"d1"}, {"d2"}, {"d1", "d2"}, {"big"}, {"d1", "big"}, {"missing"}, {"d1", "d1"}, {"d1", "d2", "big", "x1", "x2", "x3", "x4"}}
	relations := []string{"", "viewer", "editor", "project"}
	selectors := [][]datastore.SubjectsSelector{
		nil,
		{{OptionalSubjectType: "user", OptionalSubjectIds: []string{"alice"}, RelationFilter: datastore.SubjectRelationFilter{}.WithEllipsisRelation()}},
		{{OptionalSubjectType: "user", OptionalSubjectIds: []string{"*"}, RelationFilter: datastore.SubjectRelationFilter{}.WithEllipsisRelation()}},
		{{RelationFilter: datastore.SubjectRelationFilter{}.WithOnlyNonEllipsisRelations()}},
		{{OptionalSubjectType: "group", RelationFilter: datastore.SubjectRelationFilter{}.WithNonEllipsisRelation("member")}},
		{{OptionalSubjectType: "group", RelationFilter: datastore.SubjectRelationFilter{}.WithEllipsisRelation().WithNonEllipsisRelation("admin")}},
		{{OptionalSubjectType: "user"}},
		{{OptionalSubjectType: "user", OptionalSubjectIds: []string{"alice", "u7"}}, {OptionalSubjectType: "link"}},
	}

	for name, d := range readStores(t) {
		t.Run(name, func(t *testing.T) {
			rev := writeRels(t, d, tuple.UpdateOperationCreate, rels...)
			for _, whole := range []bool{false, true} {
				cached := cachingDatastore{Datastore: d, cache: newTestReadCache(t, whole)}
				for _, pass := range []string{"first", "cached"} {
					for _, id := range ids {
						for _, rel := range relations {
							for _, sel := range selectors {
								filter := datastore.RelationshipsFilter{OptionalResourceType: "document", OptionalResourceIds: id, OptionalResourceRelation: rel, OptionalSubjectsSelectors: sel}
								want := queryStrings(t, d.SnapshotReader(rev), filter)
								got := queryStrings(t, cached.SnapshotReader(rev), filter, options.WithSkipCaveats(true))
								if !slices.Equal(got, want) {
									t.Fatalf("whole objects %v, %s pass, %+v:\n got %v\nwant %v", whole, pass, filter, got, want)
								}
							}
						}
					}
				}
				if hits := testCounter(t, cached.cache.reads, "hit"); hits == 0 {
					t.Errorf("whole objects %v: no query was answered from the cache", whole)
				}
			}
		})
	}
}

func testCounter(t *testing.T, v *prometheus.CounterVec, label string) float64 {
	t.Helper()
	c, err := v.GetMetricWithLabelValues(label)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dto.Metric)
	if err := c.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestReadCacheDropsExpired checks that a relationship read
// before its expiration is not served after it.
func TestReadCacheDropsExpired(t *testing.T) {
	for name, d := range readStores(t) {
		t.Run(name, func(t *testing.T) {
			end := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
			rev := writeRels(t, d, tuple.UpdateOperationCreate,
				"document:d1#viewer@user:alice[expiration:"+end+"]",
				"document:d1#viewer@user:bob",
			)
			cached := cachingDatastore{Datastore: d, cache: newTestReadCache(t, name == "postgres")}
			filter := datastore.RelationshipsFilter{OptionalResourceType: "document", OptionalResourceIds: []string{"d1"}, OptionalResourceRelation: "viewer"}
			if got := queryStrings(t, cached.SnapshotReader(rev), filter); len(got) != 2 {
				t.Fatalf("before the expiration: %v, want both viewers", got)
			}
			for time.Now().Before(tuple.MustParse("document:d1#viewer@user:alice[expiration:" + end + "]").OptionalExpiration.Add(10 * time.Millisecond)) {
				time.Sleep(50 * time.Millisecond)
			}
			got := queryStrings(t, cached.SnapshotReader(rev), filter)
			if want := []string{"document:d1#viewer@user:bob"}; !slices.Equal(got, want) {
				t.Fatalf("after the expiration: %v, want %v", got, want)
			}
			if hits := testCounter(t, cached.cache.reads, "hit"); hits != 2 {
				t.Errorf("hits = %v, want 2: the second query must come from the cache", hits)
			}
		})
	}
}

// TestReadCacheSeparatesRevisions checks that a write is seen at the
// revision it made and not at the one before it.
func TestReadCacheSeparatesRevisions(t *testing.T) {
	for name, d := range readStores(t) {
		t.Run(name, func(t *testing.T) {
			cached := cachingDatastore{Datastore: d, cache: newTestReadCache(t, name == "postgres")}
			filter := datastore.RelationshipsFilter{OptionalResourceType: "document", OptionalResourceIds: []string{"d1"}, OptionalResourceRelation: "viewer"}
			before := writeRels(t, d, tuple.UpdateOperationCreate, "document:d1#viewer@user:alice")
			if got := queryStrings(t, cached.SnapshotReader(before), filter); len(got) != 1 {
				t.Fatalf("before: %v", got)
			}
			after := writeRels(t, d, tuple.UpdateOperationDelete, "document:d1#viewer@user:alice")
			if got := queryStrings(t, cached.SnapshotReader(after), filter); len(got) != 0 {
				t.Fatalf("after the delete: %v, want nothing", got)
			}
			if got := queryStrings(t, cached.SnapshotReader(before), filter); len(got) != 1 {
				t.Fatalf("before, again: %v, want alice", got)
			}
		})
	}
}

// slowStore delays every relationship query and counts them, so that
// concurrent readers of one object overlap.
type slowStore struct {
	datastore.Datastore
	queries atomic.Int64
	delay   time.Duration
}

func (s *slowStore) SnapshotReader(rev datastore.Revision) datastore.Reader {
	return slowReader{Reader: s.Datastore.SnapshotReader(rev), s: s}
}

type slowReader struct {
	datastore.Reader
	s *slowStore
}

func (r slowReader) QueryRelationships(ctx context.Context, filter datastore.RelationshipsFilter, opts ...options.QueryOptionsOption) (datastore.RelationshipIterator, error) {
	r.s.queries.Add(1)
	select {
	case <-time.After(r.s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r.Reader.QueryRelationships(ctx, filter, opts...)
}

// TestReadCacheSharesConcurrentReads checks that concurrent
// queries of one object cost one read, and that a reader whose request is
// cancelled does not fail the others waiting on its read.
func TestReadCacheSharesConcurrentReads(t *testing.T) {
	mem := readStores(t)["memory"]
	rev := writeRels(t, mem, tuple.UpdateOperationCreate, "document:d1#viewer@user:alice", "document:d1#editor@user:bob")
	slow := &slowStore{Datastore: mem, delay: 200 * time.Millisecond}
	cached := cachingDatastore{Datastore: slow, cache: newTestReadCache(t, true)}

	// The first reader is cancelled while it reads for everyone.
	leaderCtx, cancel := context.WithCancel(t.Context())
	leaderDone := make(chan error, 1)
	go func() {
		_, err := cached.SnapshotReader(rev).QueryRelationships(leaderCtx, datastore.RelationshipsFilter{OptionalResourceType: "document", OptionalResourceIds: []string{"d1"}, OptionalResourceRelation: "viewer"})
		leaderDone <- err
	}()
	time.Sleep(50 * time.Millisecond)

	var wg sync.WaitGroup
	results := make([][]string, 20)
	for i := range results {
		wg.Go(func() {
			relation := []string{"viewer", "editor"}[i%2]
			results[i] = queryStrings(t, cached.SnapshotReader(rev), datastore.RelationshipsFilter{OptionalResourceType: "document", OptionalResourceIds: []string{"d1"}, OptionalResourceRelation: relation})
		})
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-leaderDone; err == nil {
		t.Error("the cancelled reader got no error")
	}
	wg.Wait()
	for i, got := range results {
		want := []string{"document:d1#viewer@user:alice"}
		if i%2 == 1 {
			want = []string{"document:d1#editor@user:bob"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("reader %d got %v, want %v", i, got, want)
		}
	}
	// The read goes on for the waiters after its first caller has gone.
	if n := slow.queries.Load(); n != 1 {
		t.Errorf("%d datastore queries, want 1", n)
	}

	// Without a cancellation, twenty concurrent readers share one read.
	slow.queries.Store(0)
	rev2 := writeRels(t, mem, tuple.UpdateOperationCreate, "document:d2#viewer@user:alice")
	for range 20 {
		wg.Go(func() {
			got := queryStrings(t, cached.SnapshotReader(rev2), datastore.RelationshipsFilter{OptionalResourceType: "document", OptionalResourceIds: []string{"d2"}, OptionalResourceRelation: "viewer"})
			if len(got) != 1 {
				t.Errorf("got %v", got)
			}
		})
	}
	wg.Wait()
	if n := slow.queries.Load(); n != 1 {
		t.Errorf("%d datastore queries for twenty concurrent readers of one object, want 1", n)
	}
}

// countedRevision is a revision that counts how often its key is encoded.
type countedRevision struct {
	n       int
	encoded *int
}

func (r countedRevision) String() string {
	*r.encoded++
	return fmt.Sprintf("rev-%d", r.n)
}

func (r countedRevision) Equal(o datastore.Revision) bool {
	other, ok := o.(countedRevision)
	return ok && other.n == r.n
}

func (r countedRevision) GreaterThan(o datastore.Revision) bool {
	other, ok := o.(countedRevision)
	return ok && r.n > other.n
}

func (r countedRevision) LessThan(o datastore.Revision) bool {
	other, ok := o.(countedRevision)
	return ok && r.n < other.n
}

func (countedRevision) ByteSortable() bool { return false }

func TestRevisionKeysEncodeEachRevisionOnce(t *testing.T) {
	var keys revisionKeys
	encoded := 0
	rev := func(n int) countedRevision { return countedRevision{n: n, encoded: &encoded} }

	for range 3 {
		if got := keys.of(rev(1)); got != "rev-1" {
			t.Fatalf("key of revision 1 = %q", got)
		}
	}
	if got := keys.of(rev(2)); got != "rev-2" {
		t.Fatalf("key of revision 2 = %q", got)
	}
	if encoded != 2 {
		t.Errorf("two revisions encoded %d times, want 2", encoded)
	}

	// More revisions than it remembers push out the oldest.
	for n := 3; n <= 2+len(keys.last); n++ {
		keys.of(rev(n))
	}
	encoded = 0
	if got := keys.of(rev(1)); got != "rev-1" || encoded != 1 {
		t.Errorf("key of a forgotten revision = %q after %d encodings, want rev-1 after 1", got, encoded)
	}
}
