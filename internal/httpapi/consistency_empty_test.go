package httpapi_test

import (
	"fmt"
	"net/http"
	"testing"
)

// consistencyEndpoints are the endpoints that take the consistency fields,
// each with a body that alice may send, into which a test splices
// extra fields.
var consistencyEndpoints = []struct{ name, path, body string }{
	{"check", "/v1/check", `{"permission":"view","resource":"document:d1"%s}`},
	{"link token check", "/v1/check", `{"link_token":"ghl_x","permission":"view","resource":"document:d1"%s}`},
	{"bulk", "/v1/check/bulk", `{"checks":[{"permission":"view","resource":"document:d1"}]%s}`},
	{"lookup resources", "/v1/lookup/resources", `{"permission":"view","resource_type":"document"%s}`},
	{"lookup subjects", "/v1/lookup/subjects", `{"resource":"document:d1","permission":"view","subject_type":"user"%s}`},
}

func TestEmptyConsistencyRejected(t *testing.T) {
	s := startStrictServer(t)
	const detail = "consistency must not be empty"
	for _, endpoint := range consistencyEndpoints {
		for _, tc := range []struct{ name, fields string }{
			{"alone", `,"consistency":""`},
			{"with a token", `,"consistency":"","consistency_token":"GhUKEzE3OTY0"`},
		} {
			t.Run(endpoint.name+" "+tc.name, func(t *testing.T) {
				body := fmt.Sprintf(endpoint.body, tc.fields)
				wantProblem(t, s.send(t, http.MethodPost, endpoint.path, s.alice, body), http.StatusBadRequest, detail)
			})
		}
	}
}

func TestConsistencyOmittedNullOrNamedAccepted(t *testing.T) {
	s := startStrictServer(t)
	for _, endpoint := range consistencyEndpoints {
		for _, tc := range []struct{ name, fields string }{
			{"omitted", ``},
			{"null", `,"consistency":null`},
			{"full", `,"consistency":"full"`},
			{"minimize latency", `,"consistency":"minimize_latency"`},
		} {
			t.Run(endpoint.name+" "+tc.name, func(t *testing.T) {
				body := fmt.Sprintf(endpoint.body, tc.fields)
				r := s.send(t, http.MethodPost, endpoint.path, s.alice, body)
				if r.status != http.StatusOK {
					t.Errorf("%s: got %d %s, want 200", body, r.status, r.body)
				}
			})
		}
	}
}

func TestUnknownConsistencyRejected(t *testing.T) {
	s := startStrictServer(t)
	for _, value := range []string{`"Full"`, `"none"`, `" full"`} {
		body := fmt.Sprintf(consistencyEndpoints[0].body, `,"consistency":`+value)
		wantProblem(t, s.send(t, http.MethodPost, "/v1/check", s.alice, body), http.StatusBadRequest, `consistency must be "full" or "minimize_latency"`)
	}
}
