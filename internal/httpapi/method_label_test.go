package httpapi_test

import (
	"bufio"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// standardMethods are the methods that the method label names. Every
// other method is labelled "other".
var standardMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace,
}

// requestSeries returns the gatehouse_http_requests_total series that the
// server exposes, as their label strings (`{code="200",...}`) mapped to
// their values.
func (s *strictServer) requestSeries(t *testing.T) map[string]string {
	t.Helper()
	r := s.send(t, http.MethodGet, "/metrics", "", "")
	s.mustStatus(t, r, http.StatusOK)
	series := map[string]string{}
	scanner := bufio.NewScanner(strings.NewReader(r.body))
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		labels, ok := strings.CutPrefix(scanner.Text(), "gatehouse_http_requests_total")
		if !ok || !strings.HasPrefix(labels, "{") {
			continue
		}
		// Route labels contain spaces, so the value follows the last one.
		i := strings.LastIndexByte(labels, ' ')
		if i < 0 {
			t.Fatalf("metrics line without a value: %.200q", scanner.Text())
		}
		series[labels[:i]] = labels[i+1:]
	}
	if err := scanner.Err(); err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	return series
}

// randomMethod returns a method of 1 to 12 uppercase letters and digits,
// which net/http accepts, that is not a standard method.
func randomMethod() string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for {
		b := make([]byte, 1+rand.IntN(12))
		for i := range b {
			b[i] = chars[rand.IntN(len(chars))]
		}
		if !slices.Contains(standardMethods, string(b)) {
			return string(b)
		}
	}
}

func TestMethodLabelBoundsSeries(t *testing.T) {
	s := startStrictServer(t)
	methods := []string{"get", "PROPFIND", strings.Repeat("X", 20000)}
	for range 30 {
		methods = append(methods, randomMethod())
	}
	for _, method := range methods {
		wantProblem(t, s.send(t, method, "/healthz", "", ""), http.StatusMethodNotAllowed, "is not allowed on /healthz")
	}
	wantProblem(t, s.send(t, http.MethodDelete, "/healthz", "", ""), http.StatusMethodNotAllowed, "method DELETE is not allowed")

	series := s.requestSeries(t)
	if got, want := series[`{code="405",method="other",route="unmatched"}`], "33"; got != want {
		t.Errorf(`405 requests with method="other": got %q, want %q`, got, want)
	}
	if got, want := series[`{code="405",method="DELETE",route="unmatched"}`], "1"; got != want {
		t.Errorf(`405 requests with method="DELETE": got %q, want %q`, got, want)
	}
	for labels := range series {
		_, rest, _ := strings.Cut(labels, `method="`)
		method, _, _ := strings.Cut(rest, `"`)
		if method != "other" && !slices.Contains(standardMethods, method) {
			t.Errorf("series %.200s: method label %.40q is neither standard nor \"other\"", labels, method)
		}
	}
}

func TestMethodLabelKeepsStandardMethods(t *testing.T) {
	s := startStrictServer(t)
	s.mustStatus(t, s.send(t, http.MethodHead, "/healthz", "", ""), http.StatusOK)
	series := s.requestSeries(t)
	for _, labels := range []string{
		`{code="200",method="HEAD",route="GET /healthz"}`,
		`{code="201",method="POST",route="POST /v1/resources"}`,
	} {
		if _, ok := series[labels]; !ok {
			t.Errorf("no series %s", labels)
		}
	}
}

func TestLongMethodShortDetail(t *testing.T) {
	s := startStrictServer(t)
	long := strings.Repeat("X", 20000)
	for _, tc := range []struct {
		name, target string
		status       int
	}{
		{"not allowed", "/healthz", http.StatusMethodNotAllowed},
		{"no such endpoint", "/v1/nothing", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.send(t, long, tc.target, "", "")
			wantProblem(t, r, tc.status, strings.Repeat("X", 32)+"... (20000 bytes)")
			if len(r.problem.Detail) > 200 {
				t.Errorf("detail has %d bytes, want at most 200: %.300q", len(r.problem.Detail), r.problem.Detail)
			}
			if len(r.body) > 1000 {
				t.Errorf("body has %d bytes, want at most 1000", len(r.body))
			}
		})
	}

	r := s.send(t, long, "/healthz", "", "")
	if allow := r.header.Get("Allow"); allow != "GET, HEAD" {
		t.Errorf("Allow %q, want %q", allow, "GET, HEAD")
	}

	// A method of up to 32 bytes is repeated whole.
	short := strings.Repeat("Y", 32)
	wantProblem(t, s.send(t, short, "/healthz", "", ""), http.StatusMethodNotAllowed, "method "+short+" is not allowed on /healthz; allowed: GET, HEAD")
}
