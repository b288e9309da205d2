package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"github.com/authzed/spicedb/pkg/datalayer"
	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/zedtoken"
	"github.com/maypok86/otter/v2"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// pin is the revision that SpiceDB evaluates the uncached checks of one
// state at. Every check of a state then runs at the same revision. So the
// relationship read cache serves what they share (an org's roles, a
// project's viewers) for as long as the state lasts, even while other orgs
// change.
type pin struct {
	rev         datastore.Revision
	head        datastore.RevisionWithSchemaHash // rev, as the in-process checker reads it
	consistency *v1.Consistency

	// snap, for a shared pin, is the state read that the pin followed
	// (see sharedPin).
	snap snapshot

	// principals, for a pin of an org's base state, gives each
	// principal's state as of the state read that the pin followed (see
	// pinForCheck).
	principals func(subject string) string

	// written, for a shared pin on the engine's own in-memory datastore,
	// is the number of writes counted before the pin's revision was read.
	written uint64
}

const (
	// maxPinAge bounds how long a revision stays pinned, well inside any
	// garbage collection window a datastore would be run with.
	maxPinAge = 5 * time.Minute

	// maxPins bounds the number of pinned revisions: one per org with
	// recent checks.
	maxPins = 100_000
)

// pinFor returns the revision pinned for state, reading the head revision
// when none is. The head revision is read after state, so it contains every
// write that state reflects. A later read returns state again only if no
// such write has committed since, so the revision also contains every write
// that returned before that read.
func (e *Engine) pinFor(ctx context.Context, state string) (pin, error) {
	if p, ok := e.results.pins.GetIfPresent(state); ok {
		return p, nil
	}
	p, err := e.readPin(ctx)
	if err != nil {
		return pin{}, err
	}
	e.results.pins.Set(state, p)
	return p, nil
}

// pinForCheck returns the pin that req is evaluated at, and the state it
// is kept for. pinned is the state that stateOf chose for req.
//
// A check on a resource of a verified org may run at an older revision than
// the one pinned for its state. That revision must have been pinned after
// a state read in which the check's state was the same as now: the org's
// state, or for a principal, the org's state for that principal (see
// stateOf). So a write to one org, or one principal's role, does not move
// every other check to a new revision, where SpiceDB's dispatch cache and
// the relationship read cache start empty. In order, a check runs at:
//
//   - the shared pin of its global state (see sharedPin), which every org
//     can use, if the check's state is the same as when it was pinned;
//   - for a principal, the pin of its org's base state, the writes that
//     name no one principal, if the principal's state is the same as when
//     that was pinned;
//   - else the pin of its own state.
//
// Each of these revisions was read after the state read that the check's
// state is compared with, so it contains every write that the check's
// state covers, as pinFor requires. This needs states fixed at their read
// (see snapshot.principals). The engine's own in-memory datastore compares
// write counts instead (see countedPinForCheck), and other datastores use
// the pin of the check's own state.
func (e *Engine) pinForCheck(ctx context.Context, req CheckRequest, pinned string) (pin, string, error) {
	sc, ok := ctx.Value(scopeKey{}).(*scope)
	if !ok || (req.Resource != sc.resource && req.Resource != sc.org) {
		p, err := e.pinFor(ctx, pinned)
		return p, pinned, err
	}
	org := sc.org.ID
	principal := req.SubjectRelation == "" && req.Subject.IsPrincipal()
	subject := req.Subject.String()
	base, principals, fixed := sc.snap.principals(org)
	if !fixed {
		return e.countedPinForCheck(ctx, sc, principal, subject, pinned)
	}
	stateIn := func(s snapshot) string {
		if principal {
			return s.subject(org, subject)
		}
		return s.org(org)
	}

	p, key, err := e.sharedPin(ctx, sc.snap)
	if err != nil {
		return pin{}, "", err
	}
	if stateIn(p.snap) == stateIn(sc.snap) {
		return p, key, nil
	}
	if principal {
		key = "base/" + base
		p, found := e.results.pins.GetIfPresent(key)
		if !found {
			if p, err = e.readPin(ctx); err != nil {
				return pin{}, "", err
			}
			p.principals = principals
			e.results.pins.Set(key, p)
			return p, key, nil
		}
		if p.principals != nil && p.principals(subject) == principals(subject) {
			return p, key, nil
		}
	}
	p, err = e.pinFor(ctx, pinned)
	return p, pinned, err
}

// sharedPin returns the pin of snap's global state (the writes of no org)
// and its key. The pin keeps the state read it followed (pin.snap), which
// pinForCheck compares a check's state with.
func (e *Engine) sharedPin(ctx context.Context, snap snapshot) (pin, string, error) {
	key := "shared/" + snap.global()
	if p, ok := e.results.pins.GetIfPresent(key); ok {
		return p, key, nil
	}
	var written uint64
	if e.counts != nil {
		written = e.counts.written()
	}
	p, err := e.readPin(ctx)
	if err != nil {
		return pin{}, "", err
	}
	p.snap, p.written = snap, written
	e.results.pins.Set(key, p)
	return p, key, nil
}

// countedPinForCheck is pinForCheck on the engine's own in-memory
// datastore, whose snapshots read an org's count of writes when asked, not
// at the state read. A check runs at the shared pin of its global state
// if no write counted since that pin's revision was read changed the
// check's state: the org's, or for a principal, the org's state for that
// principal. Otherwise it runs at the pin of its own state. With the shared
// pin, the check and the walk up its resource's parents (see verifiedOrg)
// read at one revision.
//
// Only a check pinned for its org's state qualifies, not one pinned for the
// whole state (a bulk check in one snapshot). A write is counted after it
// commits, so a state read between the two returns the new head revision
// with the old counts. A result kept for the whole state, which names the head
// revision, would then be kept for the new head while evaluated before the
// write.
func (e *Engine) countedPinForCheck(ctx context.Context, sc *scope, principal bool, subject, pinned string) (pin, string, error) {
	if !principal {
		subject = ""
	}
	if e.counts != nil && pinned == sc.snap.org(sc.org.ID) {
		p, key, err := e.sharedPin(ctx, sc.snap)
		if err != nil {
			return pin{}, "", err
		}
		if !e.counts.writtenSince(p.written, sc.org.ID, subject) {
			return p, key, nil
		}
	}
	p, err := e.pinFor(ctx, pinned)
	return p, pinned, err
}

// readPin reads the head revision and returns a pin of it.
func (e *Engine) readPin(ctx context.Context) (pin, error) {
	head, err := e.ds.HeadRevision(ctx)
	if err != nil {
		return pin{}, fmt.Errorf("read head revision: %w: %w", ErrUnavailable, err)
	}
	if head.Revision == nil {
		return pin{}, fmt.Errorf("read head revision: %w: datastore has no revision", ErrUnavailable)
	}
	token, err := zedtoken.NewFromRevision(ctx, head.Revision, datalayer.SchemaHash(head.SchemaHash), e.ds)
	if err != nil {
		return pin{}, fmt.Errorf("encode head revision: %w", err)
	}
	return pin{rev: head.Revision, head: head, consistency: &v1.Consistency{Requirement: &v1.Consistency_AtExactSnapshot{AtExactSnapshot: token}}}, nil
}

// unpin drops the revision pinned for state, after SpiceDB rejected it.
func (e *Engine) unpin(state string) { e.results.pins.Invalidate(state) }

// scope is the org that a request's resource belongs to, as WithResource
// verified it, and the request's snapshot.
type scope struct {
	resource object.Ref
	org      object.Ref
	snap     snapshot
}

type scopeKey struct{}

// WithResource does what WithSnapshot does, and also finds the org that
// resource belongs to, if it belongs to one (see verifiedOrg). Checks on
// resource and on its org in the returned context are then keyed by the
// org's state instead of the whole datastore's, so they stay cached while
// other orgs change.
func (e *Engine) WithResource(ctx context.Context, resource object.Ref) (context.Context, error) {
	ctx, err := e.WithSnapshot(ctx)
	if err != nil || e.results == nil || !e.results.perOrg {
		return ctx, err
	}
	snap := ctx.Value(stateKey{}).(snapshot)
	org, ok, err := e.verifiedOrg(ctx, snap, resource)
	if err != nil {
		return nil, err
	}
	if !ok {
		return ctx, nil
	}
	return context.WithValue(ctx, scopeKey{}, &scope{resource: resource, org: org, snap: snap}), nil
}

// OrgOf returns the org that WithResource verified resource belongs to in
// ctx, if it did.
func OrgOf(ctx context.Context, resource object.Ref) (object.Ref, bool) {
	sc, ok := ctx.Value(scopeKey{}).(*scope)
	if !ok || sc.resource != resource {
		return object.Ref{}, false
	}
	return sc.org, true
}

// ResourceOrg returns the org that resource belongs to, as of the snapshot
// pinned in ctx by WithSnapshot (or a new one), and false if it belongs to
// none or the engine keeps no per-org states.
func (e *Engine) ResourceOrg(ctx context.Context, resource object.Ref) (object.Ref, bool, error) {
	if e.results == nil || !e.results.perOrg {
		return object.Ref{}, false, nil
	}
	snap, err := e.results.snapshot(ctx)
	if err != nil {
		return object.Ref{}, false, err
	}
	return e.verifiedOrg(ctx, snap, resource)
}

// stateOf returns the state that the result of req is keyed by in ctx, and
// the state whose pinned revision SpiceDB evaluates req at, unless
// pinForCheck finds an older revision that serves. If WithResource
// verified the org of req's resource, the revision is pinned for the org's
// state. The result is keyed by the org's state for req's subject when that
// is a principal, or else by the org's state. Otherwise both are the whole
// datastore's state.
//
// The org's state is read after its subject's, so the revision pinned for
// it contains every write that the key covers. A revision pinned for each
// subject's state would keep the org's checks apart in SpiceDB's caches.
func (e *Engine) stateOf(ctx context.Context, req CheckRequest) (key, pinned string, err error) {
	if sc, ok := ctx.Value(scopeKey{}).(*scope); ok && (req.Resource == sc.resource || req.Resource == sc.org) {
		if req.SubjectRelation == "" && req.Subject.IsPrincipal() {
			key = sc.snap.subject(sc.org.ID, req.Subject.String())
		}
		pinned = sc.snap.org(sc.org.ID)
		if key == "" {
			key = pinned
		}
		return key, pinned, nil
	}
	whole, err := e.results.current(ctx)
	return whole, whole, err
}

// verifiedOrg returns the org that resource belongs to, and false if it
// belongs to none.
//
// Only writes of no org remove a resource's link to its parent (ForOrg
// makes sure), and every such write changes snap's global state. The
// parent links are read at a revision pinned for that global state, which
// contains every write of it. The org found stays valid, and cached, for
// as long as the global state lasts.
func (e *Engine) verifiedOrg(ctx context.Context, snap snapshot, resource object.Ref) (object.Ref, bool, error) {
	if resource.Type == object.TypeOrg {
		return resource, true, nil
	}
	global := snap.global()
	org, ok := e.results.orgs.chains.GetIfPresent(chainKey{global: global, ref: resource})
	if !ok {
		// A resource in no org may be created in one by a write of that
		// org, so its absence holds only for the whole state.
		missing := chainKey{global: "whole/" + snap.whole(), ref: resource}
		if _, ok := e.results.orgs.chains.GetIfPresent(missing); ok {
			return object.Ref{}, false, nil
		}
		// The shared pin of the global state contains every parent link
		// that the state has not removed. A link missing there may have
		// been written since, so it is looked for again at the newest pin.
		p, _, err := e.sharedPin(ctx, snap)
		if err != nil {
			return object.Ref{}, false, err
		}
		if org, err = e.orgAt(ctx, resource, global, p.rev); err != nil {
			return object.Ref{}, false, err
		}
		if org == "" && p.snap.whole() != snap.whole() {
			if p, err = e.pinFor(ctx, snap.whole()); err != nil {
				return object.Ref{}, false, err
			}
			if org, err = e.orgAt(ctx, resource, global, p.rev); err != nil {
				return object.Ref{}, false, err
			}
		}
		if org == "" {
			e.results.orgs.chains.Set(missing, "")
			return object.Ref{}, false, nil
		}
	}
	return object.Ref{Type: object.TypeOrg, ID: org}, true, nil
}

// orgAt returns the ID of the org that resource belongs to at rev, a
// revision that contains every write of the global state, or "" if it
// belongs to none. It caches what it reads, and reads no cached link.
func (e *Engine) orgAt(ctx context.Context, resource object.Ref, global string, rev datastore.Revision) (string, error) {
	var path []object.Ref
	ref := resource
	org := ""
	for org == "" {
		if ref.Type == object.TypeOrg {
			org = ref.ID
			break
		}
		if known, ok := e.results.orgs.chains.GetIfPresent(chainKey{global: global, ref: ref}); ok {
			org = known
			break
		}
		parent, ok, err := e.parentAt(ctx, rev, ref)
		if err != nil || !ok {
			return "", err
		}
		path = append(path, ref)
		ref = parent
	}
	for _, p := range path {
		e.results.orgs.chains.Set(chainKey{global: global, ref: p}, org)
	}
	return org, nil
}

// parentAt reads the parent of ref at rev, through the read cache, which
// then holds what the check of ref reads at the same revision.
func (e *Engine) parentAt(ctx context.Context, rev datastore.Revision, ref object.Ref) (object.Ref, bool, error) {
	parentType, ok := object.ParentType(ref.Type)
	if !ok {
		return object.Ref{}, false, nil
	}
	// A resource has one parent link: Gatehouse creates it with a
	// precondition that none exists.
	rels, err := e.reads.SnapshotReader(rev).QueryRelationships(ctx, datastore.RelationshipsFilter{
		OptionalResourceType:     ref.Type,
		OptionalResourceIds:      []string{ref.ID},
		OptionalResourceRelation: object.ParentRelation(ref.Type),
	})
	if err != nil {
		return object.Ref{}, false, fmt.Errorf("read parent of %s: %w: %w", ref, ErrUnavailable, err)
	}
	for rel, err := range rels {
		if err != nil {
			return object.Ref{}, false, fmt.Errorf("read parent of %s: %w: %w", ref, ErrUnavailable, err)
		}
		if rel.Subject.ObjectType != parentType {
			return object.Ref{}, false, nil
		}
		return object.Ref{Type: parentType, ID: rel.Subject.ObjectID}, true, nil
	}
	return object.Ref{}, false, nil
}

// orgIndex caches the orgs that resources belong to.
type orgIndex struct {
	// chains maps a resource to the org it belongs to, as read in one
	// global state, or to "" for a resource in no org in one whole state
	// (see verifiedOrg).
	chains *otter.Cache[chainKey, string]
}

// chainKey is a resource in one global state.
type chainKey struct {
	global string
	ref    object.Ref
}

func newOrgIndex(bytes int) (*orgIndex, error) {
	chains, err := otter.New(&otter.Options[chainKey, string]{
		MaximumWeight: uint64(bytes),
		Weigher: func(k chainKey, org string) uint32 {
			return uint32(min(entryOverhead+len(k.global)+len(k.ref.Type)+len(k.ref.ID)+len(org), math.MaxUint32))
		},
		ExpiryCalculator: otter.ExpiryWriting[chainKey, string](maxResultAge),
	})
	if err != nil {
		return nil, fmt.Errorf("create org chains: %w", err)
	}
	return &orgIndex{chains: chains}, nil
}

// isRejectedRevision reports whether err is SpiceDB rejecting a revision,
// such as one garbage collected since it was pinned.
func isRejectedRevision(err error) bool { return errors.Is(err, ErrInvalidConsistencyToken) }
