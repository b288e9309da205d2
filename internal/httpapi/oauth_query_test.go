package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// sendForm sends a POST with a form body to target, with an optional
// bearer token and an optional Content-Type.
func (s *strictServer) sendForm(t *testing.T, target, token, contentType, body string) strictResponse {
	t.Helper()
	req := s.newRequest(t, http.MethodPost, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return s.do(t, req)
}

// wantOAuthError fails unless r is an OAuth 2.0 error response (RFC 6749,
// section 5.2) with status, code and a description that contains
// description.
func wantOAuthError(t *testing.T, r strictResponse, status int, code, description string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: got %d %s, want %d", r.request, r.status, r.body, status)
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", r.request, ct)
	}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatalf("%s: body %q: %v", r.request, r.body, err)
	}
	if body.Error != code {
		t.Errorf("%s: error %q, want %q", r.request, body.Error, code)
	}
	if !strings.Contains(body.Description, description) {
		t.Errorf("%s: error_description %q, want it to contain %q", r.request, body.Description, description)
	}
}

// TestIntrospectQueryCheckOrder pins the order in which introspection
// checks a request with a query: authentication, then the caller's type,
// then the Content-Type, then the query.
func TestIntrospectQueryCheckOrder(t *testing.T) {
	s := startStrictServer(t)
	const form = "application/x-www-form-urlencoded"
	service := s.token(t, "billing", true)

	wantProblem(t, s.sendForm(t, "/oauth2/introspect?x=1", "", form, "token=abc"), http.StatusUnauthorized, "the access token is missing")
	wantOAuthError(t, s.sendForm(t, "/oauth2/introspect?x=1", s.alice, form, "token=abc"), http.StatusForbidden, "insufficient_scope", "only services may introspect tokens")
	wantOAuthError(t, s.sendForm(t, "/oauth2/introspect?x=1", service, "", "token=abc"), http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
	wantOAuthError(t, s.sendForm(t, "/oauth2/introspect?x=1", service, form, "token=abc"), http.StatusBadRequest, "invalid_request", "not in the URL query")
	wantOAuthError(t, s.sendForm(t, "/oauth2/introspect?%zz", service, form, "token=abc"), http.StatusBadRequest, "invalid_request", "not in the URL query")
}

func TestTokenMalformedQueryNamed(t *testing.T) {
	s := startStrictServer(t)
	const form = "application/x-www-form-urlencoded"
	body := "grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token_type=urn:ietf:params:oauth:token-type:access_token&subject_token=" + s.alice

	wantOAuthError(t, s.sendForm(t, "/oauth2/token?%zz", "", form, body), http.StatusBadRequest, "invalid_request", "not in the URL query")
	wantOAuthError(t, s.sendForm(t, "/oauth2/token?x=1", "", form, body), http.StatusBadRequest, "invalid_request", "not in the URL query")
	wantOAuthError(t, s.sendForm(t, "/oauth2/token", "", form, "grant_type=%zz"), http.StatusBadRequest, "invalid_request", "request body is not a valid form")
}
