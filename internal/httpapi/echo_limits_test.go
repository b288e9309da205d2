package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// A GET's body would be dropped unread, so a page size sent in it would
// silently not apply.
func TestGetWithBodyRejected(t *testing.T) {
	s := startStrictServer(t)
	for _, target := range []string{"/v1/resources/org/acme/members", "/v1/me", "/healthz"} {
		wantProblem(t, s.send(t, http.MethodGet, target, s.alice, `{"page_size":1}`), http.StatusBadRequest, "GET requests take no body")
		s.mustStatus(t, s.send(t, http.MethodGet, target, s.alice, ""), http.StatusOK)
	}
}

func TestDetailsClipLongInput(t *testing.T) {
	s := startStrictServer(t)
	long := strings.Repeat("a", 20000)
	for _, tc := range []struct{ name, method, target string }{
		{"unknown path", http.MethodGet, "/v1/" + long},
		{"method not allowed", http.MethodPatch, "/v1/resources/org/" + long},
		{"unknown parameter", http.MethodGet, "/v1/me?" + long + "=1"},
		{"repeated parameter", http.MethodGet, "/v1/audit?org=org:acme&org=org:acme&" + long + "=1"},
		{"dot segments", http.MethodGet, "/v1/./" + long},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.send(t, tc.method, tc.target, s.alice, "")
			if r.status < 400 || r.status >= 500 {
				t.Fatalf("got %d, want a 4xx", r.status)
			}
			if len(r.problem.Detail) > 700 {
				t.Errorf("detail has %d bytes, want at most 700: %.120q", len(r.problem.Detail), r.problem.Detail)
			}
		})
	}
}

func TestNotFoundNamesEscapedPath(t *testing.T) {
	s := startStrictServer(t)
	r := s.send(t, http.MethodDelete, "/v1/resources/document%2Fd1", s.alice, "")
	wantProblem(t, r, http.StatusNotFound, "no such endpoint: DELETE /v1/resources/document%2Fd1")
}

func TestBodyOnDeleteDetailClipsEscapedPath(t *testing.T) {
	s := startStrictServer(t)
	long := strings.Repeat("L", 60000)
	r := s.send(t, http.MethodDelete, "/v1/links/"+long, s.alice, "{}")
	wantProblem(t, r, http.StatusBadRequest, "takes no request body")
	if len(r.problem.Detail) > 400 {
		t.Errorf("detail has %d bytes, want at most 400", len(r.problem.Detail))
	}
	r = s.send(t, http.MethodDelete, "/v1/links/x%2Fmembers", s.alice, "{}")
	wantProblem(t, r, http.StatusBadRequest, "DELETE /v1/links/x%2Fmembers takes no request body")
}

func TestQuotedParameterNameStaysBounded(t *testing.T) {
	s := startStrictServer(t)
	r := s.send(t, http.MethodGet, "/v1/me?"+strings.Repeat("%01", 300)+"=1", s.alice, "")
	wantProblem(t, r, http.StatusBadRequest, "unknown query parameter")
	if len(r.problem.Detail) > 400 {
		t.Errorf("detail has %d bytes, want at most 400", len(r.problem.Detail))
	}
}
