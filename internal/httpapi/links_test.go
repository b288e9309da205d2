package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/links"
)

func TestParseCreateLink(t *testing.T) {
	ptr := func(s string) *string { return &s }
	uses := func(n int) *int { return &n }
	for _, tc := range []struct {
		name    string
		body    createLinkRequest
		wantErr string
	}{
		{"minimal", createLinkRequest{Resource: "document:d1", Role: "viewer", Audience: "anyone"}, ""},
		{"all fields", createLinkRequest{Resource: "project:p1", Role: "editor", Audience: "org", ExpiresAt: ptr("2030-01-02T15:04:05Z"), MaxUses: uses(5)}, ""},
		{"bad resource", createLinkRequest{Resource: "document", Role: "viewer", Audience: "anyone"}, "resource:"},
		{"bad expiry", createLinkRequest{Resource: "document:d1", ExpiresAt: ptr("2030-01-02")}, "expires_at"},
		{"zero max uses", createLinkRequest{Resource: "document:d1", MaxUses: uses(0)}, "max_uses"},
		{"max uses over limit", createLinkRequest{Resource: "document:d1", MaxUses: uses(links.MaxUsesLimit + 1)}, "max_uses"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCreateLink(tc.body)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestFailLinkStatuses(t *testing.T) {
	a := &api{}
	for _, tc := range []struct {
		name       string
		err        error
		status     int
		retryAfter string
	}{
		{"rate limited", &links.RateLimitedError{RetryAfter: 2400 * time.Millisecond}, http.StatusTooManyRequests, "2"},
		{"rate limited under a second", &links.RateLimitedError{RetryAfter: time.Millisecond}, http.StatusTooManyRequests, "1"},
		{"token not found", fmt.Errorf("redeem: %w", links.ErrTokenNotFound), http.StatusNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			a.failLink(w, httptest.NewRequest(http.MethodPost, "/v1/links/redeem", nil), tc.err)
			if w.Code != tc.status {
				t.Errorf("status %d, want %d", w.Code, tc.status)
			}
			if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
		})
	}
}
