package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// BulkResult is the outcome of one item of CheckBulk: a Decision, or Err
// when SpiceDB could not evaluate that item.
type BulkResult struct {
	Decision Decision
	Err      error
}

// CheckBulk evaluates every request, all at one snapshot chosen by
// consistency; each request's own Consistency is ignored. The results are
// in the order of reqs. Without a consistency token, results come from the
// result cache where it holds them for the datastore's current state, and
// SpiceDB evaluates the rest fully consistently, in one call.
func (e *Engine) CheckBulk(ctx context.Context, reqs []CheckRequest, consistency Consistency) ([]BulkResult, error) {
	if e.results == nil || consistency.Token != "" {
		return e.checkBulkAPI(ctx, reqs, consistency)
	}
	return e.checkCached(ctx, reqs, true)
}

// CheckEach evaluates every request fully consistently, each at a snapshot
// at least as fresh as the datastore state when it is called (or the one
// pinned by WithSnapshot), but not necessarily all at the same one. Results
// come from the result cache where it can, and SpiceDB evaluates the rest in
// one call per state. Each request's own Consistency is ignored. In a
// context from WithResource, checks on its resource and on that resource's
// org are keyed by the org's state.
func (e *Engine) CheckEach(ctx context.Context, reqs []CheckRequest) ([]BulkResult, error) {
	if e.results == nil {
		return e.checkBulkAPI(ctx, reqs, Consistency{})
	}
	return e.checkCached(ctx, reqs, false)
}

// checkCached serves reqs from the result cache and has SpiceDB evaluate
// the rest fully consistently, at the revision pinned for their state. With
// oneSnapshot, every request is keyed by the whole datastore's state, and a
// write that committed between the state read and the evaluation makes it
// evaluate every request again, together.
func (e *Engine) checkCached(ctx context.Context, reqs []CheckRequest, oneSnapshot bool) ([]BulkResult, error) {
	whole, err := e.results.current(ctx)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	results := make([]BulkResult, len(reqs))
	keys := make([]resultKey, len(reqs))
	missed := make(map[string][]int) // request indexes, by pinned state
	var states []string              // the keys of missed, in order
	for i, req := range reqs {
		state, pinned := whole, whole
		if !oneSnapshot {
			if state, pinned, err = e.stateOf(ctx, req); err != nil {
				return nil, fmt.Errorf("check: %w", err)
			}
		}
		keys[i] = keyOf(state, req)
		if d, ok := e.results.get(keys[i]); ok {
			results[i].Decision = d
			continue
		}
		if missed[pinned] == nil {
			states = append(states, pinned)
		}
		missed[pinned] = append(missed[pinned], i)
	}
	for _, state := range states {
		index := missed[state]
		batch := make([]CheckRequest, len(index))
		for n, i := range index {
			batch[n] = reqs[i]
		}
		evaluated, err := e.checkBulkPinned(ctx, batch, state)
		if err != nil {
			return nil, err
		}
		if oneSnapshot && len(index) < len(reqs) {
			// The cached results belong to state, and the new ones may
			// belong to a later state if a write has committed since.
			now, err := e.results.states.read(ctx)
			if err != nil {
				return nil, fmt.Errorf("check: read datastore state: %w: %w", ErrUnavailable, err)
			}
			if now.whole() != state {
				return e.checkBulkAPI(ctx, reqs, Consistency{})
			}
		}
		for n, r := range evaluated {
			results[index[n]] = r
			if r.Err == nil {
				e.results.put(keys[index[n]], r.Decision)
			}
		}
	}
	return results, nil
}

// checkBulkPinned evaluates reqs at the revision pinned for state. A
// single request goes through CheckPermission, which costs less than a bulk
// call of one.
func (e *Engine) checkBulkPinned(ctx context.Context, reqs []CheckRequest, state string) ([]BulkResult, error) {
	if len(reqs) == 1 {
		// As in a bulk call, an error of the item's own is its result.
		d, err := e.checkPinned(ctx, reqs[0], state)
		if errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		return []BulkResult{{Decision: d, Err: err}}, nil
	}
	p, err := e.pinFor(ctx, state)
	if err != nil {
		return nil, fmt.Errorf("bulk check: %w", err)
	}
	results, err := e.checkBulkAt(ctx, reqs, p.consistency)
	if isRejectedRevision(err) {
		e.unpin(state)
		return e.checkBulkAPI(ctx, reqs, Consistency{})
	}
	return results, err
}

func (e *Engine) checkBulkAPI(ctx context.Context, reqs []CheckRequest, c Consistency) ([]BulkResult, error) {
	consistency, err := e.consistencyFor(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("bulk check: %w", err)
	}
	return e.checkBulkAt(ctx, reqs, consistency)
}

func (e *Engine) checkBulkAt(ctx context.Context, reqs []CheckRequest, consistency *v1.Consistency) ([]BulkResult, error) {
	items := make([]*v1.CheckBulkPermissionsRequestItem, len(reqs))
	for i, r := range reqs {
		items[i] = &v1.CheckBulkPermissionsRequestItem{
			Resource:   objectRef(r.Resource),
			Permission: r.Permission,
			Subject:    subjectRef(r.Subject, r.SubjectRelation),
		}
	}
	resp, err := e.Permissions.CheckBulkPermissions(ctx, &v1.CheckBulkPermissionsRequest{
		Consistency: consistency,
		Items:       items,
	})
	if err != nil {
		return nil, classify("bulk check", err)
	}
	pairs := resp.GetPairs()
	if len(pairs) != len(reqs) {
		return nil, errors.New("bulk check: SpiceDB returned a different number of results than requested")
	}

	token := resp.GetCheckedAt().GetToken()
	results := make([]BulkResult, len(reqs))
	for i, pair := range pairs {
		if e := pair.GetError(); e != nil {
			results[i].Err = classify("check", status.ErrorProto(e))
			continue
		}
		item := pair.GetItem()
		results[i].Decision = Decision{
			Allowed:     item.GetPermissionship() == v1.CheckPermissionResponse_PERMISSIONSHIP_HAS_PERMISSION,
			Conditional: item.GetPermissionship() == v1.CheckPermissionResponse_PERMISSIONSHIP_CONDITIONAL_PERMISSION,
			Token:       token,
		}
	}
	return results, nil
}

// LookupResourcesRequest requests the resources of ResourceType on which
// Subject has Permission.
type LookupResourcesRequest struct {
	ResourceType    string
	Permission      string
	Subject         object.Ref
	SubjectRelation string
	Consistency     Consistency
}

// LookupResources returns the ids of every resource on which the subject has
// the permission without condition, sorted and each once, up to max;
// truncated reports whether more exist. Conditional results are left out,
// so the result never contains a resource that a check would deny. The
// slice may be shared with other callers: do not modify it.
//
// SpiceDB reports a resource once per path that reaches it, and its cursors
// do not remove repeats across pages, so the whole set is collected here and
// callers page over it. Without a consistency token, sets are cached by the
// datastore state they were read in, so paging through one while nothing
// changes reads it from SpiceDB once.
func (e *Engine) LookupResources(ctx context.Context, req LookupResourcesRequest, max int) (ids []string, truncated bool, err error) {
	if e.results == nil || req.Consistency.Token != "" {
		return e.lookupResources(ctx, req, req.Consistency, max)
	}
	state, err := e.results.current(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lookup resources: %w", err)
	}
	key := lookupKey{state: state, request: req, max: max}
	key.request.Consistency = Consistency{}
	if set, ok := e.results.getSet(key); ok {
		return set.ids, set.truncated, nil
	}
	ids, truncated, err = e.lookupResources(ctx, req, Consistency{}, max)
	if err != nil {
		return nil, false, err
	}
	e.results.putSet(key, &resourceSet{ids: ids, truncated: truncated})
	return ids, truncated, nil
}

func (e *Engine) lookupResources(ctx context.Context, req LookupResourcesRequest, c Consistency, max int) (ids []string, truncated bool, err error) {
	consistency, err := e.consistencyFor(ctx, c)
	if err != nil {
		return nil, false, fmt.Errorf("lookup resources: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	stream, err := e.Permissions.LookupResources(ctx, &v1.LookupResourcesRequest{
		Consistency:        consistency,
		ResourceObjectType: req.ResourceType,
		Permission:         req.Permission,
		Subject:            subjectRef(req.Subject, req.SubjectRelation),
	})
	if err != nil {
		return nil, false, classify("lookup resources", err)
	}

	seen := make(map[string]bool)
	for {
		resp, err := stream.Recv()
		if err != nil {
			if isEOF(err) {
				slices.Sort(ids)
				return ids, false, nil
			}
			return nil, false, classify("lookup resources", err)
		}
		id := resp.GetResourceObjectId()
		if resp.GetPermissionship() != v1.LookupPermissionship_LOOKUP_PERMISSIONSHIP_HAS_PERMISSION || seen[id] {
			continue
		}
		if len(ids) == max {
			slices.Sort(ids)
			return ids, true, nil
		}
		seen[id] = true
		ids = append(ids, id)
	}
}

// LookupSubjectsRequest requests the subjects of SubjectType (with
// SubjectRelation, such as a group's "member") that have Permission on
// Resource.
type LookupSubjectsRequest struct {
	Resource        object.Ref
	Permission      string
	SubjectType     string
	SubjectRelation string
	Consistency     Consistency
}

// LookupSubjects returns the ids of every subject with the permission
// without condition, up to max; truncated reports whether more exist.
// Wildcards and conditional results are left out.
func (e *Engine) LookupSubjects(ctx context.Context, req LookupSubjectsRequest, max int) (ids []string, truncated bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	consistency, err := e.consistencyFor(ctx, req.Consistency)
	if err != nil {
		return nil, false, fmt.Errorf("lookup subjects: %w", err)
	}
	stream, err := e.Permissions.LookupSubjects(ctx, &v1.LookupSubjectsRequest{
		Consistency:             consistency,
		Resource:                objectRef(req.Resource),
		Permission:              req.Permission,
		SubjectObjectType:       req.SubjectType,
		OptionalSubjectRelation: req.SubjectRelation,
	})
	if err != nil {
		return nil, false, classify("lookup subjects", err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if isEOF(err) {
				return ids, false, nil
			}
			return nil, false, classify("lookup subjects", err)
		}
		subject := resp.GetSubject()
		if subject.GetPermissionship() != v1.LookupPermissionship_LOOKUP_PERMISSIONSHIP_HAS_PERMISSION || subject.GetSubjectObjectId() == "*" {
			continue
		}
		if len(ids) == max {
			return ids, true, nil
		}
		ids = append(ids, subject.GetSubjectObjectId())
	}
}
