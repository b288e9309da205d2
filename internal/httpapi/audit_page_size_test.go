package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

// TestAuditPageSizeZeroIsDefault checks that GET /v1/audit reads
// page_size=0 as the default page size of 100, as the other listings do.
func TestAuditPageSizeZeroIsDefault(t *testing.T) {
	s := startStrictServer(t)
	// With the 4 creations of startStrictServer, org:acme has more events
	// than one default page holds.
	for i := range 100 {
		body := fmt.Sprintf(`{"resource":"document:extra%d","parent":"project:p1"}`, i)
		s.mustStatus(t, s.send(t, http.MethodPost, "/v1/resources", s.alice, body), http.StatusCreated)
	}

	for _, target := range []string{
		"/v1/audit?org=org:acme",
		"/v1/audit?org=org:acme&page_size=0",
	} {
		r := s.send(t, http.MethodGet, target, s.alice, "")
		s.mustStatus(t, r, http.StatusOK)
		var out struct {
			Events        []json.RawMessage `json:"events"`
			NextPageToken string            `json:"next_page_token"`
		}
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if len(out.Events) != 100 {
			t.Errorf("%s: got %d events, want 100", target, len(out.Events))
		}
		if out.NextPageToken == "" {
			t.Errorf("%s: no next_page_token, want one", target)
		}
	}
}

func TestAuditPageSizeRejected(t *testing.T) {
	s := startStrictServer(t)
	for _, size := range []string{"-1", "1001", "x", "1.5"} {
		r := s.send(t, http.MethodGet, "/v1/audit?org=org:acme&page_size="+size, s.alice, "")
		wantProblem(t, r, http.StatusBadRequest, "page_size must be an integer from 1 to 1000, or 0 for the default")
	}
}
