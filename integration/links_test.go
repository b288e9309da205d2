package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/server"
)

// linkStart starts a dev-mode server, on PostgreSQL when dbURL is set and
// in memory otherwise, and stops it when the test ends.
func linkStart(t *testing.T, dbURL string) *gatehouse {
	t.Helper()
	return runGatehouse(t, server.Config{}, dbURL)
}

// linkForEachDatastore runs test on a fresh memory server and on a fresh
// PostgreSQL server.
func linkForEachDatastore(t *testing.T, test func(t *testing.T, g *gatehouse)) {
	t.Run("memory", func(t *testing.T) { test(t, linkStart(t, "")) })
	t.Run("postgres", func(t *testing.T) { test(t, linkStart(t, pgtest.NewDatabase(t))) })
}

// linkFixture is org:acme with workspace:w1, project:p1 and documents d1
// and d2, owned by alice. bob is an org member, vic views w1, ed edits
// d1, zed belongs to no org, and billing is acme's app.
type linkFixture struct {
	g                        *gatehouse
	alice, bob, vic, ed, zed *caller
	billing                  *caller
}

func newLinkFixture(t *testing.T, g *gatehouse) *linkFixture {
	t.Helper()
	f := &linkFixture{
		g: g, alice: g.user(t, "alice"), bob: g.user(t, "bob"), vic: g.user(t, "vic"),
		ed: g.user(t, "ed"), zed: g.user(t, "zed"), billing: g.service(t, "billing"),
	}
	for _, n := range []struct{ resource, parent string }{
		{"org:acme", ""},
		{"workspace:w1", "org:acme"},
		{"project:p1", "workspace:w1"},
		{"document:d1", "project:p1"},
		{"document:d2", "project:p1"},
	} {
		f.alice.create(t, n.resource, n.parent)
	}
	f.alice.setRole(t, "org:acme", f.bob.ref, "member")
	f.alice.setRole(t, "org:acme", f.billing.ref, "app")
	f.alice.setRole(t, "workspace:w1", f.vic.ref, "viewer")
	f.alice.setRole(t, "document:d1", f.ed.ref, "editor")
	return f
}

// linkOut is the body of POST /v1/links and of each entry of GET /v1/links.
type linkOut struct {
	ID        string     `json:"id"`
	Resource  string     `json:"resource"`
	Role      string     `json:"role"`
	Audience  string     `json:"audience"`
	ExpiresAt *time.Time `json:"expires_at"`
	MaxUses   *int       `json:"max_uses"`
	Uses      int        `json:"uses"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	State     string     `json:"state"`
	Token     string     `json:"token"`
}

// createLink makes a link and fails unless Gatehouse responds 201.
func (c *caller) createLink(t *testing.T, body map[string]any) linkOut {
	t.Helper()
	r := c.do(t, http.MethodPost, "/v1/links", body)
	wantStatus(t, r, http.StatusCreated)
	var out linkOut
	decodeJSON(t, r, &out)
	return out
}

// listLinks returns every link on resource, following page tokens.
func (c *caller) listLinks(t *testing.T, resource string) ([]linkOut, []byte) {
	t.Helper()
	var all []linkOut
	var raw []byte
	token := ""
	for range 100 {
		path := "/v1/links?page_size=2&resource=" + url.QueryEscape(resource)
		if token != "" {
			path += "&page_token=" + url.QueryEscape(token)
		}
		r := c.do(t, http.MethodGet, path, nil)
		wantStatus(t, r, http.StatusOK)
		raw = append(raw, r.body...)
		var page struct {
			Links         []linkOut `json:"links"`
			NextPageToken string    `json:"next_page_token"`
		}
		decodeJSON(t, r, &page)
		all = append(all, page.Links...)
		if page.NextPageToken == "" {
			return all, raw
		}
		token = page.NextPageToken
	}
	t.Fatalf("list links of %s: more than 100 pages", resource)
	return nil, nil
}

// redeem redeems token and returns the response.
func (c *caller) redeem(t *testing.T, token string) response {
	t.Helper()
	return c.do(t, http.MethodPost, "/v1/links/redeem", map[string]string{"token": token})
}

// anonAllowed checks permission on resource as the holder of a link token,
// and fails unless Gatehouse responds 200.
func (c *caller) anonAllowed(t *testing.T, token, permission, resource string) bool {
	t.Helper()
	r := c.do(t, http.MethodPost, "/v1/check", map[string]string{"link_token": token, "permission": permission, "resource": resource})
	wantStatus(t, r, http.StatusOK)
	var out struct {
		Allowed          bool   `json:"allowed"`
		ConsistencyToken string `json:"consistency_token"`
	}
	decodeJSON(t, r, &out)
	return out.Allowed
}

// linkSingle returns the one link with id among the links on resource.
func (c *caller) linkSingle(t *testing.T, resource, id string) linkOut {
	t.Helper()
	all, _ := c.listLinks(t, resource)
	for _, l := range all {
		if l.ID == id {
			return l
		}
	}
	t.Fatalf("link %s is not listed on %s", id, resource)
	return linkOut{}
}

// changeOneChar returns token with its last character replaced.
func changeOneChar(token string) string {
	last := token[len(token)-1]
	replacement := byte('A')
	if last == 'A' {
		replacement = 'B'
	}
	return token[:len(token)-1] + string(replacement)
}

// authVersion returns the caller's own auth version.
func (c *caller) authVersion(t *testing.T) int64 {
	t.Helper()
	r := c.do(t, http.MethodGet, "/v1/principals/"+url.PathEscape(c.ref)+"/auth-version", nil)
	wantStatus(t, r, http.StatusOK)
	var out struct {
		Principal string `json:"principal"`
		Version   int64  `json:"version"`
	}
	decodeJSON(t, r, &out)
	return out.Version
}

func TestLinkCreateRedeemList(t *testing.T) {
	linkForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		created := f.alice.createLink(t, map[string]any{
			"resource": "document:d1", "role": "viewer", "audience": "anyone", "reason": "share with a contractor",
		})
		if !strings.HasPrefix(created.Token, "ghl_") || len(created.Token) < len("ghl_")+22 {
			t.Fatalf("token %q lacks the ghl_ prefix or 128 bits", created.Token)
		}
		if created.Resource != "document:d1" || created.Role != "viewer" || created.Audience != "anyone" {
			t.Errorf("created %+v, want viewer link for anyone on document:d1", created)
		}
		if created.State != "active" || created.Uses != 0 || created.MaxUses != nil || created.ExpiresAt != nil {
			t.Errorf("created %+v, want active, unused, unlimited, no expiry", created)
		}
		if created.CreatedBy != f.alice.ref {
			t.Errorf("created_by %q, want %q", created.CreatedBy, f.alice.ref)
		}

		if f.zed.allowed(t, "", "view", "document:d1") {
			t.Fatal("zed views document:d1 before redeeming")
		}
		before := f.zed.authVersion(t)
		r := f.zed.redeem(t, created.Token)
		wantStatus(t, r, http.StatusOK)
		var got struct {
			Resource  string     `json:"resource"`
			Role      string     `json:"role"`
			ExpiresAt *time.Time `json:"expires_at"`
		}
		decodeJSON(t, r, &got)
		if got.Resource != "document:d1" || got.Role != "viewer" {
			t.Errorf("redeemed %+v, want viewer on document:d1", got)
		}
		if after := f.zed.authVersion(t); after <= before {
			t.Errorf("auth version %d after redeeming, want more than %d", after, before)
		}
		if !f.zed.allowed(t, "", "view", "document:d1") {
			t.Error("zed cannot view document:d1 after redeeming")
		}
		if f.zed.allowed(t, "", "edit", "document:d1") {
			t.Error("zed can edit document:d1 through a viewer link")
		}
		if f.zed.allowed(t, "", "view", "document:d2") {
			t.Error("zed views document:d2 through a link on document:d1")
		}

		wantStatus(t, f.zed.redeem(t, created.Token), http.StatusOK)
		listed, raw := f.alice.listLinks(t, "document:d1")
		if len(listed) != 1 {
			t.Fatalf("listed %d links, want 1", len(listed))
		}
		if listed[0].Uses != 1 {
			t.Errorf("uses %d after one user redeemed twice, want 1", listed[0].Uses)
		}
		if listed[0].Token != "" || bytes.Contains(raw, []byte(created.Token)) {
			t.Error("GET /v1/links shows the token")
		}

		events := f.alice.auditEvents(t, "org=org:acme")
		actions := map[string]int{}
		for _, e := range events {
			actions[e.Action]++
		}
		if actions["link.create"] != 1 || actions["link.redeem"] != 1 {
			t.Errorf("audit actions %v, want 1 link.create and 1 link.redeem, since redeeming again changed nothing", actions)
		}
		encoded, err := json.Marshal(events)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(encoded, []byte(created.Token)) || bytes.Contains(encoded, []byte(created.Token[4:])) {
			t.Error("the audit log contains the token")
		}
	})
}

func TestLinkCreateNeedsShareAndRole(t *testing.T) {
	g := linkStart(t, "")
	f := newLinkFixture(t, g)

	for _, tc := range []struct {
		name   string
		caller *caller
		role   string
		want   int
	}{
		{"viewer makes editor link", f.vic, "editor", http.StatusForbidden},
		{"viewer makes viewer link", f.vic, "viewer", http.StatusForbidden},
		{"outsider makes viewer link", f.zed, "viewer", http.StatusNotFound},
		{"editor makes editor link", f.ed, "editor", http.StatusCreated},
		{"editor makes viewer link", f.ed, "viewer", http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.caller.do(t, http.MethodPost, "/v1/links", map[string]any{"resource": "document:d1", "role": tc.role, "audience": "anyone"})
			if tc.want == http.StatusCreated {
				wantStatus(t, r, tc.want)
				return
			}
			wantProblem(t, r, tc.want)
		})
	}
}

func TestLinkOrgAudience(t *testing.T) {
	linkForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		l := f.alice.createLink(t, map[string]any{"resource": "project:p1", "role": "editor", "audience": "org"})

		wantProblem(t, f.zed.redeem(t, l.Token), http.StatusNotFound)
		if f.zed.allowed(t, "", "view", "document:d1") {
			t.Error("outsider gained access through an org link")
		}
		if f.billing.anonAllowed(t, l.Token, "view", "project:p1") {
			t.Error("anonymous check allowed through an org link")
		}

		wantStatus(t, f.bob.redeem(t, l.Token), http.StatusOK)
		if !f.bob.allowed(t, "", "edit", "document:d1") {
			t.Error("org member cannot edit a document of the project after redeeming")
		}
	})
}

func TestLinkAnonymousCheck(t *testing.T) {
	g := linkStart(t, "")
	f := newLinkFixture(t, g)
	l := f.alice.createLink(t, map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone"})

	for _, tc := range []struct {
		name, token, permission, resource string
		want                              bool
	}{
		{"view on the resource", l.Token, "view", "document:d1", true},
		{"edit on the resource", l.Token, "edit", "document:d1", false},
		{"view on a sibling", l.Token, "view", "document:d2", false},
		{"view on the parent", l.Token, "view", "project:p1", false},
		{"one character changed", changeOneChar(l.Token), "view", "document:d1", false},
		{"not a link token", "hello", "view", "document:d1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := f.billing.anonAllowed(t, tc.token, tc.permission, tc.resource); got != tc.want {
				t.Errorf("allowed %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("needs a bearer token", func(t *testing.T) {
		r := g.send(t, request{Method: http.MethodPost, Path: "/v1/check", Body: map[string]string{"link_token": l.Token, "permission": "view", "resource": "document:d1"}})
		wantProblem(t, r, http.StatusUnauthorized)
	})
	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"subject and link token", map[string]any{"subject": f.bob.ref, "link_token": l.Token, "permission": "view", "resource": "document:d1"}},
		{"empty link token", map[string]any{"link_token": "", "permission": "view", "resource": "document:d1"}},
		{"missing permission", map[string]any{"link_token": l.Token, "resource": "document:d1"}},
		{"bad permission", map[string]any{"link_token": l.Token, "permission": "own", "resource": "document:d1"}},
		{"bad resource", map[string]any{"link_token": l.Token, "permission": "view", "resource": "link:x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, f.billing.do(t, http.MethodPost, "/v1/check", tc.body), http.StatusBadRequest)
		})
	}

	t.Run("bulk item with a link token", func(t *testing.T) {
		r := f.billing.do(t, http.MethodPost, "/v1/check/bulk", map[string]any{"checks": []map[string]any{
			{"link_token": l.Token, "permission": "view", "resource": "document:d1"},
			{"subject": f.bob.ref, "permission": "view", "resource": "document:d1"},
		}})
		if r.status != http.StatusOK {
			t.Fatalf("got %s, want 200 with a per-item error", r)
		}
		var body struct {
			Results []struct {
				Allowed bool `json:"allowed"`
				Error   *struct {
					Status int    `json:"status"`
					Detail string `json:"detail"`
				} `json:"error"`
			} `json:"results"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatalf("decode %s: %v", r, err)
		}
		if len(body.Results) != 2 {
			t.Fatalf("got %d results, want 2: %s", len(body.Results), r)
		}
		first := body.Results[0]
		if first.Allowed {
			t.Error("the link token item was allowed, want a deny")
		}
		if first.Error == nil {
			t.Fatalf("the link token item has no error: %s", r)
		}
		if first.Error.Status != http.StatusBadRequest {
			t.Errorf("link token item status = %d, want 400", first.Error.Status)
		}
		if !strings.Contains(first.Error.Detail, "POST /v1/check") {
			t.Errorf("link token item detail = %q, want a pointer to POST /v1/check", first.Error.Detail)
		}
		if body.Results[1].Error != nil {
			t.Errorf("the other item failed too: %+v", body.Results[1].Error)
		}
	})
}

// linkPost sends a JSON POST from a goroutine, where t.Fatal is not
// allowed, and returns the status code.
func linkPost(g *gatehouse, token, path string, body any) (int, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequest(http.MethodPost, g.url+path, bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestLinkMaxUsesConcurrent(t *testing.T) {
	linkForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		l := f.alice.createLink(t, map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone", "max_uses": 5})

		const users = 20
		callers := make([]*caller, users)
		for i := range callers {
			callers[i] = g.user(t, fmt.Sprintf("guest%02d", i))
		}
		statuses := make([]int, users)
		errs := make([]error, users)
		var wg sync.WaitGroup
		for i, c := range callers {
			wg.Go(func() {
				statuses[i], errs[i] = linkPost(g, c.token, "/v1/links/redeem", map[string]string{"token": l.Token})
			})
		}
		wg.Wait()

		succeeded := 0
		var winner *caller
		for i, status := range statuses {
			if errs[i] != nil {
				t.Fatalf("redeem by %s: %v", callers[i].ref, errs[i])
			}
			switch status {
			case http.StatusOK:
				succeeded++
				winner = callers[i]
			case http.StatusNotFound:
			default:
				t.Errorf("redeem by %s: status %d, want 200 or 404", callers[i].ref, status)
			}
		}
		if succeeded != 5 {
			t.Fatalf("%d of %d concurrent redemptions succeeded, want 5", succeeded, users)
		}
		granted := 0
		for _, c := range callers {
			if c.allowed(t, "", "view", "document:d1") {
				granted++
			}
		}
		if granted != 5 {
			t.Errorf("%d users view document:d1, want 5", granted)
		}

		listed := f.alice.linkSingle(t, "document:d1", l.ID)
		if listed.Uses != 5 || listed.State != "exhausted" {
			t.Errorf("link uses %d, state %q; want 5, exhausted", listed.Uses, listed.State)
		}
		wantStatus(t, winner.redeem(t, l.Token), http.StatusOK)
		if !f.billing.anonAllowed(t, l.Token, "view", "document:d1") {
			t.Error("anonymous access ended when max_uses was reached")
		}
	})
}

func TestLinkRevoke(t *testing.T) {
	linkForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		l := f.ed.createLink(t, map[string]any{"resource": "document:d1", "role": "editor", "audience": "anyone"})
		wantStatus(t, f.zed.redeem(t, l.Token), http.StatusOK)
		wantStatus(t, f.bob.redeem(t, l.Token), http.StatusOK)
		if !f.zed.allowed(t, "", "edit", "document:d1") || !f.bob.allowed(t, "", "edit", "document:d1") {
			t.Fatal("holders cannot edit before the revocation")
		}

		// zed holds the editor role through the link, and editors may
		// share, so zed could revoke; vic only views, and eve is an
		// outsider.
		wantProblem(t, f.vic.do(t, http.MethodDelete, "/v1/links/"+l.ID, nil), http.StatusForbidden)
		wantProblem(t, g.user(t, "eve").do(t, http.MethodDelete, "/v1/links/"+l.ID, nil), http.StatusNotFound)
		wantProblem(t, f.alice.do(t, http.MethodDelete, "/v1/links/00000000000000000000000000000000", nil), http.StatusNotFound)

		versions := map[*caller]int64{f.zed: f.zed.authVersion(t), f.bob: f.bob.authVersion(t)}
		wantStatus(t, f.alice.do(t, http.MethodDelete, "/v1/links/"+l.ID, nil), http.StatusNoContent)
		for c, before := range versions {
			if after := c.authVersion(t); after <= before {
				t.Errorf("%s: auth version %d after the revocation, want more than %d", c.ref, after, before)
			}
		}
		for _, c := range []*caller{f.zed, f.bob} {
			if c.allowed(t, "", "view", "document:d1") {
				t.Errorf("%s views document:d1 after the revocation", c.ref)
			}
		}
		if f.billing.anonAllowed(t, l.Token, "view", "document:d1") {
			t.Error("anonymous check allowed after the revocation")
		}
		wantProblem(t, f.vic.redeem(t, l.Token), http.StatusNotFound)
		wantStatus(t, f.ed.do(t, http.MethodDelete, "/v1/links/"+l.ID, nil), http.StatusNoContent)
		if got := f.alice.linkSingle(t, "document:d1", l.ID).State; got != "revoked" {
			t.Errorf("state %q after the revocation, want revoked", got)
		}

		revokes := 0
		for _, e := range f.alice.auditEvents(t, "org=org:acme") {
			if e.Action == "link.revoke" {
				revokes++
			}
		}
		if revokes != 1 {
			t.Errorf("%d link.revoke events, want 1", revokes)
		}
	})
}

func TestLinkExpiry(t *testing.T) {
	linkForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		end := time.Now().Add(3 * time.Second).UTC()
		l := f.alice.createLink(t, map[string]any{
			"resource": "document:d1", "role": "viewer", "audience": "anyone", "expires_at": end.Format(time.RFC3339Nano),
		})
		if l.ExpiresAt == nil || !l.ExpiresAt.Equal(end.Truncate(time.Microsecond)) {
			t.Fatalf("expires_at %v, want %v", l.ExpiresAt, end)
		}
		wantStatus(t, f.zed.redeem(t, l.Token), http.StatusOK)
		if !f.zed.allowed(t, "", "view", "document:d1") {
			t.Fatal("holder cannot view before the link expires")
		}

		time.Sleep(time.Until(end))
		if f.billing.anonAllowed(t, l.Token, "view", "document:d1") {
			t.Error("anonymous check allowed after the link expired")
		}
		wantProblem(t, f.bob.redeem(t, l.Token), http.StatusNotFound)

		// The scheduler ends the link within about a second; see expiryTick.
		deadline := time.Now().Add(3 * time.Second)
		for f.zed.allowed(t, "", "view", "document:d1") {
			if time.Now().After(deadline) {
				t.Fatal("holder still views document:d1 3s after the link expired")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := f.alice.linkSingle(t, "document:d1", l.ID).State; got != "expired" {
			t.Errorf("state %q after the sweep, want expired", got)
		}
	})
}

func TestLinkDeletedResource(t *testing.T) {
	linkForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		l := f.alice.createLink(t, map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone"})
		wantStatus(t, f.zed.redeem(t, l.Token), http.StatusOK)

		wantStatus(t, f.alice.do(t, http.MethodDelete, resourcePath("document:d1"), nil), http.StatusNoContent)
		f.alice.create(t, "document:d1", "project:p1")
		if err := g.srv.Links().Sweep(context.Background()); err != nil {
			t.Fatalf("sweep: %v", err)
		}

		if f.zed.allowed(t, "", "view", "document:d1") {
			t.Error("holder views the re-created document")
		}
		if f.billing.anonAllowed(t, l.Token, "view", "document:d1") {
			t.Error("anonymous check allowed on the re-created document")
		}
		wantProblem(t, f.vic.redeem(t, changeOneChar(l.Token)), http.StatusNotFound)
		wantProblem(t, f.zed.redeem(t, l.Token), http.StatusNotFound)
		if f.zed.allowed(t, "", "view", "document:d1") {
			t.Error("redeeming again revived the link on the re-created document")
		}
		if got := f.alice.linkSingle(t, "document:d1", l.ID).State; got != "revoked" {
			t.Errorf("state %q of a link on a deleted resource, want revoked", got)
		}
	})
}

func TestLinkTokenOneCharChanged(t *testing.T) {
	g := linkStart(t, "")
	f := newLinkFixture(t, g)
	l := f.alice.createLink(t, map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone"})

	wantProblem(t, f.zed.redeem(t, changeOneChar(l.Token)), http.StatusNotFound)
	if f.zed.allowed(t, "", "view", "document:d1") {
		t.Error("a changed token gave access")
	}
	if got := f.alice.linkSingle(t, "document:d1", l.ID).Uses; got != 0 {
		t.Errorf("uses %d after a changed token, want 0", got)
	}
}

func TestLinkBadInput(t *testing.T) {
	g := linkStart(t, "")
	f := newLinkFixture(t, g)
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)

	for _, tc := range []struct {
		name string
		body any
	}{
		{"missing resource", map[string]any{"role": "viewer", "audience": "anyone"}},
		{"org resource", map[string]any{"resource": "org:acme", "role": "viewer", "audience": "anyone"}},
		{"group resource", map[string]any{"resource": "group:g", "role": "viewer", "audience": "anyone"}},
		{"owner role", map[string]any{"resource": "document:d1", "role": "owner", "audience": "anyone"}},
		{"missing role", map[string]any{"resource": "document:d1", "audience": "anyone"}},
		{"unknown audience", map[string]any{"resource": "document:d1", "role": "viewer", "audience": "everyone"}},
		{"past expiry", map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone", "expires_at": past}},
		{"expiry not RFC 3339", map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone", "expires_at": "tomorrow"}},
		{"zero max uses", map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone", "max_uses": 0}},
		{"negative max uses", map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone", "max_uses": -1}},
		{"too many max uses", map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone", "max_uses": 1000001}},
		{"fractional max uses", map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone", "max_uses": 1.5}},
		{"unknown field", map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone", "token": "ghl_x"}},
		{"control character in reason", map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone", "reason": "a\u0007b"}},
		{"not JSON", "{"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, f.alice.do(t, http.MethodPost, "/v1/links", tc.body), http.StatusBadRequest)
		})
	}
	for _, tc := range []struct {
		name string
		body any
	}{
		{"redeem without token", map[string]any{}},
		{"redeem with a number", map[string]any{"token": 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, f.zed.do(t, http.MethodPost, "/v1/links/redeem", tc.body), http.StatusBadRequest)
		})
	}
	wantProblem(t, f.alice.do(t, http.MethodGet, "/v1/links?resource=document:d1&page_token=zzz", nil), http.StatusBadRequest)
	wantProblem(t, f.alice.do(t, http.MethodGet, "/v1/links?resource=document:d1&page_size=1001", nil), http.StatusBadRequest)

	if listed, _ := f.alice.listLinks(t, "document:d1"); len(listed) != 0 {
		t.Errorf("bad requests created %d links", len(listed))
	}
	for _, e := range f.alice.auditEvents(t, "org=org:acme") {
		if strings.HasPrefix(e.Action, "link.") {
			t.Errorf("bad request left audit event %s", e.Action)
		}
	}
}

func TestLinkUnknownTokensRateLimited(t *testing.T) {
	g := linkStart(t, "")
	f := newLinkFixture(t, g)
	l := f.alice.createLink(t, map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone"})

	for i := range 10 {
		wantProblem(t, f.zed.redeem(t, fmt.Sprintf("ghl_guess%d", i)), http.StatusNotFound)
	}
	limited := wantProblem(t, f.zed.redeem(t, "ghl_guess10"), http.StatusTooManyRequests)
	if limited.Detail == "" {
		t.Error("429 has no detail")
	}
	r := f.bob.redeem(t, l.Token)
	wantProblem(t, r, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	r = f.billing.do(t, http.MethodPost, "/v1/check", map[string]string{"link_token": l.Token, "permission": "view", "resource": "document:d1"})
	wantProblem(t, r, http.StatusTooManyRequests)

	metrics := g.send(t, request{Method: http.MethodGet, Path: "/metrics"})
	if !bytes.Contains(metrics.body, []byte("gatehouse_link_token_misses_total 10")) {
		t.Error("metrics do not count 10 unknown link tokens")
	}
}
