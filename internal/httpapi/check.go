package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

// consistencyFields are the optional fields that choose the snapshot a read
// is evaluated at. By default every read is fully consistent.
type consistencyFields struct {
	// ConsistencyToken requests a snapshot at least as fresh as the write
	// or read that returned it. It is a pointer so that parse can tell an
	// empty string, which it rejects, from an omitted field or null, which
	// both decode to nil.
	ConsistencyToken *string `json:"consistency_token"`

	// Consistency may be "full" (the default) or "minimize_latency", which
	// allows a result a few seconds stale. It is a pointer, like
	// ConsistencyToken, so that parse can reject an empty string and read
	// an omitted field or null as "full".
	Consistency *string `json:"consistency"`
}

func (c consistencyFields) parse() (engine.Consistency, error) {
	var token string
	if c.ConsistencyToken != nil {
		token = *c.ConsistencyToken
		if token == "" {
			// Read as "no token", an empty string would hide a client
			// that lost the token it meant to send.
			return engine.Consistency{}, fmt.Errorf("consistency_token must not be empty; omit the field for full consistency")
		}
	}
	if len(token) > 1024 {
		return engine.Consistency{}, fmt.Errorf("consistency_token is longer than 1024 bytes")
	}
	mode := "full"
	if c.Consistency != nil {
		mode = *c.Consistency
		if mode == "" {
			// Read as "full", an empty string would hide a client that
			// lost the mode it meant to send, such as "minimize_latency".
			return engine.Consistency{}, fmt.Errorf("consistency must not be empty; send \"full\" or \"minimize_latency\", or omit the field for full consistency")
		}
	}
	switch mode {
	case "full":
		return engine.Consistency{Token: token}, nil
	case "minimize_latency":
		if token != "" {
			return engine.Consistency{}, fmt.Errorf("consistency_token and consistency \"minimize_latency\" exclude each other")
		}
		return engine.Consistency{MinimizeLatency: true}, nil
	}
	return engine.Consistency{}, fmt.Errorf("consistency must be \"full\" or \"minimize_latency\", not %q", mode)
}

type checkItem struct {
	// Subject is a pointer so that an empty string, which could be an
	// app's lost user id, is rejected rather than read as the caller.
	Subject    *string `json:"subject"`
	Permission string  `json:"permission"`
	Resource   string  `json:"resource"`
}

type checkRequest struct {
	checkItem

	// LinkToken, in place of Subject, checks as the share link whose
	// secret it is, for an anonymous visitor who holds it.
	LinkToken *string `json:"link_token"`

	consistencyFields
}

type checkResponse struct {
	Allowed          bool   `json:"allowed"`
	ConsistencyToken string `json:"consistency_token,omitempty"`
}

// parseCheck turns a check item into an authz request; an omitted subject
// means the caller.
func parseCheck(item checkItem, caller object.Ref) (authz.CheckRequest, error) {
	subject, err := optionalSubject("subject", item.Subject, caller)
	if err != nil {
		return authz.CheckRequest{}, err
	}
	if item.Permission == "" {
		return authz.CheckRequest{}, fmt.Errorf("permission is required")
	}
	resource, err := object.ParseResource(item.Resource)
	if err != nil {
		return authz.CheckRequest{}, fmt.Errorf("resource: %w", err)
	}
	return authz.CheckRequest{Subject: subject, Permission: item.Permission, Resource: resource}, nil
}

func (a *api) check(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	var body checkRequest
	if !a.decode(w, r, &body) {
		return
	}
	if body.LinkToken != nil {
		if body.Subject != nil || *body.LinkToken == "" {
			problem.Write(w, http.StatusBadRequest, "give exactly one of subject and link_token, and link_token must not be empty")
			return
		}
		a.checkLinkToken(w, r, p, body)
		return
	}
	req, err := parseCheck(body.checkItem, p.Ref)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Consistency, err = body.parse(); err != nil {
		problem.Write(w, http.StatusBadRequest, err.Error())
		return
	}

	result, err := a.authz.Check(r.Context(), p.Ref, req)
	if err != nil {
		a.metrics.Checks.WithLabelValues("error").Inc()
		a.fail(w, r, err)
		return
	}
	a.countDecision(result.Allowed)
	a.decisions.Record(Decision{
		Time: time.Now(), RequestID: RequestID(r.Context()), Caller: p.Ref.String(),
		Subject: req.Subject.String(), Permission: req.Permission, Resource: req.Resource.String(), Allowed: result.Allowed,
	})
	writeJSON(w, http.StatusOK, checkResponse{Allowed: result.Allowed, ConsistencyToken: result.Token})
}

func (a *api) countDecision(allowed bool) {
	if allowed {
		a.metrics.Checks.WithLabelValues("allowed").Inc()
	} else {
		a.metrics.Checks.WithLabelValues("denied").Inc()
	}
}

type bulkRequest struct {
	Checks []bulkItem `json:"checks"`
	consistencyFields
}

// bulkItem is one check of a bulk request. LinkToken is decoded only to
// reject it with a hint, since a bulk request checks as its caller.
type bulkItem struct {
	checkItem
	LinkToken *string `json:"link_token"`
}

// errBulkLinkToken is the error of a bulk item that sets link_token.
var errBulkLinkToken = errors.New("link_token is not accepted in a bulk check; check a share link with POST /v1/check")

// bulkResult is one result of a bulk check: Allowed, or Error when that
// check could not be evaluated (and so is a deny).
type bulkResult struct {
	Allowed          bool             `json:"allowed"`
	ConsistencyToken string           `json:"consistency_token,omitempty"`
	Error            *problem.Details `json:"error,omitempty"`
}

type bulkResponse struct {
	Results []bulkResult `json:"results"`
}

func (a *api) checkBulk(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	var body bulkRequest
	if !a.decode(w, r, &body) {
		return
	}
	limit := a.authz.Limits().MaxBulkChecks
	if len(body.Checks) == 0 || len(body.Checks) > limit {
		problem.Write(w, http.StatusBadRequest, fmt.Sprintf("checks must contain 1 to %d items", limit))
		return
	}
	consistency, err := body.parse()
	if err != nil {
		problem.Write(w, http.StatusBadRequest, err.Error())
		return
	}

	// A malformed item fails on its own, like any other per-item error.
	results := make([]bulkResult, len(body.Checks))
	var reqs []authz.CheckRequest
	var index []int
	for i, item := range body.Checks {
		req, err := parseCheck(item.checkItem, p.Ref)
		if item.LinkToken != nil {
			err = errBulkLinkToken
		}
		if err != nil {
			results[i].Error = &problem.Details{Status: http.StatusBadRequest, Title: http.StatusText(http.StatusBadRequest), Detail: err.Error()}
			continue
		}
		reqs = append(reqs, req)
		index = append(index, i)
	}
	if len(reqs) > 0 {
		items, err := a.authz.CheckBulk(r.Context(), p.Ref, reqs, consistency)
		if err != nil {
			a.metrics.Checks.WithLabelValues("error").Add(float64(len(reqs)))
			a.fail(w, r, err)
			return
		}
		for n, item := range items {
			i := index[n]
			if item.Err != nil {
				d := problemFor(item.Err)
				d.Title = http.StatusText(d.Status)
				results[i].Error = &d
				a.metrics.Checks.WithLabelValues("error").Inc()
				continue
			}
			results[i] = bulkResult{Allowed: item.Result.Allowed, ConsistencyToken: item.Result.Token}
			a.countDecision(item.Result.Allowed)
			a.decisions.Record(Decision{
				Time: time.Now(), RequestID: RequestID(r.Context()), Caller: p.Ref.String(),
				Subject: reqs[n].Subject.String(), Permission: reqs[n].Permission, Resource: reqs[n].Resource.String(), Allowed: item.Result.Allowed,
			})
		}
	}
	writeJSON(w, http.StatusOK, bulkResponse{Results: results})
}

type lookupResourcesRequest struct {
	Subject      *string `json:"subject"`
	Permission   string  `json:"permission"`
	ResourceType string  `json:"resource_type"`
	PageSize     int     `json:"page_size"`
	PageToken    string  `json:"page_token"`
	consistencyFields
}

type lookupResourcesResponse struct {
	Resources     []string `json:"resources"`
	NextPageToken string   `json:"next_page_token,omitempty"`
}

func (a *api) lookupResources(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	var body lookupResourcesRequest
	if !a.decode(w, r, &body) {
		return
	}
	req := authz.LookupResourcesRequest{
		Subject: p.Ref, Permission: body.Permission, ResourceType: body.ResourceType,
		PageSize: body.PageSize, PageToken: body.PageToken,
	}
	var err error
	if req.Subject, err = optionalSubject("subject", body.Subject, p.Ref); err != nil {
		problem.Write(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(body.PageToken) > 4096 {
		problem.Write(w, http.StatusBadRequest, "page_token is longer than 4096 bytes")
		return
	}
	if req.Consistency, err = body.parse(); err != nil {
		problem.Write(w, http.StatusBadRequest, err.Error())
		return
	}

	refs, next, err := a.authz.LookupResources(r.Context(), p.Ref, req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	resp := lookupResourcesResponse{Resources: make([]string, len(refs)), NextPageToken: next}
	for i, ref := range refs {
		resp.Resources[i] = ref.String()
	}
	writeJSON(w, http.StatusOK, resp)
}

type lookupSubjectsRequest struct {
	Resource    string `json:"resource"`
	Permission  string `json:"permission"`
	SubjectType string `json:"subject_type"`
	PageSize    int    `json:"page_size"`
	PageToken   string `json:"page_token"`
	consistencyFields
}

type lookupSubjectsResponse struct {
	Subjects      []string `json:"subjects"`
	NextPageToken string   `json:"next_page_token,omitempty"`
}

func (a *api) lookupSubjects(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	var body lookupSubjectsRequest
	if !a.decode(w, r, &body) {
		return
	}
	resource, err := object.ParseResource(body.Resource)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "resource: "+err.Error())
		return
	}
	req := authz.LookupSubjectsRequest{
		Resource: resource, Permission: body.Permission, SubjectType: body.SubjectType,
		PageSize: body.PageSize, PageToken: body.PageToken,
	}
	if req.Consistency, err = body.parse(); err != nil {
		problem.Write(w, http.StatusBadRequest, err.Error())
		return
	}

	refs, next, err := a.authz.LookupSubjects(r.Context(), p.Ref, req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	resp := lookupSubjectsResponse{Subjects: make([]string, len(refs)), NextPageToken: next}
	for i, ref := range refs {
		resp.Subjects[i] = ref.String()
	}
	writeJSON(w, http.StatusOK, resp)
}

// optionalSubject parses the subject in field, or returns def when the
// request omits the field or sets it to null. An empty string is an
// error: read as "omitted", it would turn a request about a user whose id
// the app lost into one about def, often the caller, who may see more.
func optionalSubject(field string, v *string, def object.Ref) (object.Ref, error) {
	if v == nil {
		return def, nil
	}
	if *v == "" {
		return object.Ref{}, fmt.Errorf("%s must not be empty; omit the field to mean the caller", field)
	}
	ref, err := object.ParseSubject(*v)
	if err != nil {
		return object.Ref{}, fmt.Errorf("%s: %w", field, err)
	}
	return ref, nil
}
