package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"github.com/authzed/spicedb/pkg/datalayer"
	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/zedtoken"
	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// DefaultResultCacheSize is the number of check results an Engine keeps
// when Config.ResultCacheSize is zero.
const DefaultResultCacheSize = 1 << 18

// maxCachedIDs bounds the resource ids that cached lookup results hold in
// all, about 40 MiB for ids of 20 bytes.
const maxCachedIDs = 1 << 20

// resultKey identifies one check at one datastore revision. A result never
// changes for its key: a write, wherever it comes from, makes a new
// revision, and so new keys.
type resultKey struct {
	revision        string
	resource        object.Ref
	permission      string
	subject         object.Ref
	subjectRelation string
}

// resultCache keeps check results by the exact revision they were
// evaluated at. A lookup first reads the datastore's current revision,
// so a cached result is only ever served for the snapshot it describes,
// and a full-consistency check stays fully consistent across every
// instance sharing the datastore.
//
// Relationships that expire make no new revision, so a result cached
// before an expiration keeps being served for that revision. Gatehouse
// deletes such relationships ahead of their expiration for this reason,
// as it must for SpiceDB's own dispatch cache.
type resultCache struct {
	ds       datastore.Datastore
	results  *otter.Cache[resultKey, Decision]
	sets     *otter.Cache[lookupKey, *resourceSet]
	lastRev  atomic.Pointer[revisionToken] // token of the newest revision seen
	lookups  *prometheus.CounterVec
	uniqueID string
}

// revisionToken pairs a revision's string form with its zedtoken.
type revisionToken struct {
	revision string
	token    string
}

// snapshot is a revision that checks can be served from.
type snapshot struct {
	revision string // datastore.Revision.String()
	token    string // a zedtoken naming the revision
}

func newResultCache(ctx context.Context, ds datastore.Datastore, size int, registry prometheus.Registerer) (*resultCache, error) {
	results, err := otter.New(&otter.Options[resultKey, Decision]{MaximumSize: size})
	if err != nil {
		return nil, fmt.Errorf("create check result cache: %w", err)
	}
	sets, err := otter.New(&otter.Options[lookupKey, *resourceSet]{
		MaximumWeight: maxCachedIDs,
		Weigher:       func(_ lookupKey, set *resourceSet) uint32 { return uint32(len(set.ids)) + 1 },
	})
	if err != nil {
		return nil, fmt.Errorf("create lookup result cache: %w", err)
	}
	id, err := ds.UniqueID(ctx)
	if err != nil {
		return nil, fmt.Errorf("read datastore id: %w", err)
	}
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_check_cache_lookups_total",
		Help: "Check result cache lookups, by result (hit or miss).",
	}, []string{"result"})
	if err := registry.Register(lookups); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			return nil, fmt.Errorf("register check cache metrics: %w", err)
		}
		lookups = already.ExistingCollector.(*prometheus.CounterVec)
	}
	return &resultCache{ds: ds, results: results, sets: sets, lookups: lookups, uniqueID: id}, nil
}

// snapshotKey is the context key of a snapshot pinned by WithSnapshot.
type snapshotKey struct{}

// WithSnapshot reads the datastore's head revision once and returns a
// context in which every fully consistent check and lookup of this engine
// reads it instead of reading it again, so that the several checks of one
// request cost one revision read. The snapshot is as fresh as full
// consistency requires for the request that it starts. Without the result
// cache, ctx is returned as it is.
func (e *Engine) WithSnapshot(ctx context.Context) (context.Context, error) {
	if e.results == nil {
		return ctx, nil
	}
	snap, err := e.results.current(ctx, Consistency{})
	if err != nil {
		return nil, err
	}
	return context.WithValue(ctx, snapshotKey{}, snap), nil
}

// current returns the snapshot that a check of consistency cons reads: the
// snapshot pinned in ctx or the datastore's head revision, or its optimized
// revision for MinimizeLatency. It is only for consistencies without a
// token.
func (c *resultCache) current(ctx context.Context, cons Consistency) (snapshot, error) {
	if snap, ok := ctx.Value(snapshotKey{}).(snapshot); ok && !cons.MinimizeLatency {
		return snap, nil
	}
	var rev datastore.RevisionWithSchemaHash
	var err error
	if cons.MinimizeLatency {
		rev, err = c.ds.OptimizedRevision(ctx)
	} else {
		rev, err = c.ds.HeadRevision(ctx)
	}
	if err != nil {
		return snapshot{}, fmt.Errorf("read datastore revision: %w: %w", ErrUnavailable, err)
	}
	if rev.Revision == nil {
		return snapshot{}, fmt.Errorf("read datastore revision: %w: datastore has no revision", ErrUnavailable)
	}
	s := rev.Revision.String()
	if last := c.lastRev.Load(); last != nil && last.revision == s {
		return snapshot{revision: s, token: last.token}, nil
	}
	token, err := zedtoken.NewFromRevision(ctx, rev.Revision, datalayer.SchemaHash(rev.SchemaHash), c)
	if err != nil {
		return snapshot{}, fmt.Errorf("encode revision: %w", err)
	}
	c.lastRev.Store(&revisionToken{revision: s, token: token.GetToken()})
	return snapshot{revision: s, token: token.GetToken()}, nil
}

// UniqueID and RevisionFromString make resultCache a
// zedtoken.RevisionHolder that needs no query per token.
func (c *resultCache) UniqueID(context.Context) (string, error) { return c.uniqueID, nil }

func (c *resultCache) RevisionFromString(s string) (datastore.Revision, error) {
	return c.ds.RevisionFromString(s)
}

// revisionOf returns the string form of the revision that a zedtoken
// from SpiceDB names.
func (c *resultCache) revisionOf(token string) (string, error) {
	decoded, err := zedtoken.DecodeRevision(&v1.ZedToken{Token: token}, c)
	if err != nil {
		return "", err
	}
	return decoded.Revision.String(), nil
}

func (c *resultCache) get(key resultKey) (Decision, bool) {
	d, ok := c.results.GetIfPresent(key)
	if ok {
		c.lookups.WithLabelValues("hit").Inc()
	} else {
		c.lookups.WithLabelValues("miss").Inc()
	}
	return d, ok
}

func (c *resultCache) put(key resultKey, d Decision) {
	d.Token = "" // the token comes from the snapshot on every hit
	c.results.Set(key, d)
}

func keyOf(revision string, req CheckRequest) resultKey {
	return resultKey{
		revision: revision, resource: req.Resource, permission: req.Permission,
		subject: req.Subject, subjectRelation: req.SubjectRelation,
	}
}

// lookupKey identifies one resource lookup at one datastore revision.
type lookupKey struct {
	revision string
	request  LookupResourcesRequest // without Consistency
	max      int
}

// resourceSet is the result of a resource lookup, which nothing modifies
// once it is cached.
type resourceSet struct {
	ids       []string
	truncated bool
}

func (c *resultCache) getSet(key lookupKey) (*resourceSet, bool) {
	return c.sets.GetIfPresent(key)
}

func (c *resultCache) putSet(key lookupKey, set *resourceSet) {
	c.sets.Set(key, set)
}
