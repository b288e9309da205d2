package integration

// The tests in this file check temporary grants end to end. They cover the
// start and the end at their edges (with SpiceDB's caches warm), early
// revocation, independence from permanent roles, break-glass grants and
// rejected requests. They also check that Gatehouse tokens go stale when a
// grant starts and ends. Each test runs on memory and, when
// GATEHOUSE_TEST_DATABASE_URL is set, on a PostgreSQL database of its own.

import (
	"github.com/gatehouse-authz/gatehouse/internal/expiry"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/server"
)

// Principals of the servers that grStart starts.
const (
	grAuditor = "auditor"
	grOncall  = "oncall"
)

// grStart starts a dev-mode server with user:dev|auditor as platform
// auditor and user:dev|oncall as break-glass principal, and stops it when
// the test ends. An empty dbURL means memory.
func grStart(t *testing.T, dbURL string) *gatehouse {
	t.Helper()
	return runGatehouse(t, server.Config{
		PlatformAuditors: []string{"user:dev|" + grAuditor},
		BreakGlass:       []string{"user:dev|" + grOncall},
	}, dbURL)
}

// grForEachDatastore runs test on memory and on a fresh PostgreSQL
// database.
func grForEachDatastore(t *testing.T, test func(t *testing.T, g *gatehouse)) {
	t.Run("memory", func(t *testing.T) { test(t, grStart(t, "")) })
	t.Run("postgres", func(t *testing.T) { test(t, grStart(t, pgtest.NewDatabase(t))) })
}

// grGrant is a grant as the API returns it.
type grGrant struct {
	ID         string    `json:"id"`
	Resource   string    `json:"resource"`
	Subject    string    `json:"subject"`
	Role       string    `json:"role"`
	NotBefore  time.Time `json:"not_before"`
	ExpiresAt  time.Time `json:"expires_at"`
	Grantor    string    `json:"grantor"`
	State      string    `json:"state"`
	BreakGlass bool      `json:"break_glass"`
	Reason     string    `json:"reason"`
	CreatedAt  time.Time `json:"created_at"`
}

// grant posts body to /v1/grants and fails unless Gatehouse responds 201.
func (c *caller) grant(t *testing.T, body map[string]any) grGrant {
	t.Helper()
	if _, ok := body["reason"]; !ok {
		body["reason"] = "incident 42"
	}
	r := c.do(t, http.MethodPost, "/v1/grants", body)
	wantStatus(t, r, http.StatusCreated)
	var g grGrant
	decodeJSON(t, r, &g)
	return g
}

// getGrant reads grant id and fails unless Gatehouse responds 200.
func (c *caller) getGrant(t *testing.T, id string) grGrant {
	t.Helper()
	r := c.do(t, http.MethodGet, "/v1/grants/"+id, nil)
	wantStatus(t, r, http.StatusOK)
	var g grGrant
	decodeJSON(t, r, &g)
	return g
}

// revokeGrant revokes grant id and fails unless Gatehouse responds 200.
func (c *caller) revokeGrant(t *testing.T, id string) grGrant {
	t.Helper()
	r := c.do(t, http.MethodDelete, "/v1/grants/"+id+"?reason=done", nil)
	wantStatus(t, r, http.StatusOK)
	var g grGrant
	decodeJSON(t, r, &g)
	return g
}

// listGrants returns the grants of GET /v1/grants?query, all pages.
func (c *caller) listGrants(t *testing.T, query string) []grGrant {
	t.Helper()
	var all []grGrant
	token := ""
	for range 100 {
		q := query
		if token != "" {
			q += "&page_token=" + url.QueryEscape(token)
		}
		r := c.do(t, http.MethodGet, "/v1/grants?"+q, nil)
		wantStatus(t, r, http.StatusOK)
		var page struct {
			Grants        []grGrant `json:"grants"`
			NextPageToken string    `json:"next_page_token"`
		}
		decodeJSON(t, r, &page)
		all = append(all, page.Grants...)
		if page.NextPageToken == "" {
			return all
		}
		token = page.NextPageToken
	}
	t.Fatalf("list grants %s: more than 100 pages", query)
	return nil
}

// grTenant creates org:acme and workspace:w owned by alice, and returns
// alice and bob, who holds no role yet.
func grTenant(t *testing.T, g *gatehouse) (alice, bob *caller) {
	t.Helper()
	alice, bob = g.user(t, "alice"), g.user(t, "bob")
	alice.create(t, "org:acme", "")
	alice.create(t, "workspace:w", "org:acme")
	return alice, bob
}

// grWaitState polls grant id until its state is want, and fails after
// limit.
func grWaitState(t *testing.T, c *caller, id, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := c.getGrant(t, id).State
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("grant %s is %q %v later, want %q", id, got, limit, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// grWantEnd checks subject's permission on resource repeatedly until a
// second after end, with warm caches. Every check that returned before
// end - expiry.MaxLead must be allowed, and every check sent after end must
// be denied: the scheduler deletes the grant's relationships up to that early,
// so that no result SpiceDB cached before the end outlives it. Checks in
// between may go either way. It returns how many checks ran on each side of
// that window, so that callers can make sure both sides were seen.
func grWantEnd(t *testing.T, c *caller, subject, permission, resource string, end time.Time) (early, late int) {
	t.Helper()
	for time.Now().Before(end.Add(time.Second)) {
		sent := time.Now()
		got := c.allowed(t, subject, permission, resource)
		returned := time.Now()
		switch {
		case returned.Before(end.Add(-expiry.MaxLead)):
			early++
			if !got {
				t.Fatalf("check of %s on %s denied at %v, %v before the end; want allowed",
					permission, resource, returned.Format(time.RFC3339Nano), end.Sub(returned))
			}
		case sent.After(end):
			late++
			if got {
				t.Fatalf("check of %s on %s sent %v after the end allowed; want denied", permission, resource, sent.Sub(end))
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return early, late
}

func TestGrantExpiresAtEdge(t *testing.T) {
	grForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := grTenant(t, g)
		created := alice.grant(t, map[string]any{"resource": "workspace:w", "subject": bob.ref, "role": "viewer", "duration": "3s"})
		if created.State != "active" {
			t.Fatalf("state %q, want active", created.State)
		}
		if got := created.ExpiresAt.Sub(created.NotBefore); got != 3*time.Second {
			t.Errorf("grant lasts %v, want 3s", got)
		}

		early, late := grWantEnd(t, alice, bob.ref, "view", "workspace:w", created.ExpiresAt)
		if early < 10 || late < 10 {
			t.Errorf("%d checks before the end and %d after it, want at least 10 of each", early, late)
		}
		if bob.allowed(t, "", "view", "workspace:w") {
			t.Error("bob still views workspace:w with his own token after the end")
		}
		grWaitState(t, alice, created.ID, "expired", 3*time.Second)
		if n := len(g.user(t, grAuditor).auditEvents(t, "action=grant.expire")); n != 1 {
			t.Errorf("%d grant.expire events, want 1", n)
		}
	})
}

func TestGrantStartsAtNotBefore(t *testing.T) {
	grForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := grTenant(t, g)
		notBefore := time.Now().Add(2 * time.Second)
		created := alice.grant(t, map[string]any{
			"resource": "workspace:w", "subject": bob.ref, "role": "editor",
			"not_before": notBefore.Format(time.RFC3339Nano), "duration": "1h",
		})
		if created.State != "scheduled" {
			t.Fatalf("state %q, want scheduled", created.State)
		}

		// Denied strictly before not_before, with warm caches.
		for time.Now().Before(notBefore) {
			got := alice.allowed(t, bob.ref, "edit", "workspace:w")
			if time.Now().Before(notBefore) && got {
				t.Fatal("bob edits workspace:w before not_before")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Allowed within one scheduler tick and some slack after it.
		deadline := notBefore.Add(2500 * time.Millisecond)
		for !alice.allowed(t, bob.ref, "edit", "workspace:w") {
			if time.Now().After(deadline) {
				t.Fatalf("bob cannot edit workspace:w %v after not_before", time.Since(notBefore))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got := alice.getGrant(t, created.ID).State; got != "active" {
			t.Errorf("state %q after the start, want active", got)
		}
		if n := len(g.user(t, grAuditor).auditEvents(t, "action=grant.start")); n != 1 {
			t.Errorf("%d grant.start events, want 1", n)
		}
	})
}

func TestGrantRevokedEarly(t *testing.T) {
	grForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := grTenant(t, g)
		created := alice.grant(t, map[string]any{"resource": "workspace:w", "subject": bob.ref, "role": "admin", "duration": "1h"})
		for range 20 {
			if !alice.allowed(t, bob.ref, "manage", "workspace:w") {
				t.Fatal("bob cannot manage workspace:w during his grant")
			}
		}

		revoked := alice.revokeGrant(t, created.ID)
		if revoked.State != "revoked" {
			t.Errorf("state %q after revocation, want revoked", revoked.State)
		}
		// The very next check is denied: no cache or delay.
		if alice.allowed(t, bob.ref, "manage", "workspace:w") {
			t.Error("bob manages workspace:w right after the revocation")
		}
		if alice.allowed(t, bob.ref, "view", "workspace:w") {
			t.Error("bob views workspace:w right after the revocation")
		}
		again := alice.revokeGrant(t, created.ID)
		if again.State != "revoked" {
			t.Errorf("state %q after a second revocation, want revoked", again.State)
		}
		if n := len(g.user(t, grAuditor).auditEvents(t, "action=grant.revoke")); n != 1 {
			t.Errorf("%d grant.revoke events, want 1", n)
		}
	})
}

func TestGrantKeepsPermanentRole(t *testing.T) {
	grForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := grTenant(t, g)
		alice.setRole(t, "workspace:w", bob.ref, "viewer")

		same := alice.grant(t, map[string]any{"resource": "workspace:w", "subject": bob.ref, "role": "viewer", "duration": "2s"})
		higher := alice.grant(t, map[string]any{"resource": "workspace:w", "subject": bob.ref, "role": "editor", "duration": "1h"})
		if !alice.allowed(t, bob.ref, "edit", "workspace:w") {
			t.Fatal("bob cannot edit workspace:w during his editor grant")
		}

		alice.revokeGrant(t, higher.ID)
		grWaitState(t, alice, same.ID, "expired", 5*time.Second)
		if alice.allowed(t, bob.ref, "edit", "workspace:w") {
			t.Error("bob edits workspace:w after his editor grant was revoked")
		}
		if !alice.allowed(t, bob.ref, "view", "workspace:w") {
			t.Error("bob lost his permanent viewer role when his grants ended")
		}
		r := alice.do(t, http.MethodGet, memberPath("workspace:w", bob.ref), nil)
		wantStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.body), `"role":"viewer"`) {
			t.Errorf("bob's membership after the grants ended: %s, want viewer", r.body)
		}
	})
}

func TestGrantGroupSubject(t *testing.T) {
	grForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := grTenant(t, g)
		alice.create(t, "group:eng", "org:acme")
		alice.setRole(t, "group:eng", bob.ref, "member")
		mallory := g.user(t, "mallory")
		mallory.create(t, "org:other", "")
		mallory.create(t, "group:outsiders", "org:other")

		alice.grant(t, map[string]any{"resource": "workspace:w", "subject": "group:eng", "role": "viewer", "duration": "1h"})
		if !alice.allowed(t, bob.ref, "view", "workspace:w") {
			t.Error("bob cannot view workspace:w through his group's grant")
		}
		r := alice.do(t, http.MethodPost, "/v1/grants", map[string]any{
			"resource": "workspace:w", "subject": "group:outsiders", "role": "viewer", "duration": "1h", "reason": "x",
		})
		wantProblem(t, r, http.StatusNotFound)
	})
}

// TestGrantRejectsGroupLoop checks that a grant of membership cannot make
// a group a member of itself through another group, at creation or when a
// scheduled grant starts after the loop has formed.
func TestGrantRejectsGroupLoop(t *testing.T) {
	grForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := grTenant(t, g)
		alice.create(t, "group:eng", "org:acme")
		alice.create(t, "group:ops", "org:acme")
		alice.create(t, "group:sre", "org:acme")
		alice.setRole(t, "group:ops", bob.ref, "member")
		alice.setRole(t, "group:eng", "group:ops", "member")

		// ops is a member of eng, so eng cannot become a member of ops.
		r := alice.do(t, http.MethodPost, "/v1/grants", map[string]any{
			"resource": "group:ops", "subject": "group:eng", "role": "member", "duration": "1h", "reason": "x",
		})
		wantProblem(t, r, http.StatusConflict)
		if n := len(alice.listGrants(t, "resource=group:ops")); n != 0 {
			t.Errorf("%d grants on group:ops after the rejected one, want 0", n)
		}

		// Scheduled before the loop exists, the grant is revoked when it
		// would start.
		notBefore := time.Now().Add(1500 * time.Millisecond)
		scheduled := alice.grant(t, map[string]any{
			"resource": "group:sre", "subject": "group:eng", "role": "member",
			"not_before": notBefore.Format(time.RFC3339Nano), "duration": "1h",
		})
		alice.setRole(t, "group:eng", "group:sre", "member")
		grWaitState(t, alice, scheduled.ID, "revoked", 5*time.Second)
		if !alice.allowed(t, bob.ref, "view", "group:eng") {
			t.Error("bob cannot view group:eng, of which his group is a member")
		}
		if alice.allowed(t, bob.ref, "view", "group:sre") {
			t.Error("bob views group:sre through the revoked grant")
		}
	})
}

func TestGrantNeedsManage(t *testing.T) {
	grForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := grTenant(t, g)
		alice.setRole(t, "workspace:w", bob.ref, "viewer")
		carol := g.user(t, "carol")
		body := map[string]any{"resource": "workspace:w", "subject": carol.ref, "role": "viewer", "duration": "1h", "reason": "x"}

		wantProblem(t, bob.do(t, http.MethodPost, "/v1/grants", body), http.StatusForbidden)
		wantProblem(t, carol.do(t, http.MethodPost, "/v1/grants", body), http.StatusNotFound)
		if got := alice.listGrants(t, "resource=workspace:w"); len(got) != 0 {
			t.Errorf("%d grants after rejected requests, want 0", len(got))
		}

		created := alice.grant(t, body)
		if got := carol.listGrants(t, ""); len(got) != 1 || got[0].ID != created.ID {
			t.Errorf("carol lists %v, want her own grant", got)
		}
		if got := bob.listGrants(t, ""); len(got) != 0 {
			t.Errorf("bob lists %v, want nothing", got)
		}
		wantProblem(t, bob.do(t, http.MethodGet, "/v1/grants/"+created.ID, nil), http.StatusNotFound)
		wantProblem(t, bob.do(t, http.MethodGet, "/v1/grants?resource=workspace:w", nil), http.StatusForbidden)
		wantProblem(t, carol.do(t, http.MethodDelete, "/v1/grants/"+created.ID, nil), http.StatusForbidden)
	})
}

func TestGrantBreakGlass(t *testing.T) {
	grForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := grTenant(t, g)
		oncall := g.user(t, grOncall)
		auditor := g.user(t, grAuditor)
		body := func(subject, duration string) map[string]any {
			return map[string]any{"resource": "org:acme", "subject": subject, "role": "admin", "duration": duration, "reason": "outage", "break_glass": true}
		}

		wantProblem(t, oncall.do(t, http.MethodPost, "/v1/grants", body(oncall.ref, "61m")), http.StatusBadRequest)
		wantProblem(t, oncall.do(t, http.MethodPost, "/v1/grants", body(bob.ref, "30m")), http.StatusBadRequest)
		wantProblem(t, bob.do(t, http.MethodPost, "/v1/grants", body(bob.ref, "30m")), http.StatusForbidden)
		wantProblem(t, oncall.do(t, http.MethodPost, "/v1/grants", map[string]any{
			"resource": "org:missing", "subject": oncall.ref, "role": "admin", "duration": "30m", "reason": "outage", "break_glass": true,
		}), http.StatusNotFound)
		if oncall.allowed(t, "", "manage", "org:acme") {
			t.Fatal("oncall manages org:acme before any break-glass grant")
		}

		created := oncall.grant(t, body(oncall.ref, "1h"))
		if !created.BreakGlass {
			t.Error("break-glass grant is not flagged break_glass")
		}
		if !oncall.allowed(t, "", "manage", "org:acme") {
			t.Error("oncall cannot manage org:acme during the break-glass grant")
		}
		for _, c := range []*caller{auditor, oncall} {
			if got := c.listGrants(t, "break_glass=true"); len(got) != 1 || got[0].ID != created.ID {
				t.Errorf("%s lists %v with break_glass=true, want the break-glass grant", c.ref, got)
			}
		}
		if got := bob.listGrants(t, "break_glass=true"); len(got) != 0 {
			t.Errorf("bob lists %v with break_glass=true, want nothing", got)
		}
		if got := alice.listGrants(t, "resource=org:acme&break_glass=true"); len(got) != 1 {
			t.Errorf("the owner of org:acme lists %d break-glass grants on it, want 1", len(got))
		}
		events := auditor.auditEvents(t, "action=grant.create")
		if len(events) != 1 || !events[0].BreakGlass || events[0].Org != "org:acme" {
			t.Errorf("grant.create events %+v, want one with break_glass in org:acme", events)
		}
	})
}

func TestGrantRejectsBadInput(t *testing.T) {
	grForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := grTenant(t, g)
		past := time.Now().Add(-time.Minute).Format(time.RFC3339)
		soon := time.Now().Add(time.Hour).Format(time.RFC3339)
		later := time.Now().Add(2 * time.Hour).Format(time.RFC3339)
		base := func(edit func(map[string]any)) map[string]any {
			b := map[string]any{"resource": "workspace:w", "subject": bob.ref, "role": "viewer", "duration": "1h", "reason": "x"}
			edit(b)
			return b
		}
		cases := []struct {
			name string
			body map[string]any
		}{
			{"expires_at in the past", base(func(b map[string]any) { delete(b, "duration"); b["expires_at"] = past })},
			{"no end", base(func(b map[string]any) { delete(b, "duration") })},
			{"both ends", base(func(b map[string]any) { b["expires_at"] = soon })},
			{"not_before after end", base(func(b map[string]any) { delete(b, "duration"); b["expires_at"] = soon; b["not_before"] = later })},
			{"unknown role", base(func(b map[string]any) { b["role"] = "superuser" })},
			{"role of another type", base(func(b map[string]any) { b["role"] = "owner" })},
			{"org owner", base(func(b map[string]any) { b["resource"] = "org:acme"; b["role"] = "owner" })},
			{"missing reason", base(func(b map[string]any) { delete(b, "reason") })},
			{"oversized reason", base(func(b map[string]any) { b["reason"] = strings.Repeat("x", 1025) })},
			{"control character in reason", base(func(b map[string]any) { b["reason"] = "a\nb" })},
			{"longer than the maximum", base(func(b map[string]any) { b["duration"] = "721h" })},
			{"negative duration", base(func(b map[string]any) { b["duration"] = "-1h" })},
			{"malformed duration", base(func(b map[string]any) { b["duration"] = "soon" })},
			{"malformed expires_at", base(func(b map[string]any) { delete(b, "duration"); b["expires_at"] = "tomorrow" })},
			{"resource is a user", base(func(b map[string]any) { b["resource"] = bob.ref })},
			{"unknown field", base(func(b map[string]any) { b["role_name"] = "viewer" })},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				wantProblem(t, alice.do(t, http.MethodPost, "/v1/grants", tc.body), http.StatusBadRequest)
			})
		}
		if got := alice.listGrants(t, "resource=workspace:w"); len(got) != 0 {
			t.Errorf("%d grants after rejected requests, want 0", len(got))
		}
		if alice.allowed(t, bob.ref, "view", "workspace:w") {
			t.Error("bob views workspace:w after rejected requests")
		}
		if n := len(g.user(t, grAuditor).auditEvents(t, "action=grant.create")); n != 0 {
			t.Errorf("%d grant.create events after rejected requests, want 0", n)
		}
		wantProblem(t, alice.do(t, http.MethodGet, "/v1/grants?state=gone", nil), http.StatusBadRequest)
		wantProblem(t, alice.do(t, http.MethodGet, "/v1/grants?page_token=zz", nil), http.StatusBadRequest)
	})
}

func TestGrantMakesTokensStale(t *testing.T) {
	grForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, _ := grTenant(t, g)
		bob := g.exUser(t, "bob")
		notBefore := time.Now().Add(1500 * time.Millisecond)
		alice.grant(t, map[string]any{
			"resource": "workspace:w", "subject": bob.ref, "role": "viewer",
			"not_before": notBefore.Format(time.RFC3339Nano), "duration": "2s",
		})
		exPollAccepted(t, g, bob.token, time.Second)

		// The start makes the token stale within a tick.
		exPollRejected(t, g, bob.token, 4*time.Second)
		if time.Now().Before(notBefore) {
			t.Error("bob's token went stale before the grant started")
		}
		// The first raise comes before the relationships are written, so a
		// token exchanged at once may still precede them; within moments,
		// a fresh token views.
		deadline := time.Now().Add(2 * time.Second)
		for {
			bob.reexchange(t)
			// The second raise can also make this fresh token stale.
			r := bob.do(t, http.MethodPost, "/v1/check", checkBody("", "view", "workspace:w"))
			if r.status == http.StatusOK && strings.Contains(string(r.body), `"allowed":true`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("bob's new token cannot view workspace:w during the grant")
			}
			time.Sleep(20 * time.Millisecond)
		}

		// So does the end. The scheduler ends the grant up to
		// expiry.MaxLead before expires_at, raising bob's version before and after it
		// deletes the relationships, so a token exchanged between the two
		// raises may still view until expires_at; after it, none does.
		exPollRejected(t, g, bob.token, 5*time.Second)
		time.Sleep(time.Until(notBefore.Add(2 * time.Second)))
		for attempt := 0; ; attempt++ {
			bob.reexchange(t)
			r := bob.do(t, http.MethodPost, "/v1/check", checkBody("", "view", "workspace:w"))
			if r.status == http.StatusUnauthorized && attempt < 3 {
				continue // a late second raise made the fresh token stale
			}
			wantStatus(t, r, http.StatusOK)
			if strings.Contains(string(r.body), `"allowed":true`) {
				t.Error("bob's new token views workspace:w after the grant ended")
			}
			break
		}
	})
}

// A grant scheduled on a resource that is deleted and then created again,
// by anyone in any org, never reaches the new resource.
func TestGrantNeverReachesRecreatedResource(t *testing.T) {
	grForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		mallory, alice := g.user(t, "mallory"), g.user(t, "alice")
		mallory.create(t, "org:victimco", "")
		created := mallory.grant(t, map[string]any{
			"resource": "org:victimco", "subject": mallory.ref, "role": "admin",
			"not_before": time.Now().Add(1500 * time.Millisecond).Format(time.RFC3339Nano), "duration": "1h",
		})
		if created.State != "scheduled" {
			t.Fatalf("state %q, want scheduled", created.State)
		}
		wantStatus(t, mallory.do(t, http.MethodDelete, "/v1/resources/org/victimco", nil), http.StatusNoContent)
		alice.create(t, "org:victimco", "")

		time.Sleep(3 * time.Second)
		if mallory.allowed(t, "", "view", "org:victimco") {
			t.Fatal("a grant made on the deleted org gives access to the new org of the same id")
		}
		grWaitState(t, mallory, created.ID, "revoked", 3*time.Second)
	})
}
