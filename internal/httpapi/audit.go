package httpapi

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/audit"
	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

type auditEvent struct {
	ID               string            `json:"id"`
	Time             time.Time         `json:"time"`
	Org              string            `json:"org"`
	Actor            audit.Actor       `json:"actor"`
	OnBehalfOf       string            `json:"on_behalf_of,omitempty"`
	Action           string            `json:"action"`
	Resource         string            `json:"resource,omitempty"`
	Subject          string            `json:"subject,omitempty"`
	Before           map[string]string `json:"before,omitempty"`
	After            map[string]string `json:"after,omitempty"`
	Reason           string            `json:"reason,omitempty"`
	ClientIP         string            `json:"client_ip,omitempty"`
	UserAgent        string            `json:"user_agent,omitempty"`
	RequestID        string            `json:"request_id,omitempty"`
	BreakGlass       bool              `json:"break_glass,omitempty"`
	Outcome          string            `json:"outcome"`
	ConsistencyToken string            `json:"consistency_token,omitempty"`
}

type auditResponse struct {
	Events        []auditEvent `json:"events"`
	NextPageToken string       `json:"next_page_token,omitempty"`
}

// listAudit serves GET /v1/audit. Owners and admins of an org read its
// events; platform auditors read every org's.
func (a *api) listAudit(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	q := r.URL.Query()
	f := audit.Filter{Resource: q.Get("resource"), Actor: q.Get("actor"), Action: q.Get("action")}
	if v := q.Get("page_token"); v != "" {
		after, err := strconv.ParseInt(v, 10, 64)
		if err != nil || after < 1 {
			problem.Write(w, http.StatusBadRequest, "page_token is not valid")
			return
		}
		f.After = after
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				problem.Write(w, http.StatusBadRequest, name+" must be an RFC 3339 time, such as 2026-01-02T15:04:05Z")
				return
			}
			*dst = t
		}
	}
	f.Limit = a.authz.Limits().DefaultPageSize
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > a.authz.Limits().MaxPageSize {
			problem.Write(w, http.StatusBadRequest, "page_size must be an integer from 1 to "+strconv.Itoa(a.authz.Limits().MaxPageSize)+", or 0 for the default")
			return
		}
		// 0 means the default, as in the other listings.
		if n > 0 {
			f.Limit = n
		}
	}
	if len(f.Resource) > 1100 || len(f.Actor) > 1100 || len(f.Action) > 64 {
		problem.Write(w, http.StatusBadRequest, "a filter value is too long")
		return
	}

	// Who may read what: the org filter names the chain to read.
	auditor := slices.Contains(a.platformAuditors, p.Ref.String())
	if orgParam := q.Get("org"); orgParam != "" {
		org, err := object.ParseResource(orgParam)
		if err != nil || org.Type != object.TypeOrg {
			problem.Write(w, http.StatusBadRequest, "org must be an org, such as org:acme")
			return
		}
		f.Chains = []string{org.String()}
		if !auditor {
			if err := a.authz.RequireManage(r.Context(), p.Ref, org); err != nil {
				a.fail(w, r, err)
				return
			}
			// An org id is free again once its org is deleted. Its
			// managers see only the events of the org they manage: from
			// its latest creation on, never a former tenant's.
			created, err := a.latestCreation(r, org)
			if err != nil {
				a.fail(w, r, err)
				return
			}
			f.After = max(f.After, created-1)
		}
	} else if !auditor {
		problem.Write(w, http.StatusBadRequest, "org is required: only platform auditors may read every org's events")
		return
	}

	events, err := a.audit.List(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	resp := auditResponse{Events: make([]auditEvent, len(events))}
	for i, e := range events {
		resp.Events[i] = auditEvent{
			ID: e.ID, Time: e.Time, Org: e.Chain, Actor: e.Actor, OnBehalfOf: e.OnBehalfOf,
			Action: e.Action, Resource: e.Resource, Subject: e.Subject, Before: e.Before, After: e.After,
			Reason: e.Reason, ClientIP: e.ClientIP, UserAgent: e.UserAgent, RequestID: e.RequestID,
			BreakGlass: e.BreakGlass, Outcome: e.Outcome, ConsistencyToken: e.ConsistencyToken,
		}
	}
	if len(events) == f.Limit {
		resp.NextPageToken = strconv.FormatInt(events[len(events)-1].Position, 10)
	}
	writeJSON(w, http.StatusOK, resp)
}

// latestCreation returns the position of the latest applied creation event
// of org in its chain, or 0 when there is none.
func (a *api) latestCreation(r *http.Request, org object.Ref) (int64, error) {
	var latest int64
	f := audit.Filter{Chains: []string{org.String()}, Resource: org.String(), Action: "resource.create", Limit: 1000}
	for {
		events, err := a.audit.List(r.Context(), f)
		if err != nil {
			return 0, err
		}
		for _, e := range events {
			if e.Outcome != "" {
				latest = e.Position
			}
		}
		if len(events) < f.Limit {
			return latest, nil
		}
		f.After = events[len(events)-1].Position
	}
}
