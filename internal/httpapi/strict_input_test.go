package httpapi_test

// The tests in this file send requests that Gatehouse must reject before it
// acts: unknown or repeated query parameters, a body on a request that takes
// none, a Content-Type with a charset other than UTF-8, an empty consistency
// token and a path with dot segments. Each reject is a 4xx problem, and the
// tests check that the request changed nothing.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/server"
)

// strictServer is a dev-mode Gatehouse on a loopback port, with an org
// acme, owned by alice, that holds document:d1.
type strictServer struct {
	srv    *server.Server
	url    string
	client *http.Client
	alice  string // alice's access token
}

func startStrictServer(t *testing.T) *strictServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, server.Config{Listener: ln, Dev: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run: %v", err)
		}
	})

	s := &strictServer{srv: srv, url: srv.URL(), client: &http.Client{Timeout: 30 * time.Second}}
	s.alice = s.token(t, "alice", false)
	for _, body := range []string{
		`{"resource":"org:acme"}`,
		`{"resource":"workspace:w1","parent":"org:acme"}`,
		`{"resource":"project:p1","parent":"workspace:w1"}`,
		`{"resource":"document:d1","parent":"project:p1"}`,
	} {
		s.mustStatus(t, s.send(t, http.MethodPost, "/v1/resources", s.alice, body), http.StatusCreated)
	}
	return s
}

func (s *strictServer) token(t *testing.T, subject string, service bool) string {
	t.Helper()
	token, err := s.srv.DevIssuer().Mint(subject, service)
	if err != nil {
		t.Fatalf("mint token for %q: %v", subject, err)
	}
	return token
}

// strictResponse is a fully read response, with its problem details when it
// has any.
type strictResponse struct {
	request string
	status  int
	header  http.Header
	body    string
	problem struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
}

// send sends a request with an optional bearer token and an optional JSON
// body. target is the path and query, sent as written.
func (s *strictServer) send(t *testing.T, method, target, token, body string) strictResponse {
	t.Helper()
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req := s.newRequest(t, method, target, reader)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return s.do(t, req)
}

// newRequest builds a request for target without cleaning or re-escaping
// its path, so that dot segments and repeated slashes reach the server.
func (s *strictServer) newRequest(t *testing.T, method, target string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, s.url, body)
	if err != nil {
		t.Fatal(err)
	}
	// The client sends an opaque URL as the request target unchanged.
	path, query, _ := strings.Cut(target, "?")
	req.URL.Opaque = path
	req.URL.RawQuery = query
	return req
}

func (s *strictServer) do(t *testing.T, req *http.Request) strictResponse {
	t.Helper()
	client := *s.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	r := strictResponse{request: req.Method + " " + req.URL.Opaque + "?" + req.URL.RawQuery, status: resp.StatusCode, header: resp.Header, body: string(data)}
	if resp.Header.Get("Content-Type") == "application/problem+json" {
		if err := json.Unmarshal(data, &r.problem); err != nil {
			t.Fatalf("%s: problem body %q: %v", r.request, data, err)
		}
	}
	return r
}

func (s *strictServer) mustStatus(t *testing.T, r strictResponse, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: got %d %s, want %d", r.request, r.status, r.body, status)
	}
}

// wantProblem fails unless r is a problem details response with status and
// a detail that contains detail.
func wantProblem(t *testing.T, r strictResponse, status int, detail string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: got %d %s, want %d", r.request, r.status, r.body, status)
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", r.request, ct)
	}
	if r.problem.Status != status {
		t.Errorf("%s: problem status %d, want %d", r.request, r.problem.Status, status)
	}
	if !strings.Contains(r.problem.Detail, detail) {
		t.Errorf("%s: detail %q, want it to contain %q", r.request, r.problem.Detail, detail)
	}
}

// allowed returns whether alice may view resource now.
func (s *strictServer) allowed(t *testing.T, resource string) bool {
	t.Helper()
	r := s.send(t, http.MethodPost, "/v1/check", s.alice, `{"permission":"view","resource":"`+resource+`"}`)
	s.mustStatus(t, r, http.StatusOK)
	var out struct{ Allowed bool }
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatal(err)
	}
	return out.Allowed
}

// auditActions returns the actions recorded in org:acme's audit log.
func (s *strictServer) auditActions(t *testing.T) []string {
	t.Helper()
	r := s.send(t, http.MethodGet, "/v1/audit?org=org:acme&page_size=1000", s.alice, "")
	s.mustStatus(t, r, http.StatusOK)
	var out struct {
		Events []struct{ Action string }
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range out.Events {
		actions = append(actions, e.Action)
	}
	return actions
}

// wantAuditUnchanged fails when org:acme's audit log differs from before.
func (s *strictServer) wantAuditUnchanged(t *testing.T, before []string) {
	t.Helper()
	if after := s.auditActions(t); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("audit log changed from %v to %v", before, after)
	}
}

// createGrantAndLink gives bob a temporary viewer grant on document:d1 and
// creates a share link for it, and returns their ids.
func (s *strictServer) createGrantAndLink(t *testing.T) (grantID, linkID string) {
	t.Helper()
	var out struct{ ID string }
	r := s.send(t, http.MethodPost, "/v1/grants", s.alice, `{"resource":"document:d1","subject":"user:dev|bob","role":"viewer","duration":"1h","reason":"review"}`)
	s.mustStatus(t, r, http.StatusCreated)
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatal(err)
	}
	grantID = out.ID
	r = s.send(t, http.MethodPost, "/v1/links", s.alice, `{"resource":"document:d1","role":"viewer","audience":"anyone"}`)
	s.mustStatus(t, r, http.StatusCreated)
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatal(err)
	}
	return grantID, out.ID
}

func TestStrictQueryRejectsUnknownParameter(t *testing.T) {
	s := startStrictServer(t)
	grantID, linkID := s.createGrantAndLink(t)
	before := s.auditActions(t)
	alice := s.alice
	for _, tc := range []struct {
		method, path, token, body string
	}{
		{http.MethodGet, "/healthz", "", ""},
		{http.MethodGet, "/readyz", "", ""},
		{http.MethodGet, "/metrics", "", ""},
		{http.MethodGet, "/v1/me", alice, ""},
		{http.MethodPost, "/v1/resources", alice, `{"resource":"org:other"}`},
		{http.MethodDelete, "/v1/resources/document/d1", alice, ""},
		{http.MethodGet, "/v1/resources/document/d1/members", alice, ""},
		{http.MethodGet, "/v1/resources/document/d1/members/user:dev%7Calice", alice, ""},
		{http.MethodPut, "/v1/resources/document/d1/members/user:dev%7Ccarol", alice, `{"role":"viewer"}`},
		{http.MethodDelete, "/v1/resources/org/acme/members/user:dev%7Calice", alice, ""},
		{http.MethodPost, "/v1/check", alice, `{"permission":"view","resource":"document:d1"}`},
		{http.MethodPost, "/v1/check/bulk", alice, `{"checks":[{"permission":"view","resource":"document:d1"}]}`},
		{http.MethodPost, "/v1/lookup/resources", alice, `{"permission":"view","resource_type":"document"}`},
		{http.MethodPost, "/v1/lookup/subjects", alice, `{"resource":"document:d1","permission":"view","subject_type":"user"}`},
		{http.MethodGet, "/v1/audit", alice, ""},
		{http.MethodGet, "/v1/principals/user:dev%7Calice/auth-version", alice, ""},
		{http.MethodPost, "/v1/principals/user:dev%7Calice/revoke-sessions", alice, ""},
		{http.MethodGet, "/v1/auth-versions/stream", alice, ""},
		{http.MethodPost, "/v1/grants", alice, `{"resource":"document:d1","subject":"user:dev|dave","role":"viewer","duration":"1h","reason":"x"}`},
		{http.MethodGet, "/v1/grants", alice, ""},
		{http.MethodGet, "/v1/grants/" + grantID, alice, ""},
		{http.MethodDelete, "/v1/grants/" + grantID, alice, ""},
		{http.MethodPost, "/v1/links", alice, `{"resource":"document:d1","role":"viewer","audience":"anyone"}`},
		{http.MethodGet, "/v1/links", alice, ""},
		{http.MethodPost, "/v1/links/redeem", alice, `{"token":"ghl_x"}`},
		{http.MethodDelete, "/v1/links/" + linkID, alice, ""},
		{http.MethodGet, "/.well-known/openid-configuration", "", ""},
		{http.MethodGet, "/.well-known/jwks.json", "", ""},
		{http.MethodPost, "/dev/token", "", `{"subject":"mallory"}`},
		{http.MethodGet, "/dev/oidc/.well-known/openid-configuration", "", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := s.send(t, tc.method, tc.path+"?bogus=1", tc.token, tc.body)
			wantProblem(t, r, http.StatusBadRequest, `unknown query parameter "bogus"`)
		})
	}

	// Every change above was rejected before it was made.
	s.wantAuditUnchanged(t, before)
	if !s.allowed(t, "document:d1") {
		t.Error("document:d1 is gone after a rejected delete")
	}
	r := s.send(t, http.MethodGet, "/v1/grants/"+grantID, alice, "")
	s.mustStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `"state":"active"`) {
		t.Errorf("grant after a rejected revoke: %s, want it active", r.body)
	}
}

func TestStrictQueryDetails(t *testing.T) {
	s := startStrictServer(t)
	for _, tc := range []struct {
		name, method, target, detail string
	}{
		{"no parameters taken", http.MethodGet, "/v1/me?x=1", "this endpoint takes no query parameters"},
		{"accepted names listed", http.MethodGet, "/v1/resources/document/d1/members?size=5", `unknown query parameter "size"; accepted: page_size, page_token`},
		{"name differing in case", http.MethodGet, "/v1/resources/document/d1/members?Page_Size=5", `unknown query parameter "Page_Size"`},
		{"empty name", http.MethodGet, "/v1/resources/document/d1/members?=5", `unknown query parameter ""`},
		{"known and unknown", http.MethodGet, "/v1/audit?org=org:acme&orgs=org:other", `unknown query parameter "orgs"`},
		{"page size repeated", http.MethodGet, "/v1/resources/document/d1/members?page_size=5&page_size=500", `query parameter "page_size" appears more than once`},
		{"same value repeated", http.MethodGet, "/v1/links?resource=document:d1&resource=document:d1", `query parameter "resource" appears more than once`},
		{"audit org repeated", http.MethodGet, "/v1/audit?org=org:acme&org=org:globex", `query parameter "org" appears more than once`},
		{"grants state repeated", http.MethodGet, "/v1/grants?state=active&state=revoked", `query parameter "state" appears more than once`},
		{"reason repeated", http.MethodDelete, "/v1/resources/document/d1?reason=a&reason=b", `query parameter "reason" appears more than once`},
		{"semicolon separator", http.MethodGet, "/v1/resources/document/d1/members?page_size=5;page_size=500", "query string is malformed"},
		{"invalid escape", http.MethodDelete, "/v1/resources/document/d1?reason=%zz", "query string is malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, s.send(t, tc.method, tc.target, s.alice, ""), http.StatusBadRequest, tc.detail)
		})
	}
	if !s.allowed(t, "document:d1") {
		t.Error("document:d1 is gone after a rejected delete")
	}
}

func TestStrictQueryAcceptsKnownParameters(t *testing.T) {
	s := startStrictServer(t)
	grantID, linkID := s.createGrantAndLink(t)
	for _, tc := range []struct {
		method, target string
		status         int
	}{
		{http.MethodGet, "/v1/me", http.StatusOK},
		{http.MethodGet, "/v1/resources/document/d1/members?page_size=1&page_token=", http.StatusOK},
		{http.MethodGet, "/v1/audit?org=org:acme&resource=document:d1&actor=user:dev%7Calice&action=grant.create&since=2020-01-01T00:00:00Z&until=2100-01-01T00:00:00Z&page_size=10&page_token=1", http.StatusOK},
		{http.MethodGet, "/v1/grants?resource=document:d1&subject=user:dev%7Cbob&state=active&break_glass=false&page_size=10&page_token=", http.StatusOK},
		{http.MethodGet, "/v1/links?resource=document:d1&page_size=10&page_token=", http.StatusOK},
		{http.MethodDelete, "/v1/grants/" + grantID + "?reason=done", http.StatusOK},
		{http.MethodDelete, "/v1/links/" + linkID + "?reason=done", http.StatusNoContent},
		{http.MethodDelete, "/v1/resources/org/acme/members/user:dev%7Cnobody?reason=cleanup", http.StatusNoContent},
		{http.MethodPost, "/v1/principals/user:dev%7Calice/revoke-sessions?reason=lost+laptop", http.StatusOK},
		{http.MethodDelete, "/v1/resources/document/d1?reason=cleanup", http.StatusNoContent},
	} {
		r := s.send(t, tc.method, tc.target, s.alice, "")
		if r.status != tc.status {
			t.Errorf("%s: got %d %s, want %d", r.request, r.status, r.body, tc.status)
		}
	}
}

// TestStrictQueryOAuthErrorFormat checks that the token endpoint still
// rejects a query with an OAuth 2.0 error (RFC 6749, section 5.2), not
// with problem details.
func TestStrictQueryOAuthErrorFormat(t *testing.T) {
	s := startStrictServer(t)
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {s.alice},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
	}
	req := s.newRequest(t, http.MethodPost, "/oauth2/token?bogus=1", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r := s.do(t, req)
	if r.status != http.StatusBadRequest || r.header.Get("Content-Type") != "application/json" || !strings.Contains(r.body, `"error":"invalid_request"`) {
		t.Errorf("token request with a query: got %d %s %s, want 400 with an OAuth invalid_request error", r.status, r.header.Get("Content-Type"), r.body)
	}
}

func TestStrictQueryUnknownEndpointIsNotFound(t *testing.T) {
	s := startStrictServer(t)
	wantProblem(t, s.send(t, http.MethodGet, "/v1/nothing?bogus=1", s.alice, ""), http.StatusNotFound, "no such endpoint")
}

func TestStrictBodyRejectedOnDelete(t *testing.T) {
	s := startStrictServer(t)
	grantID, linkID := s.createGrantAndLink(t)
	s.mustStatus(t, s.send(t, http.MethodPut, "/v1/resources/document/d1/members/user:dev%7Ccarol", s.alice, `{"role":"viewer"}`), http.StatusOK)
	before := s.auditActions(t)
	for _, tc := range []struct {
		name, method, path, body string
	}{
		{"resource", http.MethodDelete, "/v1/resources/document/d1", `{"reason":"cleanup"}`},
		{"resource, empty object", http.MethodDelete, "/v1/resources/document/d1", `{}`},
		{"resource, whitespace", http.MethodDelete, "/v1/resources/document/d1", " "},
		{"member", http.MethodDelete, "/v1/resources/document/d1/members/user:dev%7Ccarol", `{"reason":"left"}`},
		{"grant", http.MethodDelete, "/v1/grants/" + grantID, `{"reason":"done"}`},
		{"link", http.MethodDelete, "/v1/links/" + linkID, `{"reason":"done"}`},
		{"sessions", http.MethodPost, "/v1/principals/user:dev%7Calice/revoke-sessions", `{"reason":"lost laptop"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.send(t, tc.method, tc.path+"?reason=x", s.alice, tc.body)
			wantProblem(t, r, http.StatusBadRequest, "takes no request body; give the reason in the reason query parameter")
		})
	}

	t.Run("chunked", func(t *testing.T) {
		// A body of unknown length is sent with chunked transfer coding,
		// without Content-Length.
		body := io.MultiReader(strings.NewReader(`{"reason":`), strings.NewReader(`"cleanup"}`))
		req := s.newRequest(t, http.MethodDelete, "/v1/resources/document/d1", body)
		req.Header.Set("Authorization", "Bearer "+s.alice)
		r := s.do(t, req)
		wantProblem(t, r, http.StatusBadRequest, "takes no request body")
	})

	// Nothing was deleted, revoked or recorded.
	s.wantAuditUnchanged(t, before)
	if !s.allowed(t, "document:d1") {
		t.Error("document:d1 is gone after a rejected delete")
	}
	s.mustStatus(t, s.send(t, http.MethodGet, "/v1/resources/document/d1/members/user:dev%7Ccarol", s.alice, ""), http.StatusOK)
	if r := s.send(t, http.MethodGet, "/v1/grants/"+grantID, s.alice, ""); !strings.Contains(r.body, `"state":"active"`) {
		t.Errorf("grant after a rejected revoke: %s, want it active", r.body)
	}
	if r := s.send(t, http.MethodGet, "/v1/links?resource=document:d1", s.alice, ""); !strings.Contains(r.body, `"state":"active"`) {
		t.Errorf("links after a rejected revoke: %s, want the link active", r.body)
	}

	t.Run("empty body accepted", func(t *testing.T) {
		req := s.newRequest(t, http.MethodDelete, "/v1/resources/document/d1?reason=cleanup", strings.NewReader(""))
		req.ContentLength = 0
		req.Header.Set("Authorization", "Bearer "+s.alice)
		s.mustStatus(t, s.do(t, req), http.StatusNoContent)
	})
}

func TestStrictContentTypeCharset(t *testing.T) {
	s := startStrictServer(t)
	send := func(contentType, resource string) strictResponse {
		req := s.newRequest(t, http.MethodPost, "/v1/resources", strings.NewReader(`{"resource":"`+resource+`"}`))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Authorization", "Bearer "+s.alice)
		return s.do(t, req)
	}

	for _, tc := range []struct {
		name, contentType, detail string
	}{
		{"latin1", "application/json; charset=latin1", `charset "latin1" is not supported`},
		{"ISO-8859-1", "application/json; charset=ISO-8859-1", `charset "ISO-8859-1" is not supported`},
		{"utf8 without hyphen", "application/json; charset=utf8", `charset "utf8" is not supported`},
		{"UTF-16", "application/json;charset=UTF-16", `charset "UTF-16" is not supported`},
		{"empty charset", `application/json; charset=""`, `charset "" is not supported`},
		{"unknown parameter", "application/json; profile=x", `parameter "profile" is not supported`},
		{"unknown parameter with charset", "application/json; charset=utf-8; version=2", `parameter "version" is not supported`},
		{"charset repeated", "application/json; charset=utf-8; charset=latin1", "Content-Type must be application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, send(tc.contentType, "org:rejected"), http.StatusUnsupportedMediaType, tc.detail)
		})
	}
	// No rejected request created the org, so Bob can create it now.
	bob := s.token(t, "bob", false)
	s.mustStatus(t, s.send(t, http.MethodPost, "/v1/resources", bob, `{"resource":"org:rejected"}`), http.StatusCreated)

	for i, contentType := range []string{
		"application/json",
		"application/json; charset=utf-8",
		"application/json; charset=UTF-8",
		`application/json; charset="utf-8"`,
		"Application/JSON;Charset=Utf-8",
	} {
		resource := "org:accepted" + string(rune('a'+i))
		if r := send(contentType, resource); r.status != http.StatusCreated {
			t.Errorf("Content-Type %q: got %d %s, want 201", contentType, r.status, r.body)
		}
	}
}

func TestStrictEmptyConsistencyToken(t *testing.T) {
	s := startStrictServer(t)
	const detail = "consistency_token must not be empty"
	for _, tc := range []struct{ name, path, body string }{
		{"check", "/v1/check", `{"permission":"view","resource":"document:d1","consistency_token":""}`},
		{"check with minimize latency", "/v1/check", `{"permission":"view","resource":"document:d1","consistency_token":"","consistency":"minimize_latency"}`},
		{"link token check", "/v1/check", `{"link_token":"ghl_x","permission":"view","resource":"document:d1","consistency_token":""}`},
		{"bulk", "/v1/check/bulk", `{"checks":[{"permission":"view","resource":"document:d1"}],"consistency_token":""}`},
		{"lookup resources", "/v1/lookup/resources", `{"permission":"view","resource_type":"document","consistency_token":""}`},
		{"lookup subjects", "/v1/lookup/subjects", `{"resource":"document:d1","permission":"view","subject_type":"user","consistency_token":""}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, s.send(t, http.MethodPost, tc.path, s.alice, tc.body), http.StatusBadRequest, detail)
		})
	}

	for _, body := range []string{
		`{"permission":"view","resource":"document:d1"}`,
		`{"permission":"view","resource":"document:d1","consistency_token":null}`,
	} {
		r := s.send(t, http.MethodPost, "/v1/check", s.alice, body)
		if r.status != http.StatusOK || !strings.Contains(r.body, `"allowed":true`) {
			t.Errorf("%s: got %d %s, want 200 allowed", body, r.status, r.body)
		}
	}
}

func TestStrictPathWithDotSegments(t *testing.T) {
	s := startStrictServer(t)
	before := s.auditActions(t)
	for _, tc := range []struct{ method, target, body string }{
		{http.MethodPost, "/v1/../v1/check", `{"permission":"view","resource":"document:d1"}`},
		{http.MethodGet, "/v1/./me", ""},
		{http.MethodGet, "/v1//me", ""},
		{http.MethodGet, "/v1/me/.", ""},
		{http.MethodGet, "/v1/me/..", ""},
		{http.MethodDelete, "/v1/resources/document/d1/../d1", ""},
		{http.MethodDelete, "/v1/resources/document/x/../d1?reason=x", ""},
		{http.MethodGet, "/v1/nothing/../me", ""},
		{http.MethodGet, "/healthz/../healthz", ""},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			r := s.send(t, tc.method, tc.target, s.alice, tc.body)
			wantProblem(t, r, http.StatusBadRequest, "is not canonical")
			if loc := r.header.Get("Location"); loc != "" {
				t.Errorf("Location %q, want none", loc)
			}
		})
	}
	s.wantAuditUnchanged(t, before)
	if !s.allowed(t, "document:d1") {
		t.Error("document:d1 is gone after a rejected delete")
	}

	// Encoded dots are not path syntax, so the id check rejects them.
	wantProblem(t, s.send(t, http.MethodDelete, "/v1/resources/document/%2E%2E", s.alice, ""), http.StatusBadRequest, "resource:")
	s.mustStatus(t, s.send(t, http.MethodGet, "/v1/me", s.alice, ""), http.StatusOK)
	wantProblem(t, s.send(t, http.MethodGet, "/v1/me/", s.alice, ""), http.StatusNotFound, "no such endpoint")
}
