package grants

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/schema"
)

// TestGrantableRolesMatchSchema fails when a role listed as grantable does
// not accept grant#holder with expiration in the schema, or when the
// schema accepts it on a role that is not listed.
func TestGrantableRolesMatchSchema(t *testing.T) {
	relation := regexp.MustCompile(`(?m)^definition (\w+) \{|^\s+relation (\w+): (.*)$`)
	definition := ""
	found := map[string][]string{}
	for _, m := range relation.FindAllStringSubmatch(schema.Text, -1) {
		if m[1] != "" {
			definition = m[1]
			continue
		}
		if strings.Contains(m[3], "grant#holder with expiration") {
			found[definition] = append(found[definition], m[2])
		}
	}
	for typ, roles := range grantableRoles {
		for _, role := range roles {
			if !strings.Contains(" "+strings.Join(found[typ], " ")+" ", " "+role+" ") {
				t.Errorf("%s#%s is grantable but does not accept grant#holder with expiration", typ, role)
			}
		}
		if len(found[typ]) != len(roles) {
			t.Errorf("%s: schema accepts grants on %v, grantableRoles lists %v", typ, found[typ], roles)
		}
	}
}

func TestValidateTimes(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	s := New(nil, NewMemory(), Config{
		MaxDuration: map[string]time.Duration{"admin": 24 * time.Hour},
		BreakGlass:  []string{"user:corp|oncall"},
		Now:         func() time.Time { return now },
	})
	alice := authz.Caller{Ref: object.Ref{Type: object.TypeUser, ID: "corp|alice"}, Reason: "handover"}
	oncall := authz.Caller{Ref: object.Ref{Type: object.TypeUser, ID: "corp|oncall"}, Reason: "outage"}
	bob := object.Ref{Type: object.TypeUser, ID: "corp|bob"}
	ws := object.Ref{Type: object.TypeWorkspace, ID: "w"}

	cases := []struct {
		name   string
		caller authz.Caller
		req    CreateRequest
		err    error
		state  State
	}{
		{"duration from now", alice, CreateRequest{Resource: ws, Subject: bob, Role: "viewer", Duration: time.Hour}, nil, StateActive},
		{"scheduled", alice, CreateRequest{Resource: ws, Subject: bob, Role: "viewer", NotBefore: now.Add(time.Hour), Duration: time.Hour}, nil, StateScheduled},
		{"not_before in the past means now", alice, CreateRequest{Resource: ws, Subject: bob, Role: "viewer", NotBefore: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)}, nil, StateActive},
		{"no end", alice, CreateRequest{Resource: ws, Subject: bob, Role: "viewer"}, authz.ErrInvalid, ""},
		{"both ends", alice, CreateRequest{Resource: ws, Subject: bob, Role: "viewer", Duration: time.Hour, ExpiresAt: now.Add(time.Hour)}, authz.ErrInvalid, ""},
		{"end now", alice, CreateRequest{Resource: ws, Subject: bob, Role: "viewer", ExpiresAt: now}, authz.ErrInvalid, ""},
		{"end before not_before", alice, CreateRequest{Resource: ws, Subject: bob, Role: "viewer", NotBefore: now.Add(2 * time.Hour), ExpiresAt: now.Add(time.Hour)}, authz.ErrInvalid, ""},
		{"default maximum", alice, CreateRequest{Resource: ws, Subject: bob, Role: "viewer", Duration: DefaultMaxDuration + time.Second}, authz.ErrInvalid, ""},
		{"role maximum", alice, CreateRequest{Resource: ws, Subject: bob, Role: "admin", Duration: 25 * time.Hour}, authz.ErrInvalid, ""},
		{"role maximum exactly", alice, CreateRequest{Resource: ws, Subject: bob, Role: "admin", Duration: 24 * time.Hour}, nil, StateActive},
		{"no reason", authz.Caller{Ref: alice.Ref}, CreateRequest{Resource: ws, Subject: bob, Role: "viewer", Duration: time.Hour}, authz.ErrInvalid, ""},
		{"org owner", alice, CreateRequest{Resource: object.Ref{Type: object.TypeOrg, ID: "acme"}, Subject: bob, Role: "owner", Duration: time.Hour}, authz.ErrInvalid, ""},
		{"break-glass not listed", alice, CreateRequest{Resource: ws, Subject: alice.Ref, Role: "admin", Duration: time.Hour, BreakGlass: true}, authz.ErrForbidden, ""},
		{"break-glass for another", oncall, CreateRequest{Resource: ws, Subject: bob, Role: "admin", Duration: time.Hour, BreakGlass: true}, authz.ErrInvalid, ""},
		{"break-glass too long", oncall, CreateRequest{Resource: ws, Subject: oncall.Ref, Role: "viewer", Duration: time.Hour + time.Second, BreakGlass: true}, authz.ErrInvalid, ""},
		{"break-glass", oncall, CreateRequest{Resource: ws, Subject: oncall.Ref, Role: "viewer", Duration: time.Hour, BreakGlass: true}, nil, StateActive},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, err := s.validate(tc.caller, tc.req, now)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("got error %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if g.State != tc.state {
				t.Errorf("got state %q, want %q", g.State, tc.state)
			}
			if !g.ExpiresAt.After(g.NotBefore) || g.NotBefore.Before(now) {
				t.Errorf("got not_before %v and expires_at %v, want now <= not_before < expires_at", g.NotBefore, g.ExpiresAt)
			}
		})
	}
}
