package httpapi_test

import (
	"net/http"
	"testing"
)

// A minimized revision may be seconds old. Right after start-up it may
// predate the schema, at which SpiceDB finds no definition of document:
// that was a 500. Under load (the race detector, other packages' tests)
// about one fresh server in two failed on its first request.
func TestMinimizeLatencyRightAfterStart(t *testing.T) {
	for i := range 20 {
		s := startStrictServer(t)
		for _, tc := range []struct{ path, body string }{
			{"/v1/lookup/subjects", `{"resource":"document:d1","permission":"view","subject_type":"user","consistency":"minimize_latency"}`},
			{"/v1/lookup/resources", `{"permission":"view","resource_type":"document","consistency":"minimize_latency"}`},
			{"/v1/check", `{"permission":"view","resource":"document:d1","consistency":"minimize_latency"}`},
		} {
			if r := s.send(t, http.MethodPost, tc.path, s.alice, tc.body); r.status != http.StatusOK {
				t.Fatalf("server %d, %s: got %d %s, want 200", i, tc.path, r.status, r.body)
			}
		}
	}
}
