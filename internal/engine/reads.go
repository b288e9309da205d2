package engine

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/datastore/options"
	"github.com/authzed/spicedb/pkg/datastore/queryshape"
	core "github.com/authzed/spicedb/pkg/proto/core/v1"
	"github.com/authzed/spicedb/pkg/tuple"
	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// A check walks the tree from the resource up to its org. At each object
// SpiceDB queries the datastore several times: for the subjects that hold a
// relation directly, for the usersets that hold it, and for the parent.
// Most of these queries do not depend on the subject, and each has one
// result at one revision. readCache serves them from the relationships of
// each object, read once per revision: all of them in one query when the
// object has few (whole objects), or else those of one relation. Checks
// run at a few pinned revisions (see pinForCheck), so the checks of
// different users share what they read of the objects above the resource.
//
// The relationships of a revision never change, so an entry is never
// stale. Expiration is the one thing that changes with time: relationships
// that expired after they were read are dropped each time an entry is used.

const (
	// maxCachedRows is the maximum number of relationships cached for one
	// object, or for one relation of one object. An object or relation with more is
	// read from the datastore with the caller's filter each time, and
	// remembered as large for largeObjectAge.
	maxCachedRows = 128

	// largeObjectAge is how long an object or relation stays known as
	// having more than maxCachedRows relationships.
	largeObjectAge = 10 * time.Minute

	// maxReadAge bounds how long the relationships of one revision are
	// kept. Checks move to a new revision at least every maxPinAge.
	maxReadAge = 2 * maxPinAge

	// maxFetchesPerQuery bounds the objects one query reads into the cache;
	// the rest of its objects are read with the caller's filter, as one
	// query.
	maxFetchesPerQuery = 4

	// sharedReadTimeout bounds a read that several callers wait for. Each
	// caller stops waiting when its own request ends.
	sharedReadTimeout = 10 * time.Second
)

// readKey names the relationships of one object at one revision: all of
// them, or those of one relation.
type readKey struct {
	revision string
	typ, id  string
	relation string // empty for all of the object's relationships
}

// readCache holds the relationships read at each revision.
type readCache struct {
	rows   *otter.Cache[readKey, *rowSet]
	large  *otter.Cache[readKey, struct{}] // revision empty
	flight singleflight.Group
	reads  *prometheus.CounterVec

	// wholeObjects makes the cache read all of an object's relationships
	// in one query. The memory datastore scans a whole type for such a
	// query, so on it the cache reads one relation at a time.
	wholeObjects bool

	revKeys revisionKeys
	defs    *definitions
}

// revisionKeys remembers the keys of the revisions read last. A check
// opens a reader for each step of its evaluation, all at one revision, and
// a PostgreSQL revision encodes its snapshot again each time its key is
// asked for.
type revisionKeys struct {
	mu   sync.Mutex
	next int
	last [8]revisionKey
}

type revisionKey struct {
	rev datastore.Revision
	key string
}

// of returns rev's key, rev.String(), or that of an equal revision: two
// revisions are equal when they see the same relationships.
func (k *revisionKeys) of(rev datastore.Revision) string {
	k.mu.Lock()
	for _, known := range k.last {
		if known.rev != nil && known.rev.Equal(rev) {
			k.mu.Unlock()
			return known.key
		}
	}
	k.mu.Unlock()
	key := rev.String()
	k.mu.Lock()
	k.last[k.next] = revisionKey{rev: rev, key: key}
	k.next = (k.next + 1) % len(k.last)
	k.mu.Unlock()
	return key
}

func newReadCache(bytes int, wholeObjects bool, registry prometheus.Registerer) (*readCache, error) {
	rows, err := otter.New(&otter.Options[readKey, *rowSet]{
		MaximumWeight:    uint64(bytes),
		Weigher:          weighRows,
		ExpiryCalculator: otter.ExpiryWriting[readKey, *rowSet](maxReadAge),
	})
	if err != nil {
		return nil, fmt.Errorf("create relationship read cache: %w", err)
	}
	large, err := otter.New(&otter.Options[readKey, struct{}]{
		MaximumSize:      100_000,
		ExpiryCalculator: otter.ExpiryWriting[readKey, struct{}](largeObjectAge),
	})
	if err != nil {
		return nil, fmt.Errorf("create relationship read cache: %w", err)
	}
	reads, err := resultCounter(registry, "gatehouse_relationship_reads_total",
		"Relationship queries of SpiceDB, by how they were served: hit (from the read cache, after reading the objects it lacked) or direct (by the datastore, in part or whole).")
	if err != nil {
		return nil, err
	}
	defs, err := newDefinitions()
	if err != nil {
		return nil, err
	}
	return &readCache{rows: rows, large: large, reads: reads, wholeObjects: wholeObjects, defs: defs}, nil
}

func weighRows(k readKey, rows *rowSet) uint32 {
	return uint32(96 + len(k.revision) + len(k.typ) + len(k.id) + len(k.relation) + rows.weight())
}

// cachingDatastore is a datastore whose snapshot readers serve
// relationship queries from a readCache.
type cachingDatastore struct {
	datastore.Datastore
	cache *readCache
}

// SnapshotReader returns a reader at rev that opens the datastore's own
// reader only when a query needs it: opening one costs more, on
// PostgreSQL, than serving a query from the cache.
func (d cachingDatastore) SnapshotReader(rev datastore.Revision) datastore.Reader {
	return &cachingReader{
		open:   sync.OnceValue(func() datastore.Reader { return d.Datastore.SnapshotReader(rev) }),
		revKey: d.cache.revKeys.of(rev),
		cache:  d.cache,
	}
}

// Unwrap returns the datastore that d reads through.
func (d cachingDatastore) Unwrap() datastore.Datastore { return d.Datastore }

var _ datastore.Reader = (*cachingReader)(nil)

// cachingReader reads at one revision through a readCache.
type cachingReader struct {
	open   func() datastore.Reader // the datastore's reader at the revision
	revKey string                  // the revision's String
	cache  *readCache
}

func (r *cachingReader) LegacyReadCaveatByName(ctx context.Context, name string) (*core.CaveatDefinition, datastore.Revision, error) {
	return r.open().LegacyReadCaveatByName(ctx, name)
}

func (r *cachingReader) LegacyListAllCaveats(ctx context.Context) ([]datastore.RevisionedCaveat, error) {
	return r.open().LegacyListAllCaveats(ctx)
}

func (r *cachingReader) LegacyLookupCaveatsWithNames(ctx context.Context, names []string) ([]datastore.RevisionedCaveat, error) {
	return r.open().LegacyLookupCaveatsWithNames(ctx, names)
}

// The namespace definitions read through the v1 API, which caches them
// per revision, come from the read cache's definitions. So every revision's
// entry shares one copy of each version of a definition. Before, each entry
// had its own: about 14 MB in one profile at 1M relationships.

func (r *cachingReader) LegacyReadNamespaceByName(ctx context.Context, name string) (*core.NamespaceDefinition, datastore.Revision, error) {
	return r.cache.defs.byName(ctx, r.revKey, name, func(ctx context.Context, name string) (*core.NamespaceDefinition, datastore.Revision, error) {
		return r.open().LegacyReadNamespaceByName(ctx, name)
	})
}

func (r *cachingReader) LegacyListAllNamespaces(ctx context.Context) ([]datastore.RevisionedNamespace, error) {
	return r.open().LegacyListAllNamespaces(ctx)
}

func (r *cachingReader) LegacyLookupNamespacesWithNames(ctx context.Context, names []string) ([]datastore.RevisionedNamespace, error) {
	return r.cache.defs.withNames(ctx, r.revKey, names, func(ctx context.Context, names []string) ([]datastore.RevisionedNamespace, error) {
		return r.open().LegacyLookupNamespacesWithNames(ctx, names)
	})
}

func (r *cachingReader) CountRelationships(ctx context.Context, name string) (int, error) {
	return r.open().CountRelationships(ctx, name)
}

func (r *cachingReader) LookupCounters(ctx context.Context) ([]datastore.RelationshipCounter, error) {
	return r.open().LookupCounters(ctx)
}

func (r *cachingReader) ReadStoredSchema(ctx context.Context) (*datastore.ReadOnlyStoredSchema, error) {
	return r.open().ReadStoredSchema(ctx)
}

func (r *cachingReader) ReverseQueryRelationships(ctx context.Context, filter datastore.SubjectsFilter, opts ...options.ReverseQueryOptionsOption) (datastore.RelationshipIterator, error) {
	return r.open().ReverseQueryRelationships(ctx, filter, opts...)
}

func (r *cachingReader) QueryRelationships(ctx context.Context, filter datastore.RelationshipsFilter, opts ...options.QueryOptionsOption) (datastore.RelationshipIterator, error) {
	if !cacheable(filter, opts) {
		r.cache.reads.WithLabelValues("direct").Inc()
		return r.open().QueryRelationships(ctx, filter, opts...)
	}
	now := time.Now()
	var found []tuple.Relationship
	var rest []string // objects to read with the caller's filter
	fetches := 0
	for i, id := range filter.OptionalResourceIds {
		if slices.Contains(filter.OptionalResourceIds[:i], id) {
			continue
		}
		rows, ok, fetched, err := r.object(ctx, filter.OptionalResourceType, id, filter.OptionalResourceRelation, fetches < maxFetchesPerQuery)
		if err != nil {
			return nil, err
		}
		if fetched {
			fetches++
		}
		if !ok {
			rest = append(rest, id)
			continue
		}
		// The table is read after the set, so it has every name the set
		// refers to.
		table := names.all()
		for i := range rows.len() {
			if rel := rows.at(i, table); matches(filter, rel) && !expired(rel, now) {
				found = append(found, rel)
			}
		}
	}

	if len(rest) == 0 {
		r.cache.reads.WithLabelValues("hit").Inc()
		return sliceIterator(found), nil
	}
	r.cache.reads.WithLabelValues("direct").Inc()
	narrowed := filter
	narrowed.OptionalResourceIds = rest
	it, err := r.open().QueryRelationships(ctx, narrowed, opts...)
	if err != nil || len(found) == 0 {
		return it, err
	}
	return func(yield func(tuple.Relationship, error) bool) {
		for _, rel := range found {
			if !yield(rel, nil) {
				return
			}
		}
		for rel, err := range it {
			if !yield(rel, err) || err != nil {
				return
			}
		}
	}, nil
}

// object returns the cached relationships of one object that a query on
// relation needs: all of the object's, or those of relation. ok is false
// when the object or relation is known to be large, or when it is not
// cached and fetch is false. fetched reports a read from the datastore.
func (r *cachingReader) object(ctx context.Context, typ, id, relation string, fetch bool) (rows *rowSet, ok, fetched bool, err error) {
	keys := make([]readKey, 0, 2)
	if r.cache.wholeObjects {
		keys = append(keys, readKey{revision: r.revKey, typ: typ, id: id})
	}
	if relation != "" {
		keys = append(keys, readKey{revision: r.revKey, typ: typ, id: id, relation: relation})
	}
	for _, key := range keys {
		large := key
		large.revision = ""
		if _, isLarge := r.cache.large.GetIfPresent(large); isLarge {
			continue
		}
		if rows, ok := r.cache.rows.GetIfPresent(key); ok {
			return rows, true, fetched, nil
		}
		if !fetch {
			return nil, false, fetched, nil
		}
		fetched = true
		rows, ok, err := r.fetch(ctx, key)
		if err != nil {
			return nil, false, fetched, err
		}
		if ok {
			return rows, true, fetched, nil
		}
	}
	return nil, false, fetched, nil
}

// fetch reads the relationships that key names into the cache, once for
// all the concurrent callers that ask for them. ok is false when there are
// more than maxCachedRows.
func (r *cachingReader) fetch(ctx context.Context, key readKey) (*rowSet, bool, error) {
	flightKey := key.revision + "\x00" + key.typ + "\x00" + key.id + "\x00" + key.relation
	ch := r.cache.flight.DoChan(flightKey, func() (any, error) {
		// The read serves every caller waiting for it, so it does not end
		// with the first caller's request: SpiceDB cancels a branch of a
		// check as soon as another branch decides it.
		readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedReadTimeout)
		defer cancel()
		rows, err := r.read(readCtx, key)
		if err != nil {
			return nil, err
		}
		if rows == nil {
			large := key
			large.revision = ""
			r.cache.large.Set(large, struct{}{})
			return nil, nil
		}
		r.cache.rows.Set(key, rows)
		return rows, nil
	})
	select {
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			// The read may have failed for a reason of its own, such as a
			// timeout; this caller reads for itself.
			rows, err := r.read(ctx, key)
			return rows, rows != nil, err
		}
		rows, _ := res.Val.(*rowSet)
		return rows, rows != nil, nil
	}
}

// read queries the relationships that key names. It returns nil, and no
// error, when there are more than maxCachedRows or the name table is full.
// It returns an empty set when there are none.
func (r *cachingReader) read(ctx context.Context, key readKey) (*rowSet, error) {
	limit := uint64(maxCachedRows + 1)
	it, err := r.open().QueryRelationships(ctx, datastore.RelationshipsFilter{
		OptionalResourceType:     key.typ,
		OptionalResourceIds:      []string{key.id},
		OptionalResourceRelation: key.relation,
	}, options.WithLimit(&limit), options.WithQueryShape(queryshape.Varying))
	if err != nil {
		return nil, err
	}
	rows := make([]tuple.Relationship, 0, 4)
	for rel, err := range it {
		if err != nil {
			return nil, err
		}
		if len(rows) == maxCachedRows {
			return nil, nil
		}
		rows = append(rows, rel)
	}
	set, ok := packRows(rows)
	if !ok {
		return nil, nil
	}
	return set, nil
}

// cacheable reports whether a query may be served from the relationships
// of the objects it names: one resource type, some ids, and no option that
// a cached result could not honour.
func cacheable(filter datastore.RelationshipsFilter, opts []options.QueryOptionsOption) bool {
	if filter.OptionalResourceType == "" || len(filter.OptionalResourceIds) == 0 ||
		filter.OptionalResourceIDPrefix != "" ||
		filter.OptionalCaveatNameFilter.Option != datastore.CaveatFilterOptionNone ||
		filter.OptionalExpirationOption != datastore.ExpirationFilterOptionNone {
		return false
	}
	q := options.NewQueryOptionsWithOptions(opts...)
	return q.Limit == nil && q.After == nil && q.BeforeOrEqual == nil &&
		(q.Sort == options.Unsorted || q.Sort == options.ChooseEfficient) &&
		q.SQLCheckAssertionForTest == nil && q.SQLExplainCallbackForTest == nil
}

// matches reports whether filter selects rel, as SpiceDB's SQL datastores
// do. The caller has checked with cacheable that filter uses no caveat or
// expiration filter.
func matches(filter datastore.RelationshipsFilter, rel tuple.Relationship) bool {
	if rel.Resource.ObjectType != filter.OptionalResourceType ||
		!slices.Contains(filter.OptionalResourceIds, rel.Resource.ObjectID) ||
		(filter.OptionalResourceRelation != "" && rel.Resource.Relation != filter.OptionalResourceRelation) {
		return false
	}
	if len(filter.OptionalSubjectsSelectors) == 0 {
		return true
	}
	for _, s := range filter.OptionalSubjectsSelectors {
		if selects(s, rel.Subject) {
			return true
		}
	}
	return false
}

func selects(s datastore.SubjectsSelector, subject tuple.ObjectAndRelation) bool {
	if s.OptionalSubjectType != "" && subject.ObjectType != s.OptionalSubjectType {
		return false
	}
	if len(s.OptionalSubjectIds) > 0 && !slices.Contains(s.OptionalSubjectIds, subject.ObjectID) {
		return false
	}
	f := s.RelationFilter
	switch {
	case f.IsEmpty():
		return true
	case f.OnlyNonEllipsisRelations:
		return subject.Relation != tuple.Ellipsis
	default:
		return (f.IncludeEllipsisRelation && subject.Relation == tuple.Ellipsis) ||
			(f.NonEllipsisRelation != "" && subject.Relation == f.NonEllipsisRelation)
	}
}

func expired(rel tuple.Relationship, now time.Time) bool {
	return rel.OptionalExpiration != nil && !rel.OptionalExpiration.After(now)
}

func sliceIterator(rows []tuple.Relationship) datastore.RelationshipIterator {
	return datastore.RelationshipIterator(iter.Seq2[tuple.Relationship, error](func(yield func(tuple.Relationship, error) bool) {
		for _, rel := range rows {
			if !yield(rel, nil) {
				return
			}
		}
	}))
}
