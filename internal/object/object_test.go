package object_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

func TestParseResource(t *testing.T) {
	tests := []struct {
		in      string
		want    object.Ref
		wantErr bool
	}{
		{in: "org:acme", want: object.Ref{Type: "org", ID: "acme"}},
		{in: "document:D-1_x", want: object.Ref{Type: "document", ID: "D-1_x"}},
		{in: "group:" + strings.Repeat("a", 128), want: object.Ref{Type: "group", ID: strings.Repeat("a", 128)}},
		{in: "group:" + strings.Repeat("a", 129), wantErr: true},
		{in: "org:", wantErr: true},
		{in: ":acme", wantErr: true},
		{in: "acme", wantErr: true},
		{in: "Org:acme", wantErr: true},
		{in: "user:dev|alice", wantErr: true},
		{in: "link:x", wantErr: true},
		{in: "org:-acme", wantErr: true},
		{in: "org:ac me", wantErr: true},
		{in: "org:acmé", wantErr: true},
		{in: "org:a/b", wantErr: true},
		{in: "org:a:b", wantErr: true},
		{in: "org:..", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := object.ParseResource(tc.in)
			if tc.wantErr {
				if !errors.Is(err, object.ErrInvalid) {
					t.Fatalf("ParseResource(%q) error = %v, want ErrInvalid", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseResource(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseResource(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseSubject(t *testing.T) {
	valid := []string{"user:dev|alice", "service:corp|billing", "group:eng", "user:corp|=YWxpY2VAZXhhbXBsZS5jb20"}
	for _, s := range valid {
		if _, err := object.ParseSubject(s); err != nil {
			t.Errorf("ParseSubject(%q): %v", s, err)
		}
	}
	invalid := []string{"user:alice", "user:dev|", "user:Dev|alice", "org:acme", "user:dev|a b", "user:dev|a|b", "group:dev|eng", "user:dev|="}
	for _, s := range invalid {
		if _, err := object.ParseSubject(s); !errors.Is(err, object.ErrInvalid) {
			t.Errorf("ParseSubject(%q) error = %v, want ErrInvalid", s, err)
		}
	}
}

func TestPrincipalIDIsInjective(t *testing.T) {
	pairs := [][2]string{
		{"corp", "alice"},
		{"corp", "alice@example.com"},
		{"corp", "=YWxpY2VAZXhhbXBsZS5jb20"}, // the encoded form of the previous subject, used raw
		{"dev", "alice"},
		{"corp", "auth0|123"},
		{"corp", "ALICE"},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		id, err := object.PrincipalID(p[0], p[1])
		if err != nil {
			t.Fatalf("PrincipalID(%q, %q): %v", p[0], p[1], err)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("PrincipalID maps both %v and %v to %q", other, p, id)
		}
		seen[id] = p
		if _, err := object.ParseSubject("user:" + id); err != nil {
			t.Errorf("id %q for %v is not a valid subject: %v", id, p, err)
		}
	}
}

func TestPrincipalIDRejects(t *testing.T) {
	for _, tc := range []struct{ name, issuer, subject string }{
		{"empty subject", "corp", ""},
		{"subject too long", "corp", strings.Repeat("a", object.MaxSubjectLength+1)},
		{"issuer with bar", "co|rp", "alice"},
		{"uppercase issuer", "Corp", "alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := object.PrincipalID(tc.issuer, tc.subject); !errors.Is(err, object.ErrInvalid) {
				t.Errorf("error = %v, want ErrInvalid", err)
			}
		})
	}
}
