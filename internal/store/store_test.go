package store_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-authz/gatehouse/internal/store"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ name, in string }{
		{"url", "postgres://gh:S3cret-pw@db:5432/gatehouse?sslmode=require"},
		{"url query", "postgresql://gh@db/gatehouse?password=S3cret-pw&sslmode=disable"},
		{"keyword", "host=db user=gh password=S3cret-pw dbname=gatehouse"},
		{"keyword quoted", "host=db password='S3cret-pw with space' dbname=gatehouse"},
		{"keyword spaced", "host=db password = S3cret-pw dbname=gatehouse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := store.RedactURL(tc.in)
			if strings.Contains(got, "S3cret") {
				t.Errorf("RedactURL(%q) = %q, still contains the password", tc.in, got)
			}
			if !strings.Contains(got, "db") {
				t.Errorf("RedactURL(%q) = %q, lost the host", tc.in, got)
			}
		})
	}
}
