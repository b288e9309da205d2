package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// An app that lost the user id it meant to send must get 400, not the
// caller's own result.
func TestEmptySubjectRejected(t *testing.T) {
	s := startStrictServer(t)
	const detail = "subject must not be empty; omit the field to mean the caller"
	for _, tc := range []struct{ name, path, body string }{
		{"check", "/v1/check", `{"subject":"","permission":"view","resource":"document:d1"}`},
		{"lookup resources", "/v1/lookup/resources", `{"subject":"","permission":"view","resource_type":"document"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, s.send(t, http.MethodPost, tc.path, s.alice, tc.body), http.StatusBadRequest, detail)
		})
	}
}

// A bulk request reports an error per item, so the empty subject fails
// its own item only.
func TestEmptySubjectInBulkItemRejected(t *testing.T) {
	s := startStrictServer(t)
	body := `{"checks":[{"subject":"user:dev|bob","permission":"view","resource":"document:d1"},{"subject":"","permission":"view","resource":"document:d1"}]}`
	r := s.send(t, http.MethodPost, "/v1/check/bulk", s.alice, body)
	s.mustStatus(t, r, http.StatusOK)
	var resp struct {
		Results []struct {
			Allowed bool `json:"allowed"`
			Error   *struct {
				Status int    `json:"status"`
				Detail string `json:"detail"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(r.body), &resp); err != nil {
		t.Fatalf("response %q: %v", r.body, err)
	}
	if len(resp.Results) != 2 {
		t.Fatalf("got %d results, want 2: %s", len(resp.Results), r.body)
	}
	if resp.Results[0].Error != nil || resp.Results[0].Allowed {
		t.Errorf("bob's item = %+v, want denied without error", resp.Results[0])
	}
	second := resp.Results[1]
	if second.Allowed || second.Error == nil || second.Error.Status != http.StatusBadRequest || !strings.Contains(second.Error.Detail, "subject must not be empty") {
		t.Errorf("empty subject's item = %+v, want a 400 error and no allow", second)
	}
}

func TestEmptySubjectWithLinkTokenRejected(t *testing.T) {
	s := startStrictServer(t)
	body := `{"subject":"","link_token":"ghl_x","permission":"view","resource":"document:d1"}`
	wantProblem(t, s.send(t, http.MethodPost, "/v1/check", s.alice, body), http.StatusBadRequest, "give exactly one of subject and link_token")
}

func TestOmittedOrNullSubjectMeansCaller(t *testing.T) {
	s := startStrictServer(t)
	for _, body := range []string{
		`{"permission":"view","resource":"document:d1"}`,
		`{"subject":null,"permission":"view","resource":"document:d1"}`,
		`{"subject":"user:dev|alice","permission":"view","resource":"document:d1"}`,
	} {
		if !s.checkAllowed(t, body) {
			t.Errorf("%s: denied, want alice allowed", body)
		}
	}
	if s.checkAllowed(t, `{"subject":"user:dev|bob","permission":"view","resource":"document:d1"}`) {
		t.Error("bob allowed, want denied")
	}
}

func TestEmptyOwnerRejected(t *testing.T) {
	s := startStrictServer(t)
	before := s.auditActions(t)
	body := `{"resource":"workspace:w2","parent":"org:acme","owner":""}`
	wantProblem(t, s.send(t, http.MethodPost, "/v1/resources", s.alice, body), http.StatusBadRequest, "owner must not be empty")
	s.wantAuditUnchanged(t, before)

	// The id is still free: nothing was created.
	s.mustStatus(t, s.send(t, http.MethodPost, "/v1/resources", s.alice, `{"resource":"workspace:w2","parent":"org:acme","owner":null}`), http.StatusCreated)
}

// checkAllowed sends body to POST /v1/check as alice and returns the
// decision, failing the test on any status but 200.
func (s *strictServer) checkAllowed(t *testing.T, body string) bool {
	t.Helper()
	r := s.send(t, http.MethodPost, "/v1/check", s.alice, body)
	s.mustStatus(t, r, http.StatusOK)
	var resp struct {
		Allowed bool `json:"allowed"`
	}
	if err := json.Unmarshal([]byte(r.body), &resp); err != nil {
		t.Fatalf("response %q: %v", r.body, err)
	}
	return resp.Allowed
}

func TestLoneSurrogateReasonRejected(t *testing.T) {
	s := startStrictServer(t)
	before := s.auditActions(t)
	body := `{"role":"viewer","reason":"a\ud800b"}`
	wantProblem(t, s.send(t, http.MethodPut, "/v1/resources/project/p1/members/user:dev%7Cmallory", s.alice, body), http.StatusBadRequest, "surrogate")
	s.wantAuditUnchanged(t, before)

	body = `{"role":"viewer","reason":"a\ud83d\ude00b"}`
	s.mustStatus(t, s.send(t, http.MethodPut, "/v1/resources/project/p1/members/user:dev%7Cmallory", s.alice, body), http.StatusOK)
}

// mime.ParseMediaType reads charset*= over charset=, and drops an extended
// parameter that it cannot decode.
func TestExtendedContentTypeParametersRejected(t *testing.T) {
	s := startStrictServer(t)
	for _, ct := range []string{
		`application/json; charset=latin1; charset*=UTF-8''utf-8`,
		`application/json; profile*=bogus''x`,
		`application/json; charset*=utf-8''utf-8`,
	} {
		req := s.newRequest(t, http.MethodPost, "/v1/check", strings.NewReader(`{"permission":"view","resource":"document:d1"}`))
		req.Header.Set("Authorization", "Bearer "+s.alice)
		req.Header.Set("Content-Type", ct)
		wantProblem(t, s.do(t, req), http.StatusUnsupportedMediaType, "extended form")
	}
}
