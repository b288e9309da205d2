// Package client is a typed Go client for Gatehouse's HTTP API (/v1):
// creating and deleting resources, managing their members, and asking
// checks and lookups.
//
// Every method sends one HTTP request bounded by its context. A non-2xx
// response is returned as an *Error that carries the RFC 9457 problem
// details; IsNotFound, IsForbidden, IsConflict, IsUnauthorized and
// IsUnavailable classify it.
//
// Treat every error from Check, CheckBulk or a lookup as a deny. Gatehouse
// returns "allowed" only for a definite yes, and an error means that the
// client received no decision at all.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// consistencyHeader carries the consistency token of 204 responses.
const consistencyHeader = "Gatehouse-Consistency-Token"

// maxResponseBytes bounds a successful response body. The largest valid
// response, a page of 1000 members with long subject ids, is well below it.
const maxResponseBytes = 8 << 20

// defaultTimeout bounds each request of the default HTTP client, in case the
// caller's context has no deadline.
const defaultTimeout = 30 * time.Second

// Client calls one Gatehouse server. It is safe for concurrent use, and it
// is not changed after New.
type Client struct {
	baseURL    string
	httpClient *http.Client
	token      func(ctx context.Context) (string, error)
	userAgent  string
}

// Option configures a Client in New.
type Option func(*Client)

// WithHTTPClient sets the HTTP client that sends the requests, for custom
// TLS, proxies or timeouts. Default: an http.Client with a 30-second
// timeout on http.DefaultTransport.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.httpClient = hc }
}

// WithToken sends token as the bearer access token of every /v1 request.
// Default: no token, so /v1 requests get 401.
func WithToken(token string) Option {
	return func(c *Client) {
		c.token = func(context.Context) (string, error) { return token, nil }
	}
}

// WithTokenSource calls source before every /v1 request for the bearer
// access token to send, so that it can return a fresh token when the old
// one expires. It must be safe for concurrent use. An error from source
// fails the request before anything is sent. It replaces WithToken.
func WithTokenSource(source func(ctx context.Context) (string, error)) Option {
	return func(c *Client) { c.token = source }
}

// WithUserAgent sets the User-Agent header. Default: "gatehouse-go-client".
func WithUserAgent(userAgent string) Option {
	return func(c *Client) { c.userAgent = userAgent }
}

// New returns a Client for the server at baseURL, such as
// "https://gatehouse.example.com" or "http://127.0.0.1:8080". baseURL may
// carry a path prefix when a proxy serves Gatehouse below one.
//
// New does not contact the server. It does not reject plain http, which
// sends the access token in clear text: use https for anything but
// loopback.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("gatehouse: base URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gatehouse: base URL %q: expected http:// or https:// and a host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("gatehouse: base URL %q: must not contain user info, a query or a fragment", baseURL)
	}

	c := &Client{
		baseURL:    strings.TrimSuffix(u.String(), "/"),
		httpClient: &http.Client{Timeout: defaultTimeout},
		userAgent:  "gatehouse-go-client",
	}
	for _, opt := range opts {
		opt(c)
	}
	if c.httpClient == nil {
		return nil, errors.New("gatehouse: WithHTTPClient needs a non-nil *http.Client")
	}
	return c, nil
}

// Me returns the principal that the access token identifies.
func (c *Client) Me(ctx context.Context) (*Me, error) {
	var out Me
	if _, err := c.do(ctx, http.MethodGet, "/v1/me", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateResource creates a resource, its link to its parent and the
// creator's role in one atomic write. Ids are unique per type across all
// orgs, so a taken id is a 409 (IsConflict) wherever the other resource
// lives. Any principal may create an org. Below an org, the caller needs
// "create" on the parent.
func (c *Client) CreateResource(ctx context.Context, req CreateResourceRequest) (*CreateResourceResponse, error) {
	var out CreateResourceResponse
	if _, err := c.do(ctx, http.MethodPost, "/v1/resources", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteResource deletes resource, such as "project:p1", with everything
// below it and every role on any of them. The caller needs "delete" on it.
// It returns the consistency token of the snapshot without the resource.
func (c *Client) DeleteResource(ctx context.Context, resource string) (string, error) {
	path, err := resourcePath(resource)
	if err != nil {
		return "", err
	}
	header, err := c.do(ctx, http.MethodDelete, path, nil, nil, nil)
	if err != nil {
		return "", err
	}
	return header.Get(consistencyHeader), nil
}

// SetMember gives subject (a user, a service or a group) the direct role
// on resource, replacing any direct role it held there. The caller needs
// "manage" on resource, and on an org "manage_owners" (owners only) to make
// or unmake an owner.
func (c *Client) SetMember(ctx context.Context, resource, subject, role string) (*SetMemberResponse, error) {
	path, err := memberPath(resource, subject)
	if err != nil {
		return nil, err
	}
	var out SetMemberResponse
	body := struct {
		Role string `json:"role"`
	}{role}
	if _, err := c.do(ctx, http.MethodPut, path, nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveMember removes subject's direct role on resource. Removing a role
// that does not exist succeeds. The caller needs what SetMember needs. It
// returns the consistency token of the snapshot without the role.
func (c *Client) RemoveMember(ctx context.Context, resource, subject string) (string, error) {
	path, err := memberPath(resource, subject)
	if err != nil {
		return "", err
	}
	header, err := c.do(ctx, http.MethodDelete, path, nil, nil, nil)
	if err != nil {
		return "", err
	}
	return header.Get(consistencyHeader), nil
}

// ListMembers returns one page of the direct members of req.Resource. The
// caller needs "manage" on it. Members lists every page.
func (c *Client) ListMembers(ctx context.Context, req ListMembersRequest) (*ListMembersResponse, error) {
	path, err := resourcePath(req.Resource)
	if err != nil {
		return nil, err
	}
	query := url.Values{}
	if req.PageSize != 0 {
		query.Set("page_size", strconv.Itoa(req.PageSize))
	}
	if req.PageToken != "" {
		query.Set("page_token", req.PageToken)
	}
	var out ListMembersResponse
	if _, err := c.do(ctx, http.MethodGet, path+"/members", query, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Members iterates over every direct member of req.Resource, fetching pages
// of req.PageSize as it goes, starting at req.PageToken. It stops after the
// first error, which it yields.
func (c *Client) Members(ctx context.Context, req ListMembersRequest) iter.Seq2[Member, error] {
	return paginate(req.PageToken, func(token string) ([]Member, string, error) {
		req.PageToken = token
		page, err := c.ListMembers(ctx, req)
		if err != nil {
			return nil, "", err
		}
		return page.Members, page.NextPageToken, nil
	})
}

// Check returns whether the subject has the permission on the resource.
//
// Any error means "no answer" and must be treated as a deny. Allowed is
// true only for a definite yes. A caller may always ask about itself. To ask
// about another subject, it needs "inspect" on the resource, which "manage"
// and a service's org "app" role include. Without it the server returns 403,
// or 404 when the caller cannot view the resource either.
func (c *Client) Check(ctx context.Context, req CheckRequest) (CheckResponse, error) {
	var out CheckResponse
	if _, err := c.do(ctx, http.MethodPost, "/v1/check", nil, req, &out); err != nil {
		return CheckResponse{}, err
	}
	return out, nil
}

// Allowed returns whether subject has permission on resource, and false on
// any error, for middleware that only needs a yes or no. An empty subject
// means the caller. Use Check to tell a deny from a failure.
func (c *Client) Allowed(ctx context.Context, subject, permission, resource string) bool {
	resp, err := c.Check(ctx, CheckRequest{Subject: subject, Permission: permission, Resource: resource})
	return err == nil && resp.Allowed
}

// CheckBulk runs 1 to 100 checks at one snapshot. Each check is
// authorized as Check would authorize it and fails on its own, in its
// result's Error, while the call as a whole succeeds. A result with an
// Error, like any error returned, is a deny.
func (c *Client) CheckBulk(ctx context.Context, req CheckBulkRequest) (*CheckBulkResponse, error) {
	var out CheckBulkResponse
	if _, err := c.do(ctx, http.MethodPost, "/v1/check/bulk", nil, req, &out); err != nil {
		return nil, err
	}
	if len(out.Results) != len(req.Checks) {
		return nil, fmt.Errorf("gatehouse: bulk check returned %d results for %d checks", len(out.Results), len(req.Checks))
	}
	return &out, nil
}

// LookupResources returns one page of the resources of req.ResourceType on
// which the subject has req.Permission. About another subject, the page
// holds only the resources on which the caller has "inspect", so it can be
// shorter than the page size, or empty, while more pages follow.
func (c *Client) LookupResources(ctx context.Context, req LookupResourcesRequest) (*LookupResourcesResponse, error) {
	var out LookupResourcesResponse
	if _, err := c.do(ctx, http.MethodPost, "/v1/lookup/resources", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Resources iterates over every resource that LookupResources would return
// page by page, each once: the server may repeat a resource on a later page,
// and Resources skips the repeat. It stops after the first error, which it
// yields.
func (c *Client) Resources(ctx context.Context, req LookupResourcesRequest) iter.Seq2[string, error] {
	pages := paginate(req.PageToken, func(token string) ([]string, string, error) {
		req.PageToken = token
		page, err := c.LookupResources(ctx, req)
		if err != nil {
			return nil, "", err
		}
		return page.Resources, page.NextPageToken, nil
	})
	return func(yield func(string, error) bool) {
		seen := make(map[string]bool)
		for resource, err := range pages {
			if err == nil {
				if seen[resource] {
					continue
				}
				seen[resource] = true
			}
			if !yield(resource, err) {
				return
			}
		}
	}
}

// LookupSubjects returns one page, sorted by id, of the subjects of
// req.SubjectType that have req.Permission on req.Resource. The caller
// needs "inspect" on the resource. When more than 10000 subjects match,
// the server returns 409 (IsConflict) rather than a partial list.
func (c *Client) LookupSubjects(ctx context.Context, req LookupSubjectsRequest) (*LookupSubjectsResponse, error) {
	var out LookupSubjectsResponse
	if _, err := c.do(ctx, http.MethodPost, "/v1/lookup/subjects", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Subjects iterates over every subject that LookupSubjects would return
// page by page. It stops after the first error, which it yields.
func (c *Client) Subjects(ctx context.Context, req LookupSubjectsRequest) iter.Seq2[string, error] {
	return paginate(req.PageToken, func(token string) ([]string, string, error) {
		req.PageToken = token
		page, err := c.LookupSubjects(ctx, req)
		if err != nil {
			return nil, "", err
		}
		return page.Subjects, page.NextPageToken, nil
	})
}

// Healthz returns nil when the server process responds to GET /healthz
// with 200. It sends no access token.
func (c *Client) Healthz(ctx context.Context) error {
	_, err := c.send(ctx, http.MethodGet, "/healthz", nil, nil, nil, false)
	return err
}

// Ready returns nil when the server can answer requests (GET /readyz), and
// a 503 *Error (IsUnavailable) while its authorization engine cannot. It
// sends no access token.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.send(ctx, http.MethodGet, "/readyz", nil, nil, nil, false)
	return err
}

// do sends an authenticated request; see send.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) (http.Header, error) {
	return c.send(ctx, method, path, query, in, out, true)
}

// send encodes in (when non-nil) as the JSON body, sends the request, and
// decodes a 2xx body into out (when non-nil) or a non-2xx one into *Error.
// It returns the response headers.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, in, out any, authenticate bool) (http.Header, error) {
	endpoint := c.baseURL + path
	if len(query) > 0 {
		endpoint += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("gatehouse: %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, body)
	if err != nil {
		return nil, fmt.Errorf("gatehouse: %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	req.Header.Set("User-Agent", c.userAgent)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	if authenticate && c.token != nil {
		token, err := c.token(ctx)
		if err != nil {
			return nil, fmt.Errorf("gatehouse: %s %s: get access token: %w", method, path, err)
		}
		if token == "" {
			return nil, fmt.Errorf("gatehouse: %s %s: the token source returned an empty access token", method, path)
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}

	resp, err := c.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gatehouse: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, decodeError(resp)
	}
	if out == nil {
		return resp.Header, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("gatehouse: %s %s: read response: %w", method, path, err)
	}
	if len(data) > maxResponseBytes {
		return nil, fmt.Errorf("gatehouse: %s %s: response body is larger than %d bytes", method, path, maxResponseBytes)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("gatehouse: %s %s: decode response: %w", method, path, err)
	}
	return resp.Header, nil
}

// resourcePath returns the URL path of resource, such as
// "/v1/resources/document/d1" for "document:d1", with both parts escaped.
func resourcePath(resource string) (string, error) {
	typ, id, ok := strings.Cut(resource, ":")
	if !ok || !validSegment(typ) || !validSegment(id) {
		return "", fmt.Errorf("gatehouse: resource %q: expected \"type:id\"", resource)
	}
	return "/v1/resources/" + url.PathEscape(typ) + "/" + url.PathEscape(id), nil
}

// memberPath returns the URL path of subject's membership of resource.
func memberPath(resource, subject string) (string, error) {
	path, err := resourcePath(resource)
	if err != nil {
		return "", err
	}
	if !strings.Contains(subject, ":") || !validSegment(subject) {
		return "", fmt.Errorf("gatehouse: subject %q: expected \"type:id\"", subject)
	}
	return path + "/members/" + url.PathEscape(subject), nil
}

// validSegment rejects path segments that would change the meaning of the
// URL path once the server cleans it.
func validSegment(s string) bool {
	return s != "" && s != "." && s != ".."
}

// paginate turns a page fetcher into an iterator. fetch receives a page
// token ("" first) and returns the page's items and the next token.
func paginate[T any](first string, fetch func(token string) ([]T, string, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		token := first
		for {
			items, next, err := fetch(token)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, item := range items {
				if !yield(item, nil) {
					return
				}
			}
			if next == "" {
				return
			}
			if next == token {
				// A server that returned the same token again would make
				// this loop forever.
				var zero T
				yield(zero, fmt.Errorf("gatehouse: the server returned page token %q twice", next))
				return
			}
			token = next
		}
	}
}
