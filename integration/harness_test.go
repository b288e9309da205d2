// Package integration runs Gatehouse end to end: a real server on loopback
// with its embedded SpiceDB and dev issuer, driven over HTTP like a client
// would drive it.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/config"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/server"
)

// datastoreEnv selects the datastore of startGatehouse: "postgres" runs the
// whole suite against PostgreSQL (the Makefile's test target does so when a
// test server is configured); anything else runs it in memory.
const datastoreEnv = "GATEHOUSE_TEST_DATASTORE"

// problemContentType is the media type of every error response (RFC 9457).
const problemContentType = "application/problem+json"

// resourceTypes are the types that lookups and checks accept.
var resourceTypes = []string{"org", "workspace", "project", "document", "group"}

// gatehouse is one running server and an HTTP client for it.
type gatehouse struct {
	srv    *server.Server
	url    string
	client *http.Client
}

// startGatehouse starts a dev-mode server on a loopback port that also
// trusts extraIssuers, and stops it when the test ends.
func startGatehouse(t *testing.T, extraIssuers ...config.Issuer) *gatehouse {
	t.Helper()
	dbURL := ""
	if os.Getenv(datastoreEnv) == server.DatastorePostgres {
		dbURL = pgtest.NewDatabase(t)
	}
	return runGatehouse(t, server.Config{Issuers: extraIssuers}, dbURL)
}

// runGatehouse starts a dev-mode server with cfg on a loopback port, on
// PostgreSQL at dbURL (migrated first) or in memory when dbURL is empty,
// and stops it when the test ends. A nil Logger discards the logs.
func runGatehouse(tb testing.TB, cfg server.Config, dbURL string) *gatehouse {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	cfg.Listener = ln
	cfg.Dev = true
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if dbURL != "" {
		cfg.Datastore = server.DatastorePostgres
		cfg.Postgres = engine.PostgresConfig{URL: dbURL}
		cfg.Migrate = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		tb.Fatalf("server.New: %v", err)
	}

	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("server.Run: %v", err)
		}
	})
	return &gatehouse{srv: srv, url: srv.URL(), client: &http.Client{Timeout: 30 * time.Second}}
}

// token mints a dev token for subject: a user token, or a service token
// when service is set.
func (g *gatehouse) token(t *testing.T, subject string, service bool) string {
	t.Helper()
	tok, err := g.srv.DevIssuer().Mint(subject, service)
	if err != nil {
		t.Fatalf("mint token for %q: %v", subject, err)
	}
	return tok
}

// user returns a client that acts as user:dev|<name>.
func (g *gatehouse) user(t *testing.T, name string) *caller {
	t.Helper()
	return &caller{g: g, token: g.token(t, name, false), ref: "user:dev|" + name}
}

// service returns a client that acts as service:dev|<name>.
func (g *gatehouse) service(t *testing.T, name string) *caller {
	t.Helper()
	return &caller{g: g, token: g.token(t, name, true), ref: "service:dev|" + name}
}

// response is a fully read HTTP response.
type response struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

func (r response) String() string {
	return fmt.Sprintf("%s %s: %d %s", r.method, r.path, r.status, bytes.TrimSpace(r.body))
}

// problemDoc is an RFC 9457 problem details document as Gatehouse writes it.
type problemDoc struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
}

// request is one HTTP request. Body is sent as is when it is a string or
// []byte, and JSON-encoded otherwise. ContentType defaults to
// application/json when there is a body, unless OmitContentType is set.
type request struct {
	Method          string
	Path            string
	Token           string
	Body            any
	ContentType     string
	OmitContentType bool
	Header          http.Header
}

// send performs req and reads the whole response.
func (g *gatehouse) send(t *testing.T, req request) response {
	t.Helper()
	var body io.Reader
	contentType := req.ContentType
	switch b := req.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encode request body: %v", err)
		}
		body = bytes.NewReader(data)
	}
	if body != nil && contentType == "" && !req.OmitContentType {
		contentType = "application/json"
	}

	httpReq, err := http.NewRequest(req.Method, g.url+req.Path, body)
	if err != nil {
		t.Fatalf("new request %s %s: %v", req.Method, req.Path, err)
	}
	for name, values := range req.Header {
		httpReq.Header[name] = values
	}
	if contentType != "" {
		httpReq.Header.Set("Content-Type", contentType)
	}
	if req.Token != "" {
		httpReq.Header.Set("Authorization", "Bearer "+req.Token)
	}

	resp, err := g.client.Do(httpReq)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.Path, err)
	}
	return response{method: req.Method, path: req.Path, status: resp.StatusCode, header: resp.Header, body: data}
}

// wantStatus fails the test unless r has the status code want.
func wantStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("got %v, want status %d", r, want)
	}
}

// decodeJSON decodes r's body into v, failing on unknown fields so that
// the tests notice a changed response shape.
func decodeJSON(t *testing.T, r response, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s %s: decode %s: %v", r.method, r.path, r.body, err)
	}
}

// wantProblem checks that r is a problem details response with the given
// status and returns the document.
func wantProblem(t *testing.T, r response, status int) problemDoc {
	t.Helper()
	wantStatus(t, r, status)
	if ct := r.header.Get("Content-Type"); ct != problemContentType {
		t.Fatalf("%s %s: Content-Type %q, want %q", r.method, r.path, ct, problemContentType)
	}
	var p problemDoc
	decodeJSON(t, r, &p)
	if p.Status != status {
		t.Errorf("%s %s: problem status %d, want %d", r.method, r.path, p.Status, status)
	}
	if p.Title != http.StatusText(status) {
		t.Errorf("%s %s: problem title %q, want %q", r.method, r.path, p.Title, http.StatusText(status))
	}
	if p.Detail == "" {
		t.Errorf("%s %s: problem has no detail", r.method, r.path)
	}
	if p.RequestID == "" || p.RequestID != r.header.Get("X-Request-Id") {
		t.Errorf("%s %s: problem request_id %q, X-Request-Id header %q", r.method, r.path, p.RequestID, r.header.Get("X-Request-Id"))
	}
	return p
}

// caller sends requests with one principal's token.
type caller struct {
	g     *gatehouse
	token string
	ref   string // the principal, such as "user:dev|alice"
}

// do sends a request with the caller's token.
func (c *caller) do(t *testing.T, method, path string, body any) response {
	t.Helper()
	return c.g.send(t, request{Method: method, Path: path, Token: c.token, Body: body})
}

// memberPath returns the path of subject's membership on resource
// ("type:id").
func memberPath(resource, subject string) string {
	return resourcePath(resource) + "/members/" + url.PathEscape(subject)
}

// resourcePath returns /v1/resources/{type}/{id} for "type:id".
func resourcePath(resource string) string {
	typ, id, _ := strings.Cut(resource, ":")
	return "/v1/resources/" + url.PathEscape(typ) + "/" + url.PathEscape(id)
}

// createReq returns the body of POST /v1/resources.
func createReq(resource, parent string) map[string]string {
	body := map[string]string{"resource": resource}
	if parent != "" {
		body["parent"] = parent
	}
	return body
}

// create creates resource under parent ("" for an org) and fails the test
// unless Gatehouse responds 201.
func (c *caller) create(t *testing.T, resource, parent string) {
	t.Helper()
	wantStatus(t, c.do(t, http.MethodPost, "/v1/resources", createReq(resource, parent)), http.StatusCreated)
}

// setRole gives subject role on resource and fails unless Gatehouse responds 200.
func (c *caller) setRole(t *testing.T, resource, subject, role string) {
	t.Helper()
	wantStatus(t, c.do(t, http.MethodPut, memberPath(resource, subject), map[string]string{"role": role}), http.StatusOK)
}

// removeRole removes subject's role on resource and fails unless Gatehouse
// responds 204.
func (c *caller) removeRole(t *testing.T, resource, subject string) {
	t.Helper()
	wantStatus(t, c.do(t, http.MethodDelete, memberPath(resource, subject), nil), http.StatusNoContent)
}

// checkBody returns the body of POST /v1/check. An empty subject means the
// caller.
func checkBody(subject, permission, resource string) map[string]string {
	body := map[string]string{"permission": permission, "resource": resource}
	if subject != "" {
		body["subject"] = subject
	}
	return body
}

// allowed runs one check and returns its decision, failing unless
// Gatehouse responds 200.
func (c *caller) allowed(t *testing.T, subject, permission, resource string) bool {
	t.Helper()
	r := c.do(t, http.MethodPost, "/v1/check", checkBody(subject, permission, resource))
	wantStatus(t, r, http.StatusOK)
	var out struct {
		Allowed          bool   `json:"allowed"`
		ConsistencyToken string `json:"consistency_token"`
	}
	decodeJSON(t, r, &out)
	return out.Allowed
}

// allowedSet runs one bulk check of permission on every resource, about
// subject, and returns the resources it allows, sorted.
func (c *caller) allowedSet(t *testing.T, subject, permission string, resources []string) []string {
	t.Helper()
	var checks []map[string]string
	for _, r := range resources {
		checks = append(checks, checkBody(subject, permission, r))
	}
	r := c.do(t, http.MethodPost, "/v1/check/bulk", map[string]any{"checks": checks})
	wantStatus(t, r, http.StatusOK)
	var out struct {
		Results []struct {
			Allowed          bool            `json:"allowed"`
			ConsistencyToken string          `json:"consistency_token"`
			Error            json.RawMessage `json:"error"`
		} `json:"results"`
	}
	decodeJSON(t, r, &out)
	if len(out.Results) != len(resources) {
		t.Fatalf("bulk check: %d results for %d checks", len(out.Results), len(resources))
	}
	allowed := []string{}
	for i, res := range out.Results {
		if res.Error != nil {
			t.Fatalf("bulk check of %s on %s: error %s", permission, resources[i], res.Error)
		}
		if res.Allowed {
			allowed = append(allowed, resources[i])
		}
	}
	slices.Sort(allowed)
	return allowed
}

// lookupResources returns the set of resources of resourceType on which
// subject has permission, following page tokens, sorted. An empty subject
// means the caller.
//
// NOTE: it removes duplicates, because Gatehouse repeats a resource on later
// pages once per path that reaches it; TestLookupPagesRepeatNothing reports
// that on its own. The largest page size keeps the repeats rare here.
func (c *caller) lookupResources(t *testing.T, subject, permission, resourceType string) []string {
	t.Helper()
	return slices.Compact(c.lookupPages(t, subject, permission, resourceType, 1000))
}

// lookupPages returns every resource of every page of a resource lookup
// with the given page size, duplicates included, sorted.
func (c *caller) lookupPages(t *testing.T, subject, permission, resourceType string, pageSize int) []string {
	t.Helper()
	found := []string{}
	token := ""
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatalf("lookup of %s %s: more than 100 pages of %d", permission, resourceType, pageSize)
		}
		resources, next := c.lookupPage(t, subject, permission, resourceType, pageSize, token)
		found = append(found, resources...)
		if next == "" {
			break
		}
		token = next
	}
	slices.Sort(found)
	return found
}

// lookupPage reads one page of a resource lookup, after token ("" for the
// first page), and returns its resources and the next page token. An empty
// subject means the caller.
func (c *caller) lookupPage(t *testing.T, subject, permission, resourceType string, pageSize int, token string) ([]string, string) {
	t.Helper()
	body := map[string]any{"permission": permission, "resource_type": resourceType, "page_size": pageSize}
	if subject != "" {
		body["subject"] = subject
	}
	if token != "" {
		body["page_token"] = token
	}
	r := c.do(t, http.MethodPost, "/v1/lookup/resources", body)
	wantStatus(t, r, http.StatusOK)
	var out struct {
		Resources     []string `json:"resources"`
		NextPageToken string   `json:"next_page_token"`
	}
	decodeJSON(t, r, &out)
	return out.Resources, out.NextPageToken
}

// lookupSubjects returns one page of the subjects of subjectType that have
// permission on resource, or the failed response.
func (c *caller) lookupSubjects(t *testing.T, resource, permission, subjectType string) ([]string, response) {
	t.Helper()
	r := c.do(t, http.MethodPost, "/v1/lookup/subjects", map[string]any{
		"resource": resource, "permission": permission, "subject_type": subjectType, "page_size": 1000,
	})
	if r.status != http.StatusOK {
		return nil, r
	}
	var out struct {
		Subjects      []string `json:"subjects"`
		NextPageToken string   `json:"next_page_token"`
	}
	decodeJSON(t, r, &out)
	if out.NextPageToken != "" {
		t.Fatalf("lookup subjects of %s: unexpected second page", resource)
	}
	slices.Sort(out.Subjects)
	return out.Subjects, r
}

// member is one entry of GET .../members.
type member struct {
	Subject   string     `json:"subject"`
	Role      string     `json:"role"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// members returns resource's direct members as "subject=role", sorted,
// following page tokens.
func (c *caller) members(t *testing.T, resource string) []string {
	t.Helper()
	found := []string{}
	token := ""
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatalf("members of %s: more than 100 pages", resource)
		}
		path := resourcePath(resource) + "/members?page_size=100"
		if token != "" {
			path += "&page_token=" + url.QueryEscape(token)
		}
		r := c.do(t, http.MethodGet, path, nil)
		wantStatus(t, r, http.StatusOK)
		var out struct {
			Members       []member `json:"members"`
			NextPageToken string   `json:"next_page_token"`
		}
		decodeJSON(t, r, &out)
		for _, m := range out.Members {
			found = append(found, m.Subject+"="+m.Role)
		}
		if out.NextPageToken == "" {
			break
		}
		token = out.NextPageToken
	}
	slices.Sort(found)
	return found
}
