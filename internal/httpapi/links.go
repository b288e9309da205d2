package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/links"
	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

// registerLinkRoutes adds the share link endpoints.
func (a *api) registerLinkRoutes(mux *http.ServeMux) {
	if err := a.links.RegisterMetrics(a.metrics.Registry); err != nil {
		a.logger.Warn("register share link metrics", "error", err)
	}
	mux.Handle("POST /v1/links", a.authenticated(a.createLink))
	mux.Handle("GET /v1/links", a.authenticated(a.listLinks))
	mux.Handle("POST /v1/links/redeem", a.authenticated(a.redeemLink))
	mux.Handle("DELETE /v1/links/{id}", a.authenticated(a.revokeLink))
}

type createLinkRequest struct {
	Resource  string  `json:"resource"`
	Role      string  `json:"role"`
	Audience  string  `json:"audience"`
	ExpiresAt *string `json:"expires_at"`
	MaxUses   *int    `json:"max_uses"`
	Reason    string  `json:"reason"`
}

// linkEntry is a link as the API shows it. Token is set only in the
// response to its creation.
type linkEntry struct {
	ID        string     `json:"id"`
	Resource  string     `json:"resource"`
	Role      string     `json:"role"`
	Audience  string     `json:"audience"`
	ExpiresAt *time.Time `json:"expires_at"`
	MaxUses   *int       `json:"max_uses"`
	Uses      int        `json:"uses"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	State     string     `json:"state"`
	Token     string     `json:"token,omitempty"`
}

func (a *api) linkEntry(l links.Link) linkEntry {
	e := linkEntry{
		ID: l.ID, Resource: l.Resource.String(), Role: l.Role, Audience: l.Audience, ExpiresAt: l.ExpiresAt,
		Uses: l.Uses, CreatedBy: l.CreatedBy, CreatedAt: l.CreatedAt, State: a.links.State(l),
	}
	if l.MaxUses > 0 {
		e.MaxUses = &l.MaxUses
	}
	return e
}

// parseCreateLink turns the request body into a links.CreateRequest.
// The service checks the values; this checks only their syntax.
func parseCreateLink(body createLinkRequest) (links.CreateRequest, error) {
	resource, err := object.ParseResource(body.Resource)
	if err != nil {
		return links.CreateRequest{}, fmt.Errorf("resource: %w", err)
	}
	req := links.CreateRequest{Resource: resource, Role: body.Role, Audience: body.Audience}
	if body.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339, *body.ExpiresAt)
		if err != nil {
			return links.CreateRequest{}, fmt.Errorf("expires_at %q is not an RFC 3339 time, such as 2030-01-02T15:04:05Z", *body.ExpiresAt)
		}
		t = t.UTC().Truncate(time.Microsecond)
		req.ExpiresAt = &t
	}
	if body.MaxUses != nil {
		if *body.MaxUses < 1 || *body.MaxUses > links.MaxUsesLimit {
			return links.CreateRequest{}, fmt.Errorf("max_uses must be between 1 and %d, not %d", links.MaxUsesLimit, *body.MaxUses)
		}
		req.MaxUses = *body.MaxUses
	}
	return req, nil
}

func (a *api) createLink(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	var body createLinkRequest
	if !a.decode(w, r, &body) {
		return
	}
	req, err := parseCreateLink(body)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, err.Error())
		return
	}
	if !validReason(body.Reason) {
		problem.Write(w, http.StatusBadRequest, fmt.Sprintf("reason must be at most %d bytes of text without control or bidirectional formatting characters", MaxReasonLength))
		return
	}

	l, token, err := a.links.Create(r.Context(), a.caller(r, p, body.Reason), req)
	if err != nil {
		a.failLink(w, r, err)
		return
	}
	entry := a.linkEntry(l)
	entry.Token = token
	writeJSON(w, http.StatusCreated, entry)
}

type linksResponse struct {
	Links         []linkEntry `json:"links"`
	NextPageToken string      `json:"next_page_token,omitempty"`
}

func (a *api) listLinks(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	query := r.URL.Query()
	resource, err := object.ParseResource(query.Get("resource"))
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "resource: "+err.Error())
		return
	}
	pageSize := 0
	if v := query.Get("page_size"); v != "" {
		if pageSize, err = strconv.Atoi(v); err != nil {
			problem.Write(w, http.StatusBadRequest, "page_size must be an integer")
			return
		}
	}

	page, next, err := a.links.List(r.Context(), p.Ref, resource, pageSize, query.Get("page_token"))
	if err != nil {
		a.failLink(w, r, err)
		return
	}
	resp := linksResponse{Links: make([]linkEntry, len(page)), NextPageToken: next}
	for i, l := range page {
		resp.Links[i] = a.linkEntry(l)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *api) revokeLink(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	reason, ok := queryReason(w, r)
	if !ok {
		return
	}
	if err := a.links.Revoke(r.Context(), a.caller(r, p, reason), r.PathValue("id")); err != nil {
		a.failLink(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type redeemLinkRequest struct {
	Token string `json:"token"`
}

type redeemLinkResponse struct {
	Resource  string     `json:"resource"`
	Role      string     `json:"role"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func (a *api) redeemLink(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	var body redeemLinkRequest
	if !a.decode(w, r, &body) {
		return
	}
	if body.Token == "" {
		problem.Write(w, http.StatusBadRequest, "token is required")
		return
	}

	got, err := a.links.Redeem(r.Context(), a.caller(r, p, ""), body.Token)
	if err != nil {
		a.failLink(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, redeemLinkResponse{Resource: got.Resource.String(), Role: got.Role, ExpiresAt: got.ExpiresAt})
}

// checkLinkToken serves POST /v1/check for a request that names a
// link_token in place of a subject, and checks as the token's link.
func (a *api) checkLinkToken(w http.ResponseWriter, r *http.Request, p *authn.Principal, body checkRequest) {
	if a.links == nil {
		problem.Write(w, http.StatusBadRequest, "link_token is not accepted: share links are not enabled on this server")
		return
	}
	if body.Permission == "" {
		problem.Write(w, http.StatusBadRequest, "permission is required")
		return
	}
	resource, err := object.ParseResource(body.Resource)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "resource: "+err.Error())
		return
	}
	consistency, err := body.parse()
	if err != nil {
		problem.Write(w, http.StatusBadRequest, err.Error())
		return
	}

	d, err := a.links.CheckToken(r.Context(), a.clientIP(r), *body.LinkToken, body.Permission, resource, consistency)
	if err != nil {
		a.metrics.Checks.WithLabelValues("error").Inc()
		a.failLink(w, r, err)
		return
	}
	a.countDecision(d.Allowed)
	writeJSON(w, http.StatusOK, checkResponse{Allowed: d.Allowed, ConsistencyToken: d.Token})
}

// failLink writes the problem for an error of the links service: every
// unusable token is one uniform 404, and a client over its limit of
// unknown tokens gets 429 with Retry-After.
func (a *api) failLink(w http.ResponseWriter, r *http.Request, err error) {
	var limited *links.RateLimitedError
	switch {
	case errors.As(err, &limited):
		seconds := int(limited.RetryAfter.Round(time.Second) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(seconds, 1)))
		problem.Write(w, http.StatusTooManyRequests, "too many unknown link tokens from this client; retry after the time in Retry-After")
	case errors.Is(err, links.ErrTokenNotFound):
		problem.Write(w, http.StatusNotFound, "link token not found, or it can no longer be used")
	default:
		a.fail(w, r, err)
	}
}
