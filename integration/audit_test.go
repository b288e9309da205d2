package integration

// The tests in this file check the audit log end to end. Each change made
// over HTTP must appear once in GET /v1/audit with who, what, why and from
// where. A rejected change must not appear at all. The Postgres variants
// create a database of their own with pgtest.NewDatabase and are skipped
// without GATEHOUSE_TEST_DATABASE_URL. Like the other Postgres tests of
// this package, none calls t.Parallel.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-authz/gatehouse/internal/audit"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/server"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

// auditAuditor is the platform auditor of every server these tests start.
const auditAuditor = "auditor"

// auditOptions configures a server started by auditStart.
type auditOptions struct {
	// postgresURL selects the Postgres datastore on that database, which
	// the server migrates; empty means memory.
	postgresURL string

	trustedProxies []netip.Prefix
}

// auditStart starts a dev-mode server with user:dev|auditor as platform
// auditor and stops it when the test ends.
func auditStart(t *testing.T, opts auditOptions) *gatehouse {
	t.Helper()
	return runGatehouse(t, server.Config{
		PlatformAuditors: []string{"user:dev|" + auditAuditor},
		TrustedProxies:   opts.trustedProxies,
	}, opts.postgresURL)
}

// auditForEachDatastore runs test on a fresh memory server and on a fresh
// Postgres server; dbURL is empty for memory.
func auditForEachDatastore(t *testing.T, test func(t *testing.T, g *gatehouse, dbURL string)) {
	t.Run("memory", func(t *testing.T) {
		test(t, auditStart(t, auditOptions{}), "")
	})
	t.Run("postgres", func(t *testing.T) {
		dbURL := pgtest.NewDatabase(t)
		test(t, auditStart(t, auditOptions{postgresURL: dbURL}), dbURL)
	})
}

// auditEvent is one event of GET /v1/audit.
type auditEvent struct {
	ID         string            `json:"id"`
	Time       time.Time         `json:"time"`
	Org        string            `json:"org"`
	Actor      auditActor        `json:"actor"`
	OnBehalfOf string            `json:"on_behalf_of"`
	Action     string            `json:"action"`
	Resource   string            `json:"resource"`
	Subject    string            `json:"subject"`
	Before     map[string]string `json:"before"`
	After      map[string]string `json:"after"`
	Reason     string            `json:"reason"`
	ClientIP   string            `json:"client_ip"`
	UserAgent  string            `json:"user_agent"`
	RequestID  string            `json:"request_id"`
	BreakGlass bool              `json:"break_glass"`
	Outcome    string            `json:"outcome"`
	Token      string            `json:"consistency_token"`
}

type auditActor struct {
	Principal string `json:"principal"`
	Issuer    string `json:"issuer"`
	TokenID   string `json:"token_id"`
}

// auditPage is the body of GET /v1/audit.
type auditPage struct {
	Events        []auditEvent `json:"events"`
	NextPageToken string       `json:"next_page_token"`
}

// auditRead returns one page of GET /v1/audit?query, failing unless
// Gatehouse responds 200.
func (c *caller) auditRead(t *testing.T, query string) auditPage {
	t.Helper()
	r := c.do(t, http.MethodGet, "/v1/audit?"+query, nil)
	wantStatus(t, r, http.StatusOK)
	var page auditPage
	decodeJSON(t, r, &page)
	return page
}

// auditEvents returns every event of GET /v1/audit?query, following page
// tokens.
func (c *caller) auditEvents(t *testing.T, query string) []auditEvent {
	t.Helper()
	var events []auditEvent
	token := ""
	for range 1000 {
		q := query
		if token != "" {
			q += "&page_token=" + url.QueryEscape(token)
		}
		page := c.auditRead(t, q)
		events = append(events, page.Events...)
		if page.NextPageToken == "" {
			return events
		}
		token = page.NextPageToken
	}
	t.Fatalf("audit %s: more than 1000 pages", query)
	return nil
}

// auditTokenID returns the jti claim of a JWT without verifying it.
func auditTokenID(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decode token payload: %v", err)
	}
	var claims struct {
		ID string `json:"jti"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("parse token payload: %v", err)
	}
	return claims.ID
}

// auditWantEvent compares the fields of got with want that want sets,
// with the actor compared in full, and fails the test on any difference.
func auditWantEvent(t *testing.T, got, want auditEvent) {
	t.Helper()
	action := want.Action
	check := func(field string, gotValue, wantValue any) {
		t.Helper()
		if fmt.Sprint(gotValue) != fmt.Sprint(wantValue) {
			t.Errorf("%s event: %s: got %q, want %q", action, field, gotValue, wantValue)
		}
	}

	check("org", got.Org, want.Org)
	check("actor", got.Actor, want.Actor)
	check("on_behalf_of", got.OnBehalfOf, want.OnBehalfOf)
	check("action", got.Action, want.Action)
	check("resource", got.Resource, want.Resource)
	check("subject", got.Subject, want.Subject)
	check("reason", got.Reason, want.Reason)
	check("client_ip", got.ClientIP, want.ClientIP)
	check("user_agent", got.UserAgent, want.UserAgent)
	check("request_id", got.RequestID, want.RequestID)
	check("outcome", got.Outcome, want.Outcome)
	check("consistency_token", got.Token, want.Token)

	if !maps.Equal(got.Before, want.Before) {
		t.Errorf("%s event: before: got %v, want %v", want.Action, got.Before, want.Before)
	}
	if !maps.Equal(got.After, want.After) {
		t.Errorf("%s event: after: got %v, want %v", want.Action, got.After, want.After)
	}
	if got.ID == "" || got.Time.IsZero() {
		t.Errorf("%s event: id %q and time %v, want both set", want.Action, got.ID, got.Time)
	}
	if got.BreakGlass {
		t.Errorf("%s event: break_glass set, want unset", want.Action)
	}
}

// auditChange is one change request of TestAuditRecordsEachChange and the
// event it must produce.
type auditChange struct {
	name    string
	by      *caller
	method  string
	path    string
	body    any
	want    auditEvent
	status  int
	tokenIn string // "body" or "header": where the response carries the consistency token
}

func TestAuditRecordsEachChange(t *testing.T) {
	auditForEachDatastore(t, func(t *testing.T, g *gatehouse, dbURL string) {
		alice, bob := g.user(t, "alice"), g.user(t, "bob")
		billing := g.service(t, "billing")
		auditor := g.user(t, auditAuditor)
		issuer := g.url + "/dev/oidc"
		actor := func(c *caller) auditActor {
			return auditActor{Principal: c.ref, Issuer: issuer, TokenID: auditTokenID(t, c.token)}
		}

		changes := []auditChange{
			{
				name: "create org", by: alice, method: http.MethodPost, path: "/v1/resources",
				body:   map[string]string{"resource": "org:acme", "reason": "onboarding acme"},
				status: http.StatusCreated, tokenIn: "body",
				want: auditEvent{
					Action: "resource.create", Resource: "org:acme", Subject: alice.ref,
					After: map[string]string{"owner": alice.ref, "role": "owner"}, Reason: "onboarding acme",
				},
			},
			{
				name: "create workspace", by: alice, method: http.MethodPost, path: "/v1/resources",
				body:   createReq("workspace:acme-docs", "org:acme"),
				status: http.StatusCreated, tokenIn: "body",
				want: auditEvent{
					Action: "resource.create", Resource: "workspace:acme-docs", Subject: alice.ref,
					After: map[string]string{"owner": alice.ref, "role": "admin", "parent": "org:acme"},
				},
			},
			{
				name: "add member", by: alice, method: http.MethodPut, path: memberPath("workspace:acme-docs", bob.ref),
				body:   map[string]string{"role": "viewer", "reason": "joins the docs team"},
				status: http.StatusOK, tokenIn: "body",
				want: auditEvent{
					Action: "member.set", Resource: "workspace:acme-docs", Subject: bob.ref,
					After: map[string]string{"role": "viewer"}, Reason: "joins the docs team",
				},
			},
			{
				name: "change role", by: alice, method: http.MethodPut, path: memberPath("workspace:acme-docs", bob.ref),
				body:   map[string]string{"role": "editor"},
				status: http.StatusOK, tokenIn: "body",
				want: auditEvent{
					Action: "member.set", Resource: "workspace:acme-docs", Subject: bob.ref,
					Before: map[string]string{"role": "viewer"}, After: map[string]string{"role": "editor"},
				},
			},
			{
				name: "grant app role", by: alice, method: http.MethodPut, path: memberPath("org:acme", billing.ref),
				body:   map[string]string{"role": "app"},
				status: http.StatusOK, tokenIn: "body",
				want: auditEvent{
					Action: "member.set", Resource: "org:acme", Subject: billing.ref,
					After: map[string]string{"role": "app"},
				},
			},
			{
				name: "service creates for user", by: billing, method: http.MethodPost, path: "/v1/resources",
				body:   map[string]string{"resource": "workspace:acme-billing", "parent": "org:acme", "owner": bob.ref, "reason": "bob signed up"},
				status: http.StatusCreated, tokenIn: "body",
				want: auditEvent{
					OnBehalfOf: bob.ref, Action: "resource.create", Resource: "workspace:acme-billing", Subject: bob.ref,
					After: map[string]string{"owner": bob.ref, "role": "admin", "parent": "org:acme"}, Reason: "bob signed up",
				},
			},
			{
				name: "remove member", by: alice, method: http.MethodDelete,
				path:   memberPath("workspace:acme-docs", bob.ref) + "?reason=" + url.QueryEscape("left the team"),
				status: http.StatusNoContent, tokenIn: "header",
				want: auditEvent{
					Action: "member.remove", Resource: "workspace:acme-docs", Subject: bob.ref,
					Before: map[string]string{"role": "editor"}, Reason: "left the team",
				},
			},
			{
				name: "delete resource", by: alice, method: http.MethodDelete,
				path:   resourcePath("workspace:acme-docs") + "?reason=cleanup",
				status: http.StatusNoContent, tokenIn: "header",
				want: auditEvent{
					Action: "resource.delete", Resource: "workspace:acme-docs",
					Before: map[string]string{"descendants": "0"}, Reason: "cleanup",
				},
			},
		}

		seen := 0
		for i, ch := range changes {
			requestID := fmt.Sprintf("audit-change-%d", i)
			userAgent := "audit-test/" + strings.ReplaceAll(ch.name, " ", "-")
			r := g.send(t, request{
				Method: ch.method, Path: ch.path, Token: ch.by.token, Body: ch.body,
				Header: http.Header{"X-Request-Id": {requestID}, "User-Agent": {userAgent}},
			})
			wantStatus(t, r, ch.status)

			token := r.header.Get("Gatehouse-Consistency-Token")
			if ch.tokenIn == "body" {
				var out struct {
					Token string `json:"consistency_token"`
				}
				if err := json.Unmarshal(r.body, &out); err != nil {
					t.Fatalf("%s: decode response: %v", ch.name, err)
				}
				token = out.Token
			}
			if token == "" {
				t.Fatalf("%s: response carries no consistency token: %v", ch.name, r)
			}
			if got := r.header.Get("X-Request-Id"); got != requestID {
				t.Errorf("%s: X-Request-Id %q, want the caller's %q", ch.name, got, requestID)
			}

			events := alice.auditEvents(t, "org=org:acme")
			if len(events) != seen+1 {
				t.Fatalf("%s: %d events after the change, want exactly one more than %d", ch.name, len(events), seen)
			}
			seen = len(events)

			want := ch.want
			want.Org = "org:acme"
			want.Actor = actor(ch.by)
			want.ClientIP = "127.0.0.1"
			want.UserAgent = userAgent
			want.RequestID = r.header.Get("X-Request-Id")
			want.Outcome = audit.OutcomeApplied
			want.Token = token
			auditWantEvent(t, events[len(events)-1], want)
		}

		// The platform auditor reads the same events without naming the org.
		if all := auditor.auditEvents(t, ""); len(all) != seen {
			t.Errorf("auditor without org: %d events, want %d", len(all), seen)
		}
		if dbURL != "" {
			auditWantVerified(t, dbURL)
		}
	})
}

func TestAuditRejectedChangesLeaveNoEvent(t *testing.T) {
	auditForEachDatastore(t, func(t *testing.T, g *gatehouse, dbURL string) {
		alice, mallory := g.user(t, "alice"), g.user(t, "mallory")
		auditor := g.user(t, auditAuditor)
		alice.create(t, "org:acme", "")
		alice.create(t, "workspace:acme-docs", "org:acme")
		mallory.create(t, "org:evil", "")
		before := auditor.auditEvents(t, "")

		tests := []struct {
			name   string
			by     *caller
			method string
			path   string
			body   any
			status int
		}{
			{"unknown role", alice, http.MethodPut, memberPath("org:acme", "user:dev|bob"), map[string]string{"role": "wizard"}, http.StatusBadRequest},
			{"reason with newline", alice, http.MethodPut, memberPath("org:acme", "user:dev|bob"), map[string]string{"role": "member", "reason": "a\nb"}, http.StatusBadRequest},
			{"reason too long", alice, http.MethodDelete, resourcePath("workspace:acme-docs") + "?reason=" + strings.Repeat("x", 1025), nil, http.StatusBadRequest},
			{"app role for a user", alice, http.MethodPut, memberPath("org:acme", "user:dev|bob"), map[string]string{"role": "app"}, http.StatusBadRequest},
			{"user creates for another", alice, http.MethodPost, "/v1/resources", map[string]string{"resource": "workspace:w2", "parent": "org:acme", "owner": "user:dev|bob"}, http.StatusForbidden},
			{"org already exists", mallory, http.MethodPost, "/v1/resources", createReq("org:acme", ""), http.StatusConflict},
			{"workspace id taken", mallory, http.MethodPost, "/v1/resources", createReq("workspace:acme-docs", "org:evil"), http.StatusConflict},
			{"missing parent", alice, http.MethodPost, "/v1/resources", createReq("workspace:w3", "org:nope"), http.StatusNotFound},
			{"delete missing resource", alice, http.MethodDelete, resourcePath("workspace:nope"), nil, http.StatusNotFound},
			{"member of a foreign org", alice, http.MethodPut, memberPath("org:acme", "group:evil-group"), map[string]string{"role": "member"}, http.StatusNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := tt.by.do(t, tt.method, tt.path, tt.body)
				wantProblem(t, r, tt.status)
				if after := auditor.auditEvents(t, ""); len(after) != len(before) {
					t.Errorf("%d events after a rejected request, want %d; last: %+v", len(after), len(before), after[len(after)-1])
				}
			})
		}

		// A stranger's attempts on acme are rejected as 403 or 404, which
		// hides whether acme exists.
		for _, path := range []string{memberPath("org:acme", mallory.ref), resourcePath("workspace:acme-docs")} {
			r := mallory.do(t, http.MethodDelete, path, nil)
			if r.status != http.StatusForbidden && r.status != http.StatusNotFound {
				t.Errorf("stranger: got %v, want 403 or 404", r)
			}
		}

		// Removing a role that the subject does not hold changes nothing and
		// records nothing.
		alice.removeRole(t, "org:acme", "user:dev|nobody")

		if after := auditor.auditEvents(t, ""); len(after) != len(before) {
			t.Errorf("%d events after rejected and empty changes, want %d", len(after), len(before))
		}
		if dbURL != "" {
			auditWantVerified(t, dbURL)
		}
	})
}

func TestAuditClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	tests := []struct {
		name      string
		trusted   []netip.Prefix
		forwarded []string
		want      string
	}{
		{"direct", nil, nil, "127.0.0.1"},
		{"forwarded from untrusted peer", nil, []string{"203.0.113.7"}, "127.0.0.1"},
		{"forwarded from trusted proxy", trusted, []string{"203.0.113.7"}, "203.0.113.7"},
		{"rightmost untrusted hop", trusted, []string{"198.51.100.1, 203.0.113.7"}, "203.0.113.7"},
		{"trusted hops skipped", trusted, []string{"203.0.113.7, 127.0.0.1"}, "203.0.113.7"},
		{"hops in two headers", trusted, []string{"198.51.100.1", "203.0.113.7"}, "203.0.113.7"},
		{"invalid hop", trusted, []string{"not-an-address"}, "127.0.0.1"},
		{"trusted proxy without header", trusted, nil, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := auditStart(t, auditOptions{trustedProxies: tt.trusted})
			alice := g.user(t, "alice")
			r := g.send(t, request{
				Method: http.MethodPost, Path: "/v1/resources", Token: alice.token,
				Body: createReq("org:acme", ""), Header: http.Header{"X-Forwarded-For": tt.forwarded},
			})
			wantStatus(t, r, http.StatusCreated)
			events := alice.auditEvents(t, "org=org:acme")
			if len(events) != 1 {
				t.Fatalf("%d events, want 1", len(events))
			}
			if events[0].ClientIP != tt.want {
				t.Errorf("client_ip: got %q, want %q", events[0].ClientIP, tt.want)
			}
		})
	}
}

func TestAuditReadAccess(t *testing.T) {
	g := auditStart(t, auditOptions{})
	alice, dave, gina := g.user(t, "alice"), g.user(t, "dave"), g.user(t, "gina")
	bob, mallory := g.user(t, "bob"), g.user(t, "mallory")
	auditor := g.user(t, auditAuditor)
	alice.create(t, "org:acme", "")
	alice.setRole(t, "org:acme", dave.ref, "admin")
	alice.setRole(t, "org:acme", bob.ref, "member")
	gina.create(t, "org:globex", "")
	gina.create(t, "workspace:globex-hq", "org:globex")

	t.Run("admin reads own org", func(t *testing.T) {
		events := dave.auditEvents(t, "org=org:acme")
		if len(events) != 3 {
			t.Errorf("%d events, want 3", len(events))
		}
		for _, e := range events {
			if e.Org != "org:acme" {
				t.Errorf("event %s of %s in org:acme's listing", e.ID, e.Org)
			}
		}
	})
	t.Run("admin of another org", func(t *testing.T) {
		r := dave.do(t, http.MethodGet, "/v1/audit?org=org:globex", nil)
		if r.status != http.StatusForbidden && r.status != http.StatusNotFound {
			t.Fatalf("got %v, want 403 or 404", r)
		}
		wantProblem(t, r, r.status)
	})
	t.Run("member", func(t *testing.T) {
		r := bob.do(t, http.MethodGet, "/v1/audit?org=org:acme", nil)
		if r.status != http.StatusForbidden && r.status != http.StatusNotFound {
			t.Fatalf("got %v, want 403 or 404", r)
		}
	})
	t.Run("stranger", func(t *testing.T) {
		r := mallory.do(t, http.MethodGet, "/v1/audit?org=org:acme", nil)
		if r.status != http.StatusForbidden && r.status != http.StatusNotFound {
			t.Fatalf("got %v, want 403 or 404", r)
		}
	})
	t.Run("admin without org", func(t *testing.T) {
		wantProblem(t, dave.do(t, http.MethodGet, "/v1/audit", nil), http.StatusBadRequest)
	})
	t.Run("auditor reads each org", func(t *testing.T) {
		for org, want := range map[string]int{"org:acme": 3, "org:globex": 2, "org:initech": 0} {
			events := auditor.auditEvents(t, "org="+org)
			if len(events) != want {
				t.Errorf("%s: %d events, want %d", org, len(events), want)
			}
			for _, e := range events {
				if e.Org != org {
					t.Errorf("event %s of %s in %s's listing", e.ID, e.Org, org)
				}
			}
		}
	})
	t.Run("auditor reads all orgs", func(t *testing.T) {
		orgs := map[string]int{}
		for _, e := range auditor.auditEvents(t, "") {
			orgs[e.Org]++
		}
		if want := map[string]int{"org:acme": 3, "org:globex": 2}; !maps.Equal(orgs, want) {
			t.Errorf("events per org: got %v, want %v", orgs, want)
		}
	})
	t.Run("unauthenticated", func(t *testing.T) {
		r := g.send(t, request{Method: http.MethodGet, Path: "/v1/audit?org=org:acme"})
		wantProblem(t, r, http.StatusUnauthorized)
	})
}

func TestAuditListing(t *testing.T) {
	g := auditStart(t, auditOptions{})
	alice, gina := g.user(t, "alice"), g.user(t, "gina")
	auditor := g.user(t, auditAuditor)
	start := time.Now().UTC().Add(-time.Second)
	alice.create(t, "org:acme", "")
	gina.create(t, "org:globex", "")
	alice.create(t, "workspace:acme-docs", "org:acme")
	alice.setRole(t, "workspace:acme-docs", "user:dev|bob", "viewer")
	alice.setRole(t, "workspace:acme-docs", "user:dev|bob", "editor")
	alice.removeRole(t, "workspace:acme-docs", "user:dev|bob")
	gina.setRole(t, "org:globex", "user:dev|carol", "member")

	all := auditor.auditEvents(t, "page_size=100")
	if len(all) != 7 {
		t.Fatalf("%d events, want 7", len(all))
	}

	t.Run("pages of one", func(t *testing.T) {
		paged := auditor.auditEvents(t, "page_size=1")
		if len(paged) != len(all) {
			t.Fatalf("%d events in pages of one, want %d", len(paged), len(all))
		}
		for i := range all {
			if paged[i].ID != all[i].ID {
				t.Errorf("page %d: event %s, want %s", i, paged[i].ID, all[i].ID)
			}
		}
	})

	count := func(pred func(auditEvent) bool) int {
		n := 0
		for _, e := range all {
			if pred(e) {
				n++
			}
		}
		return n
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name  string
		query string
		want  int
	}{
		{"action", "action=member.set", count(func(e auditEvent) bool { return e.Action == "member.set" })},
		{"resource", "resource=" + url.QueryEscape("workspace:acme-docs"), 4},
		{"actor", "actor=" + url.QueryEscape("user:dev|gina"), 2},
		{"org and action", "org=org:acme&action=resource.create", 2},
		{"since before all", "since=" + start.Format(time.RFC3339), 7},
		{"since in the future", "since=" + future, 0},
		{"until in the past", "until=" + start.Format(time.RFC3339), 0},
		{"until in the future", "until=" + future, 7},
		{"page_size zero is the default", "page_size=0", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := len(auditor.auditEvents(t, tt.query)); got != tt.want {
				t.Errorf("%s: %d events, want %d", tt.query, got, tt.want)
			}
		})
	}

	t.Run("last page has no token", func(t *testing.T) {
		page := auditor.auditRead(t, "page_size=1000")
		if page.NextPageToken != "" {
			t.Errorf("next_page_token %q after a short page, want none", page.NextPageToken)
		}
	})

	badFilters := []struct{ name, query string }{
		{"since not RFC 3339", "since=yesterday"},
		{"until out of range", "until=2026-13-40T00:00:00Z"},
		{"page_size negative", "page_size=-1"},
		{"page_size not a number", "page_size=ten"},
		{"page_size too large", "page_size=1001"},
		{"org without type", "org=acme"},
		{"org of wrong type", "org=workspace:acme-docs"},
		{"action too long", "action=" + strings.Repeat("a", 65)},
		{"page_token too long", "page_token=" + strings.Repeat("0", 65)},
		{"resource too long", "resource=" + strings.Repeat("r", 1101)},
	}
	for _, tt := range badFilters {
		t.Run("bad "+tt.name, func(t *testing.T) {
			wantProblem(t, auditor.do(t, http.MethodGet, "/v1/audit?"+tt.query, nil), http.StatusBadRequest)
		})
	}
}

// TestAuditPostgresVerify runs `gatehouse audit verify` on a database with
// real traffic, then edits and deletes rows behind the triggers' back and
// checks that verification fails naming the row.
func TestAuditPostgresVerify(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	g := auditStart(t, auditOptions{postgresURL: dbURL})
	alice := g.user(t, "alice")
	alice.create(t, "org:acme", "")
	alice.create(t, "workspace:acme-docs", "org:acme")
	alice.setRole(t, "workspace:acme-docs", "user:dev|bob", "viewer")
	alice.setRole(t, "workspace:acme-docs", "user:dev|bob", "editor")
	alice.removeRole(t, "workspace:acme-docs", "user:dev|bob")

	bin := auditBuildBinary(t)
	out, err := auditRunVerify(t, bin, dbURL)
	if err != nil {
		t.Fatalf("audit verify on an intact log: %v\n%s", err, out)
	}
	if !strings.Contains(out, "in 1 chains: 0 broken") {
		t.Errorf("audit verify output %q, want it to report 1 chain and 0 broken", out)
	}
	auditWantVerified(t, dbURL)

	// The chain interleaves events and outcomes: seq 3 is the workspace's
	// creation event, seq 5 the first member.set event.
	conn := auditConnectReplica(t, dbURL)
	rowID := func(seq int) string {
		var id string
		err := conn.QueryRow(context.Background(), `SELECT id FROM gatehouse.audit_entries WHERE chain = 'org:acme' AND seq = $1`, seq).Scan(&id)
		if err != nil {
			t.Fatalf("read id of seq %d: %v", seq, err)
		}
		return id
	}
	edited, following := rowID(5), rowID(6)

	t.Run("edited row", func(t *testing.T) {
		auditExec(t, conn, `UPDATE gatehouse.audit_entries SET after = '{"role": "owner"}' WHERE id = $1`, edited)
		out, err := auditRunVerify(t, bin, dbURL)
		auditWantExitError(t, out, err)
		if !strings.Contains(out, edited) || !strings.Contains(out, "edited") {
			t.Errorf("audit verify output does not name the edited row %s:\n%s", edited, out)
		}

		auditExec(t, conn, `UPDATE gatehouse.audit_entries SET after = '{"role": "viewer"}' WHERE id = $1`, edited)
		if out, err := auditRunVerify(t, bin, dbURL); err != nil {
			t.Fatalf("audit verify after undoing the edit: %v\n%s", err, out)
		}
	})

	t.Run("deleted middle row", func(t *testing.T) {
		auditExec(t, conn, `DELETE FROM gatehouse.audit_entries WHERE id = $1`, edited)
		out, err := auditRunVerify(t, bin, dbURL)
		auditWantExitError(t, out, err)
		if !strings.Contains(out, following) || !strings.Contains(out, "missing") {
			t.Errorf("audit verify output does not name the row %s after the deleted one:\n%s", following, out)
		}
	})
}

// TestAuditPostgresNonUTF8UserAgent sends a change with a User-Agent that
// is not valid UTF-8, which HTTP allows (obs-text), and expects the change
// to be made and recorded as on memory.
func TestAuditPostgresNonUTF8UserAgent(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	g := auditStart(t, auditOptions{postgresURL: dbURL})
	alice := g.user(t, "alice")
	alice.create(t, "org:acme", "")

	r := g.send(t, request{
		Method: http.MethodPut, Path: memberPath("org:acme", "user:dev|bob"), Token: alice.token,
		Body: map[string]string{"role": "member"}, Header: http.Header{"User-Agent": {"audit-test/\xff"}},
	})
	if r.status != http.StatusOK {
		t.Errorf("change with a non-UTF-8 User-Agent: got %v, want 200", r)
	}
	if events := alice.auditEvents(t, "org=org:acme&action=member.set"); len(events) != 1 {
		t.Errorf("%d member.set events, want 1", len(events))
	}
}

// auditWantVerified fails the test unless audit.Verify finds every chain
// of the database at dbURL intact.
func auditWantVerified(t *testing.T, dbURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer st.Close()
	report, err := audit.Verify(ctx, audit.NewPostgres(st.Pool))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !report.OK() {
		t.Errorf("verify: breaks %v, want none", report.Breaks)
	}
}

// auditBuildBinary builds cmd/gatehouse into a temporary directory.
func auditBuildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gatehouse")
	build := exec.Command("go", "build", "-o", bin, "github.com/gatehouse-authz/gatehouse/cmd/gatehouse")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gatehouse: %v\n%s", err, out)
	}
	return bin
}

// auditRunVerify runs `gatehouse audit verify` on the database at dbURL and
// returns its combined output.
func auditRunVerify(t *testing.T, bin, dbURL string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "audit", "verify", "--database-url", dbURL).CombinedOutput()
	return string(out), err
}

// auditWantExitError fails the test unless err is a non-zero exit.
func auditWantExitError(t *testing.T, out string, err error) {
	t.Helper()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("audit verify on a tampered log: got error %v, want a non-zero exit; output:\n%s", err, out)
	}
}

// auditConnectReplica connects to dbURL with ordinary triggers disabled
// (session_replication_role = replica), which only a superuser may do; the
// test role is one.
func auditConnectReplica(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatalf("bypass the audit triggers: %v", err)
	}
	return conn
}

// auditExec runs one statement on conn and fails the test on error.
func auditExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
