package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/grants"
	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

// registerGrantRoutes adds the temporary grant endpoints.
func (a *api) registerGrantRoutes(mux *http.ServeMux) {
	mux.Handle("POST /v1/grants", a.authenticated(a.createGrant))
	mux.Handle("GET /v1/grants", a.authenticated(a.listGrants))
	mux.Handle("GET /v1/grants/{id}", a.authenticated(a.getGrant))
	mux.Handle("DELETE /v1/grants/{id}", a.authenticated(a.revokeGrant))
}

type grantRequest struct {
	Resource   string `json:"resource"`
	Subject    string `json:"subject"`
	Role       string `json:"role"`
	ExpiresAt  string `json:"expires_at"`
	Duration   string `json:"duration"`
	NotBefore  string `json:"not_before"`
	Reason     string `json:"reason"`
	BreakGlass bool   `json:"break_glass"`
}

type grantResponse struct {
	ID         string    `json:"id"`
	Resource   string    `json:"resource"`
	Subject    string    `json:"subject"`
	Role       string    `json:"role"`
	NotBefore  time.Time `json:"not_before"`
	ExpiresAt  time.Time `json:"expires_at"`
	Grantor    string    `json:"grantor"`
	State      string    `json:"state"`
	BreakGlass bool      `json:"break_glass"`
	Reason     string    `json:"reason"`
	CreatedAt  time.Time `json:"created_at"`
}

type grantsResponse struct {
	Grants        []grantResponse `json:"grants"`
	NextPageToken string          `json:"next_page_token,omitempty"`
}

func grantJSON(g grants.Grant) grantResponse {
	return grantResponse{
		ID: g.ID, Resource: g.Resource.String(), Subject: g.Subject.String(), Role: g.Role,
		NotBefore: g.NotBefore, ExpiresAt: g.ExpiresAt, Grantor: g.Grantor, State: string(g.State),
		BreakGlass: g.BreakGlass, Reason: g.Reason, CreatedAt: g.CreatedAt,
	}
}

func (a *api) createGrant(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	var body grantRequest
	if !a.decode(w, r, &body) {
		return
	}
	req, ok := parseGrantRequest(w, body)
	if !ok {
		return
	}
	if body.Reason == "" {
		problem.Write(w, http.StatusBadRequest, "reason is required: say why the grant is needed")
		return
	}
	if !validReason(body.Reason) {
		problem.Write(w, http.StatusBadRequest, fmt.Sprintf("reason must be at most %d bytes of text without control or bidirectional formatting characters", MaxReasonLength))
		return
	}

	g, err := a.grants.Create(r.Context(), a.caller(r, p, body.Reason), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, grantJSON(g))
}

// parseGrantRequest parses the fields of a grant request. On failure it
// has written the 400 response and returns false.
func parseGrantRequest(w http.ResponseWriter, body grantRequest) (grants.CreateRequest, bool) {
	var req grants.CreateRequest
	var err error
	if req.Resource, err = object.ParseResource(body.Resource); err != nil {
		problem.Write(w, http.StatusBadRequest, "resource: "+err.Error())
		return req, false
	}
	if req.Subject, err = object.ParseSubject(body.Subject); err != nil {
		problem.Write(w, http.StatusBadRequest, "subject: "+err.Error())
		return req, false
	}
	if body.Role == "" {
		problem.Write(w, http.StatusBadRequest, "role is required")
		return req, false
	}
	req.Role = body.Role
	req.BreakGlass = body.BreakGlass

	times := []struct {
		name  string
		value string
		dst   *time.Time
	}{{"expires_at", body.ExpiresAt, &req.ExpiresAt}, {"not_before", body.NotBefore, &req.NotBefore}}
	for _, field := range times {
		if field.value == "" {
			continue
		}
		if *field.dst, err = time.Parse(time.RFC3339, field.value); err != nil {
			problem.Write(w, http.StatusBadRequest, field.name+" must be an RFC 3339 time, such as 2026-01-02T15:04:05Z")
			return req, false
		}
	}
	if body.Duration != "" {
		if req.Duration, err = time.ParseDuration(body.Duration); err != nil || req.Duration <= 0 {
			problem.Write(w, http.StatusBadRequest, fmt.Sprintf("duration %q must be a positive Go duration, such as 2h or 90m", body.Duration))
			return req, false
		}
	}
	return req, true
}

func (a *api) listGrants(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	q := r.URL.Query()
	req := grants.ListRequest{State: grants.State(q.Get("state")), PageToken: q.Get("page_token")}
	var err error
	if v := q.Get("resource"); v != "" {
		if req.Resource, err = object.ParseResource(v); err != nil {
			problem.Write(w, http.StatusBadRequest, "resource: "+err.Error())
			return
		}
	}
	if v := q.Get("subject"); v != "" {
		if req.Subject, err = object.ParseSubject(v); err != nil {
			problem.Write(w, http.StatusBadRequest, "subject: "+err.Error())
			return
		}
	}
	if v := q.Get("break_glass"); v != "" {
		if req.BreakGlass, err = strconv.ParseBool(v); err != nil {
			problem.Write(w, http.StatusBadRequest, "break_glass must be true or false")
			return
		}
	}
	if v := q.Get("page_size"); v != "" {
		if req.PageSize, err = strconv.Atoi(v); err != nil {
			problem.Write(w, http.StatusBadRequest, "page_size must be an integer")
			return
		}
	}

	list, next, err := a.grants.List(r.Context(), p.Ref, req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	resp := grantsResponse{Grants: make([]grantResponse, len(list)), NextPageToken: next}
	for i, g := range list {
		resp.Grants[i] = grantJSON(g)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *api) getGrant(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	g, err := a.grants.Get(r.Context(), p.Ref, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, grantJSON(g))
}

func (a *api) revokeGrant(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	reason, ok := queryReason(w, r)
	if !ok {
		return
	}
	g, err := a.grants.Revoke(r.Context(), a.caller(r, p, reason), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, grantJSON(g))
}
