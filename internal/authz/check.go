package authz

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// CheckRequest names the subject, permission and resource of one check.
type CheckRequest struct {
	Subject     object.Ref
	Permission  string
	Resource    object.Ref
	Consistency engine.Consistency
}

// CheckResult is the outcome of a CheckRequest. Allowed is true only for a
// definite yes.
type CheckResult struct {
	Allowed bool
	Token   string
}

// Check runs req after making sure that caller may make it: a principal may
// always check itself, and any other subject only with inspect on the
// resource.
func (s *Service) Check(ctx context.Context, caller object.Ref, req CheckRequest) (CheckResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()

	if err := validateCheck(req); err != nil {
		return CheckResult{}, err
	}
	var err error
	if ctx, err = s.engine.WithResource(ctx, req.Resource); err != nil {
		return CheckResult{}, err
	}
	check := engine.CheckRequest{
		Resource:        req.Resource,
		Permission:      req.Permission,
		Subject:         req.Subject,
		SubjectRelation: subjectRelation(req.Subject),
		Consistency:     req.Consistency,
	}
	var d engine.Decision
	switch {
	case req.Subject == caller:
		d, err = s.engine.Check(ctx, check)
	case req.Consistency == engine.Consistency{}:
		// Both checks at once: whether the caller may ask, and the check.
		d, err = s.checkOnBehalf(ctx, caller, check)
	default:
		if err := s.require(ctx, caller, "inspect", req.Resource); err != nil {
			return CheckResult{}, err
		}
		d, err = s.engine.Check(ctx, check)
	}
	if errors.Is(err, engine.ErrMaxDepth) {
		// Only a definite yes allows: a question too deep to answer is a no.
		s.logger.WarnContext(ctx, "check exceeded the maximum depth; denied",
			"subject", req.Subject.String(), "permission", req.Permission, "resource", req.Resource.String(), "error", err)
		return CheckResult{}, nil
	}
	if err != nil {
		return CheckResult{}, err
	}
	if d.Conditional {
		s.logger.WarnContext(ctx, "conditional check result treated as deny",
			"subject", req.Subject.String(), "permission", req.Permission, "resource", req.Resource.String())
	}
	return CheckResult{Allowed: d.Allowed, Token: d.Token}, nil
}

// checkOnBehalf evaluates, fully consistently and in one engine call, the
// caller's inspect on the resource and check. Unless the caller has
// inspect, it returns the error of require and no decision.
//
// When the engine has found the resource's org, the caller's inspect on
// that org replaces its inspect on the resource, because every type's
// inspect includes its parent's, up to the org (TestInspectFollowsTheTree
// checks this). The org's result is the same for every resource in it, so
// it stays cached until the org changes.
func (s *Service) checkOnBehalf(ctx context.Context, caller object.Ref, check engine.CheckRequest) (engine.Decision, error) {
	gate := check.Resource
	if org, ok := engine.OrgOf(ctx, check.Resource); ok {
		gate = org
	}
	results, err := s.engine.CheckEach(ctx, []engine.CheckRequest{
		{Resource: gate, Permission: "inspect", Subject: caller},
		check,
	})
	if err != nil {
		return engine.Decision{}, err
	}
	inspect, result := results[0], results[1]
	if inspect.Err != nil {
		return engine.Decision{}, inspect.Err
	}
	if !inspect.Decision.Allowed {
		// The caller may still have inspect on the resource itself, when
		// the gate was its org, or have gained it in between. require
		// decides, and separates forbidden from not found; the check is
		// then served from the cache unless something changed.
		if err := s.require(ctx, caller, "inspect", check.Resource); err != nil {
			return engine.Decision{}, err
		}
		return s.engine.Check(ctx, check)
	}
	return result.Decision, result.Err
}

func validateCheck(req CheckRequest) error {
	if !validPermission(req.Permission) {
		return invalid("permission %q is not one of %v", req.Permission, Permissions)
	}
	if !object.IsResourceType(req.Resource.Type) {
		return invalid("resource type %q cannot be checked", req.Resource.Type)
	}
	return nil
}

// BulkItem is the outcome of one check of a bulk request: a result, or Err
// when that check was invalid, not permitted to the caller, or failed.
type BulkItem struct {
	Result CheckResult
	Err    error
}

// CheckBulk runs every request, all at one snapshot. Each item is
// authorized on its own, exactly as Check would, and fails on its own.
func (s *Service) CheckBulk(ctx context.Context, caller object.Ref, reqs []CheckRequest, consistency engine.Consistency) ([]BulkItem, error) {
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()

	if len(reqs) == 0 || len(reqs) > s.limits.MaxBulkChecks {
		return nil, invalid("checks must contain 1 to %d items", s.limits.MaxBulkChecks)
	}
	var err error
	if ctx, err = s.engine.WithSnapshot(ctx); err != nil {
		return nil, err
	}
	items := make([]BulkItem, len(reqs))

	// Find the items the caller may not check. The first bulk call checks
	// inspect on each resource's org where the engine finds it (as in
	// checkOnBehalf). The second checks, for the items denied there,
	// inspect on the resource itself, and view to tell forbidden from not
	// found.
	var gated []int
	gates := make(map[object.Ref]int) // gate resource -> index in gateChecks
	var gateChecks []engine.CheckRequest
	gateOf := make([]int, len(reqs))
	for i, req := range reqs {
		if err := validateCheck(req); err != nil {
			items[i].Err = err
			continue
		}
		if req.Subject == caller {
			continue
		}
		gate := req.Resource
		org, ok, err := s.engine.ResourceOrg(ctx, req.Resource)
		if err != nil {
			return nil, err
		}
		if ok {
			gate = org
		}
		n, seen := gates[gate]
		if !seen {
			n = len(gateChecks)
			gates[gate] = n
			gateChecks = append(gateChecks, engine.CheckRequest{Resource: gate, Permission: "inspect", Subject: caller})
		}
		gateOf[i] = n
		gated = append(gated, i)
	}
	if len(gateChecks) > 0 {
		results, err := s.engine.CheckBulk(ctx, gateChecks, engine.Consistency{})
		if err != nil {
			return nil, err
		}
		var denied []int
		var again []engine.CheckRequest
		for _, i := range gated {
			switch r := results[gateOf[i]]; {
			case r.Err != nil:
				items[i].Err = r.Err
			case !r.Decision.Allowed:
				denied = append(denied, i)
				again = append(again,
					engine.CheckRequest{Resource: reqs[i].Resource, Permission: "inspect", Subject: caller},
					engine.CheckRequest{Resource: reqs[i].Resource, Permission: "view", Subject: caller})
			}
		}
		if len(again) > 0 {
			if results, err = s.engine.CheckBulk(ctx, again, engine.Consistency{}); err != nil {
				return nil, err
			}
		}
		for n, i := range denied {
			inspect, view := results[2*n], results[2*n+1]
			switch {
			case inspect.Err != nil:
				items[i].Err = inspect.Err
			case inspect.Decision.Allowed:
			case view.Err == nil && view.Decision.Allowed:
				items[i].Err = fmt.Errorf("%w: %s lacks \"inspect\" on %s", ErrForbidden, caller, reqs[i].Resource)
			default:
				items[i].Err = fmt.Errorf("%w: %s", ErrNotFound, reqs[i].Resource)
			}
		}
	}

	// Check the rest in one call.
	var checks []engine.CheckRequest
	var asked []int
	for i, req := range reqs {
		if items[i].Err != nil {
			continue
		}
		checks = append(checks, engine.CheckRequest{
			Resource: req.Resource, Permission: req.Permission,
			Subject: req.Subject, SubjectRelation: subjectRelation(req.Subject),
		})
		asked = append(asked, i)
	}
	if len(checks) == 0 {
		return items, nil
	}
	results, err := s.engine.CheckBulk(ctx, checks, consistency)
	if err != nil {
		return nil, err
	}
	for n, i := range asked {
		if results[n].Err != nil {
			items[i].Err = results[n].Err
			continue
		}
		items[i].Result = CheckResult{Allowed: results[n].Decision.Allowed, Token: results[n].Decision.Token}
	}
	return items, nil
}

// LookupResourcesRequest requests the resources of ResourceType on which
// Subject has Permission.
type LookupResourcesRequest struct {
	Subject      object.Ref
	Permission   string
	ResourceType string
	PageSize     int
	PageToken    string
	Consistency  engine.Consistency
}

// LookupResources returns one page, sorted by id, of the resources on which
// the subject has the permission. About itself a caller sees everything;
// about another subject only resources on which the caller has inspect, so
// a page can be shorter than the page size while more pages follow. Page
// tokens carry the last id returned.
func (s *Service) LookupResources(ctx context.Context, caller object.Ref, req LookupResourcesRequest) ([]object.Ref, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()

	if !validPermission(req.Permission) {
		return nil, "", invalid("permission %q is not one of %v", req.Permission, Permissions)
	}
	if !object.IsResourceType(req.ResourceType) {
		return nil, "", invalid("resource_type %q is not one of org, workspace, project, document, group", req.ResourceType)
	}
	size, err := s.pageSize(req.PageSize)
	if err != nil {
		return nil, "", err
	}

	after, err := decodeAfter(req.PageToken)
	if err != nil {
		return nil, "", err
	}
	ids, truncated, err := s.engine.LookupResources(ctx, engine.LookupResourcesRequest{
		ResourceType:    req.ResourceType,
		Permission:      req.Permission,
		Subject:         req.Subject,
		SubjectRelation: subjectRelation(req.Subject),
		Consistency:     req.Consistency,
	}, s.limits.MaxLookupResources)
	if err != nil {
		return nil, "", err
	}
	if truncated {
		return nil, "", fmt.Errorf("%w: more than %d resources match; narrow the question", ErrConflict, s.limits.MaxLookupResources)
	}
	if req.Subject == caller {
		page, next := pageOf(ids, after, size)
		refs := make([]object.Ref, len(page))
		for i, id := range page {
			refs[i] = object.Ref{Type: req.ResourceType, ID: id}
		}
		return refs, next, nil
	}
	return s.inspectablePage(ctx, caller, req.ResourceType, ids, after, size)
}

// inspectablePage returns the next page of ids, after the id after, on
// which caller has inspect. Ids are checked in chunks until the page is
// full, and the page token is the last id returned, so neither the page
// nor its token reveals an id that the caller may not inspect.
func (s *Service) inspectablePage(ctx context.Context, caller object.Ref, resourceType string, ids []string, after string, size int) ([]object.Ref, string, error) {
	ids = sortedUnique(ids)
	start, found := slices.BinarySearch(ids, after)
	if after != "" && found {
		start++
	}

	var page []object.Ref
	for start < len(ids) && len(page) < size {
		end := min(start+max(size, 100), len(ids))
		gates := make([]engine.CheckRequest, 0, end-start)
		for _, id := range ids[start:end] {
			gates = append(gates, engine.CheckRequest{Resource: object.Ref{Type: resourceType, ID: id}, Permission: "inspect", Subject: caller})
		}
		results, err := s.engine.CheckBulk(ctx, gates, engine.Consistency{})
		if err != nil {
			return nil, "", err
		}
		for i, r := range results {
			if r.Err == nil && r.Decision.Allowed {
				page = append(page, gates[i].Resource)
				if len(page) == size {
					start += i + 1
					break
				}
			}
			if i == len(results)-1 {
				start = end
			}
		}
	}
	next := ""
	if len(page) == size && start < len(ids) {
		next = base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1].ID))
	}
	return page, next, nil
}

// LookupSubjectsRequest requests the subjects of SubjectType that have
// Permission on Resource.
type LookupSubjectsRequest struct {
	Resource    object.Ref
	Permission  string
	SubjectType string
	PageSize    int
	PageToken   string
	Consistency engine.Consistency
}

// LookupSubjects returns one page of subjects, sorted by id, that have the
// permission on the resource. The caller needs inspect on the resource.
// Page tokens carry the last id returned.
func (s *Service) LookupSubjects(ctx context.Context, caller object.Ref, req LookupSubjectsRequest) ([]object.Ref, string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()

	if !validPermission(req.Permission) {
		return nil, "", invalid("permission %q is not one of %v", req.Permission, Permissions)
	}
	if !object.IsResourceType(req.Resource.Type) {
		return nil, "", invalid("resource type %q cannot be looked up", req.Resource.Type)
	}
	switch req.SubjectType {
	case object.TypeUser, object.TypeService, object.TypeGroup:
	default:
		return nil, "", invalid("subject_type %q is not one of user, service, group", req.SubjectType)
	}
	size, err := s.pageSize(req.PageSize)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeAfter(req.PageToken)
	if err != nil {
		return nil, "", err
	}
	if err := s.require(ctx, caller, "inspect", req.Resource); err != nil {
		return nil, "", err
	}

	relation := subjectRelation(object.Ref{Type: req.SubjectType})
	ids, truncated, err := s.engine.LookupSubjects(ctx, engine.LookupSubjectsRequest{
		Resource: req.Resource, Permission: req.Permission,
		SubjectType: req.SubjectType, SubjectRelation: relation,
		Consistency: req.Consistency,
	}, s.limits.MaxLookupSubjects)
	if err != nil {
		return nil, "", err
	}
	if truncated {
		return nil, "", fmt.Errorf("%w: more than %d subjects have %q on %s; narrow the question", ErrConflict, s.limits.MaxLookupSubjects, req.Permission, req.Resource)
	}

	ids, next := pageOf(ids, after, size)
	page := make([]object.Ref, len(ids))
	for i, id := range ids {
		page[i] = object.Ref{Type: req.SubjectType, ID: id}
	}
	return page, next, nil
}

// pageOf sorts ids and returns up to size of them that come after the id
// after, with the page token of the next page ("" after the last page).
// Paging by id keeps pages free of repeats and gaps even when the set
// changes between requests, except for ids added or removed meanwhile.
func pageOf(ids []string, after string, size int) ([]string, string) {
	ids = sortedUnique(ids)
	start, found := slices.BinarySearch(ids, after)
	if after != "" && found {
		start++
	}
	end := min(start+size, len(ids))
	next := ""
	if end < len(ids) {
		next = base64.RawURLEncoding.EncodeToString([]byte(ids[end-1]))
	}
	return ids[start:end], next
}

// sortedUnique returns ids sorted and without repeats. It returns ids
// itself when they already are, and a sorted copy otherwise, because the
// engine may share the slice with other requests.
func sortedUnique(ids []string) []string {
	for i := 1; i < len(ids); i++ {
		if ids[i-1] >= ids[i] {
			sorted := slices.Clone(ids)
			slices.Sort(sorted)
			return slices.Compact(sorted)
		}
	}
	return ids
}

// objectIDChars matches any id SpiceDB accepts, which every id in a page
// token is.
var objectIDChars = regexp.MustCompile(`^[a-zA-Z0-9/_|\-=+]+$`)

func decodeAfter(token string) (string, error) {
	if token == "" {
		return "", nil
	}
	after, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(after) > 1024 || !objectIDChars.Match(after) {
		return "", invalid("page_token is not valid")
	}
	return string(after), nil
}

// IsUnavailable reports whether err means SpiceDB did not respond, so the
// request may be retried.
func IsUnavailable(err error) bool { return errors.Is(err, engine.ErrUnavailable) }
