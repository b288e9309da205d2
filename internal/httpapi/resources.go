package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

// consistencyHeader carries the consistency token of responses without a
// body (204).
const consistencyHeader = "Gatehouse-Consistency-Token"

type meResponse struct {
	Principal string `json:"principal"`
	Issuer    string `json:"issuer"`
	Subject   string `json:"subject"`
	Tenant    string `json:"tenant,omitempty"`
}

func (a *api) me(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	writeJSON(w, http.StatusOK, meResponse{Principal: p.Ref.String(), Issuer: p.Issuer, Subject: p.Subject, Tenant: p.Tenant})
}

type createRequest struct {
	Resource string  `json:"resource"`
	Parent   string  `json:"parent"`
	Owner    *string `json:"owner"`
	Reason   string  `json:"reason"`
}

type createResponse struct {
	Resource         string `json:"resource"`
	Parent           string `json:"parent,omitempty"`
	Owner            string `json:"owner"`
	Role             string `json:"role"`
	ConsistencyToken string `json:"consistency_token"`
}

func (a *api) createResource(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	var body createRequest
	if !a.decode(w, r, &body) {
		return
	}
	resource, err := object.ParseResource(body.Resource)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "resource: "+err.Error())
		return
	}
	var parent, owner object.Ref
	if body.Parent != "" {
		if parent, err = object.ParseResource(body.Parent); err != nil {
			problem.Write(w, http.StatusBadRequest, "parent: "+err.Error())
			return
		}
	}
	if owner, err = optionalSubject("owner", body.Owner, object.Ref{}); err != nil {
		problem.Write(w, http.StatusBadRequest, err.Error())
		return
	}

	if !validReason(body.Reason) {
		problem.Write(w, http.StatusBadRequest, fmt.Sprintf("reason must be at most %d bytes of text without control or bidirectional formatting characters", MaxReasonLength))
		return
	}

	created, err := a.authz.Create(r.Context(), a.caller(r, p, body.Reason), authzCreate(resource, parent, owner))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	resp := createResponse{
		Resource: created.Resource.String(), Owner: created.Owner.String(),
		Role: created.Role, ConsistencyToken: created.Token,
	}
	if !created.Parent.IsZero() {
		resp.Parent = created.Parent.String()
	}
	writeJSON(w, http.StatusCreated, resp)
}

func (a *api) deleteResource(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	resource, ok := pathResource(w, r)
	if !ok {
		return
	}
	reason, ok := queryReason(w, r)
	if !ok {
		return
	}
	token, err := a.authz.Delete(r.Context(), a.caller(r, p, reason), resource)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set(consistencyHeader, token)
	w.WriteHeader(http.StatusNoContent)
}

type memberRequest struct {
	Role   string `json:"role"`
	Reason string `json:"reason"`
}

type memberResponse struct {
	Resource         string `json:"resource"`
	Subject          string `json:"subject"`
	Role             string `json:"role"`
	PreviousRole     string `json:"previous_role,omitempty"`
	ConsistencyToken string `json:"consistency_token"`
}

func (a *api) setMember(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	resource, subject, ok := pathMember(w, r)
	if !ok {
		return
	}
	var body memberRequest
	if !a.decode(w, r, &body) {
		return
	}
	if body.Role == "" {
		problem.Write(w, http.StatusBadRequest, "role is required")
		return
	}

	if !validReason(body.Reason) {
		problem.Write(w, http.StatusBadRequest, fmt.Sprintf("reason must be at most %d bytes of text without control or bidirectional formatting characters", MaxReasonLength))
		return
	}

	change, err := a.authz.SetMember(r.Context(), a.caller(r, p, body.Reason), resource, subject, body.Role)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, memberResponse{
		Resource: resource.String(), Subject: subject.String(), Role: change.After,
		PreviousRole: change.Before, ConsistencyToken: change.Token,
	})
}

func (a *api) getMember(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	resource, subject, ok := pathMember(w, r)
	if !ok {
		return
	}
	m, err := a.authz.GetMember(r.Context(), p.Ref, resource, subject)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, memberEntry{Subject: m.Subject.String(), Role: m.Role, ExpiresAt: m.ExpiresAt})
}

func (a *api) removeMember(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	resource, subject, ok := pathMember(w, r)
	if !ok {
		return
	}
	reason, ok := queryReason(w, r)
	if !ok {
		return
	}
	change, err := a.authz.RemoveMember(r.Context(), a.caller(r, p, reason), resource, subject)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set(consistencyHeader, change.Token)
	w.WriteHeader(http.StatusNoContent)
}

type memberEntry struct {
	Subject   string     `json:"subject"`
	Role      string     `json:"role"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

type membersResponse struct {
	Members       []memberEntry `json:"members"`
	NextPageToken string        `json:"next_page_token,omitempty"`
}

func (a *api) listMembers(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	resource, ok := pathResource(w, r)
	if !ok {
		return
	}
	pageSize := 0
	if v := r.URL.Query().Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			problem.Write(w, http.StatusBadRequest, "page_size must be an integer")
			return
		}
		pageSize = n
	}

	members, next, err := a.authz.ListMembers(r.Context(), p.Ref, resource, pageSize, r.URL.Query().Get("page_token"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	resp := membersResponse{Members: make([]memberEntry, len(members)), NextPageToken: next}
	for i, m := range members {
		resp.Members[i] = memberEntry{Subject: m.Subject.String(), Role: m.Role, ExpiresAt: m.ExpiresAt}
	}
	writeJSON(w, http.StatusOK, resp)
}

// queryReason returns the optional "reason" query parameter of a DELETE or
// of POST .../revoke-sessions. These requests take no body, so it rejects
// one with a body, because a reason in it would otherwise be dropped. On
// failure it has written the 400 response and returns false.
func queryReason(w http.ResponseWriter, r *http.Request) (string, bool) {
	if hasBody(r) {
		problem.Write(w, http.StatusBadRequest, methodInDetail(r.Method)+" "+clip(r.URL.EscapedPath(), maxEchoInDetail)+" takes no request body; give the reason in the reason query parameter")
		return "", false
	}
	reason := r.URL.Query().Get("reason")
	if !validReason(reason) {
		problem.Write(w, http.StatusBadRequest, fmt.Sprintf("reason must be at most %d bytes of text without control or bidirectional formatting characters", MaxReasonLength))
		return "", false
	}
	return reason, true
}

// hasBody reports whether r has a body of at least one byte. It reads that
// byte, so the body is not usable afterwards. A body that cannot be read
// counts as present.
func hasBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	var first [1]byte
	n, err := io.ReadFull(r.Body, first[:])
	return n > 0 || !errors.Is(err, io.EOF)
}

// pathResource parses the {type} and {id} path values.
func pathResource(w http.ResponseWriter, r *http.Request) (object.Ref, bool) {
	ref, err := object.ParseResource(r.PathValue("type") + ":" + r.PathValue("id"))
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "resource: "+err.Error())
		return object.Ref{}, false
	}
	return ref, true
}

// pathMember parses the {type}, {id} and {subject} path values.
func pathMember(w http.ResponseWriter, r *http.Request) (object.Ref, object.Ref, bool) {
	resource, ok := pathResource(w, r)
	if !ok {
		return object.Ref{}, object.Ref{}, false
	}
	subject, ok := pathSubject(w, r)
	return resource, subject, ok
}

// pathSubject parses the {subject} path value.
func pathSubject(w http.ResponseWriter, r *http.Request) (object.Ref, bool) {
	ref, err := object.ParseSubject(r.PathValue("subject"))
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "subject: "+err.Error())
		return object.Ref{}, false
	}
	return ref, true
}

func authzCreate(resource, parent, owner object.Ref) authz.CreateRequest {
	return authz.CreateRequest{Resource: resource, Parent: parent, Owner: owner}
}
