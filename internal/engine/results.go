package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// DefaultResultCacheBytes is the memory, in estimated bytes, that an
// Engine's check result cache and its lookup result cache may each use
// when Config.ResultCacheBytes is zero.
const DefaultResultCacheBytes = 64 << 20

// entryOverhead estimates the bytes of one cache entry besides its
// strings: the key and value structs, string headers and the cache's own
// node.
const entryOverhead = 200

// maxResultAge bounds how long a result stays cached while nothing
// changes, well inside the datastore's garbage collection window, so that
// the consistency token of a cached result always names a revision that
// SpiceDB still accepts.
const maxResultAge = time.Hour

// stateReader reads the state of the relationships committed in the
// datastore (see snapshot).
type stateReader interface {
	read(ctx context.Context) (snapshot, error)
}

// resultKey identifies one check in one datastore state. A result never
// changes for its key: a write, wherever it comes from, makes a new state.
type resultKey struct {
	state           string
	resource        object.Ref
	permission      string
	subject         object.Ref
	subjectRelation string
}

// resultCache keeps check and lookup results by the datastore state they
// were evaluated in. A lookup first reads the current state, so a cached
// result is served only while no relationship write has committed since
// it was evaluated, and a fully consistent check stays fully consistent
// across every instance that shares the datastore.
//
// Relationships that expire make no new state, so a result cached before
// an expiration keeps being served. Gatehouse deletes such relationships
// ahead of their expiration for this reason, as it must for SpiceDB's own
// dispatch cache.
type resultCache struct {
	states  stateReader
	results *otter.Cache[resultKey, Decision]
	sets    *otter.Cache[lookupKey, *resourceSet]
	lookups *prometheus.CounterVec

	// perOrg is set when states tell orgs apart. orgs then holds what is
	// known of the org that resources belong to.
	perOrg bool
	orgs   *orgIndex

	// pins holds the revision that SpiceDB evaluates the checks of a state
	// at (see pinFor).
	pins *otter.Cache[string, pin]
}

func newResultCache(states stateReader, perOrg bool, bytes int, registry prometheus.Registerer) (*resultCache, error) {
	results, err := otter.New(&otter.Options[resultKey, Decision]{
		MaximumWeight:    uint64(bytes),
		Weigher:          weighResult,
		ExpiryCalculator: otter.ExpiryWriting[resultKey, Decision](maxResultAge),
	})
	if err != nil {
		return nil, fmt.Errorf("create check result cache: %w", err)
	}
	sets, err := otter.New(&otter.Options[lookupKey, *resourceSet]{
		MaximumWeight:    uint64(bytes),
		Weigher:          weighSet,
		ExpiryCalculator: otter.ExpiryWriting[lookupKey, *resourceSet](maxResultAge),
	})
	if err != nil {
		return nil, fmt.Errorf("create lookup result cache: %w", err)
	}
	lookups, err := resultCounter(registry, "gatehouse_check_cache_lookups_total", "Check result cache lookups, by result (hit or miss).")
	if err != nil {
		return nil, err
	}
	pins, err := otter.New(&otter.Options[string, pin]{
		MaximumSize:      maxPins,
		ExpiryCalculator: otter.ExpiryWriting[string, pin](maxPinAge),
	})
	if err != nil {
		return nil, fmt.Errorf("create revision pins: %w", err)
	}
	c := &resultCache{states: states, results: results, sets: sets, lookups: lookups, perOrg: perOrg, pins: pins}
	if perOrg {
		if c.orgs, err = newOrgIndex(bytes); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// stateKey is the context key of a state pinned by WithSnapshot.
type stateKey struct{}

// WithSnapshot reads the datastore's state once and returns a context that
// carries it. Checks and lookups of this engine without a consistency token
// use that state instead of reading it again, so the several checks of one
// request cost one read, and their results are at least as fresh as it.
// Without the result cache, ctx is returned as it is.
func (e *Engine) WithSnapshot(ctx context.Context) (context.Context, error) {
	if e.results == nil {
		return ctx, nil
	}
	snap, err := e.results.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return context.WithValue(ctx, stateKey{}, snap), nil
}

// snapshot returns the snapshot pinned in ctx, or reads the datastore's.
func (c *resultCache) snapshot(ctx context.Context) (snapshot, error) {
	if snap, ok := ctx.Value(stateKey{}).(snapshot); ok {
		return snap, nil
	}
	snap, err := c.states.read(ctx)
	if err != nil {
		return nil, fmt.Errorf("read datastore state: %w: %w", ErrUnavailable, err)
	}
	return snap, nil
}

// current returns the whole state of the snapshot pinned in ctx, or of a
// new one.
func (c *resultCache) current(ctx context.Context) (string, error) {
	snap, err := c.snapshot(ctx)
	if err != nil {
		return "", err
	}
	return snap.whole(), nil
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

func (c *resultCache) put(key resultKey, d Decision) { c.results.Set(key, d) }

// weighResult estimates the bytes that one cached check result takes.
func weighResult(k resultKey, d Decision) uint32 {
	n := entryOverhead + len(k.state) + len(k.resource.Type) + len(k.resource.ID) + len(k.permission) +
		len(k.subject.Type) + len(k.subject.ID) + len(k.subjectRelation) + len(d.Token)
	return uint32(min(n, math.MaxUint32))
}

// weighSet estimates the bytes that one cached lookup result takes.
func weighSet(k lookupKey, set *resourceSet) uint32 {
	r := k.request
	n := entryOverhead + len(k.state) + len(r.ResourceType) + len(r.Permission) +
		len(r.Subject.Type) + len(r.Subject.ID) + len(r.SubjectRelation)
	for _, id := range set.ids {
		n += 16 + len(id)
	}
	return uint32(min(n, math.MaxUint32))
}

func keyOf(state string, req CheckRequest) resultKey {
	return resultKey{
		state: state, resource: req.Resource, permission: req.Permission,
		subject: req.Subject, subjectRelation: req.SubjectRelation,
	}
}

// lookupKey identifies one resource lookup in one datastore state.
type lookupKey struct {
	state   string
	request LookupResourcesRequest // without Consistency
	max     int
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

// resultCounter registers a counter with a "result" label, or returns the
// one already registered under name, as when two engines share a registry.
func resultCounter(registry prometheus.Registerer, name, help string) (*prometheus.CounterVec, error) {
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"result"})
	if err := registry.Register(counter); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			return nil, fmt.Errorf("register metric %s: %w", name, err)
		}
		return already.ExistingCollector.(*prometheus.CounterVec), nil
	}
	return counter, nil
}
