package metrics_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-authz/gatehouse/internal/metrics"
)

func TestMethodLabel(t *testing.T) {
	for _, tc := range []struct{ method, want string }{
		{"GET", "GET"},
		{"HEAD", "HEAD"},
		{"POST", "POST"},
		{"PUT", "PUT"},
		{"PATCH", "PATCH"},
		{"DELETE", "DELETE"},
		{"OPTIONS", "OPTIONS"},
		{"CONNECT", "CONNECT"},
		{"TRACE", "TRACE"},
		{"get", "other"},
		{"PROPFIND", "other"},
		{"", "other"},
		{strings.Repeat("X", 20000), "other"},
	} {
		if got := metrics.MethodLabel(tc.method); got != tc.want {
			t.Errorf("MethodLabel(%.40q) = %q, want %q", tc.method, got, tc.want)
		}
	}
}
