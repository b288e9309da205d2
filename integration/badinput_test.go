package integration

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// state is what a client can observe of a server: every lookup and member
// list of a fixed set of principals and resources, by name.
type state map[string][]string

// observe reads the state that the bad requests must leave unchanged.
func observe(t *testing.T, callers []*caller, owners map[string]*caller) state {
	t.Helper()
	s := state{}
	for _, c := range callers {
		for _, typ := range resourceTypes {
			s["lookup "+c.ref+" "+typ] = c.lookupResources(t, "", "view", typ)
		}
	}
	for resource, owner := range owners {
		s["members "+resource] = owner.members(t, resource)
	}
	return s
}

// diff returns the keys whose values differ between two states.
func (s state) diff(other state) []string {
	var keys []string
	for k, v := range s {
		if !slices.Equal(v, other[k]) {
			keys = append(keys, fmt.Sprintf("%s: %v, then %v", k, v, other[k]))
		}
	}
	for k, v := range other {
		if _, ok := s[k]; !ok {
			keys = append(keys, fmt.Sprintf("%s: absent, then %v", k, v))
		}
	}
	slices.Sort(keys)
	return keys
}

func TestBadRequests(t *testing.T) {
	g := startGatehouse(t)
	alice, bob, carol, billing := g.user(t, "alice"), g.user(t, "bob"), g.user(t, "carol"), g.service(t, "billing")

	alice.create(t, "org:acme", "")
	alice.create(t, "workspace:w1", "org:acme")
	alice.create(t, "project:p1", "workspace:w1")
	alice.create(t, "document:d1", "project:p1")
	alice.create(t, "group:eng", "org:acme")
	alice.setRole(t, "document:d1", bob.ref, "viewer")
	alice.setRole(t, "org:acme", billing.ref, "app")
	carol.create(t, "org:globex", "")
	carol.create(t, "workspace:gw", "org:globex")

	callers := []*caller{alice, bob, carol, billing}
	owners := map[string]*caller{
		"org:acme": alice, "workspace:w1": alice, "project:p1": alice, "document:d1": alice,
		"group:eng": alice, "org:globex": carol, "workspace:gw": carol,
	}
	// Each case compares with the state after the previous one, so that a
	// request that wrongly wrote fails only its own case.
	current := observe(t, callers, owners)

	long := strings.Repeat("a", 129)
	huge := strings.Repeat("x", 70<<10)
	checks := func(n int) []map[string]string {
		out := make([]map[string]string, n)
		for i := range out {
			out[i] = checkBody("", "view", "document:d1")
		}
		return out
	}
	d1Bob := memberPath("document:d1", bob.ref)
	acmeBob := memberPath("org:acme", bob.ref)

	cases := []struct {
		name            string
		by              *caller
		method, path    string
		body            any
		contentType     string
		omitContentType bool
		want            int
	}{
		// Body decoding.
		{name: "truncated JSON", method: "POST", path: "/v1/resources", body: `{"resource":"org:new1"`, want: 400},
		{name: "malformed JSON", method: "POST", path: "/v1/resources", body: `{"resource" "org:new1"}`, want: 400},
		{name: "second object", method: "POST", path: "/v1/resources", body: `{"resource":"org:new1"} {"resource":"org:new2"}`, want: 400},
		{name: "trailing garbage", method: "POST", path: "/v1/resources", body: `{"resource":"org:new1"}x`, want: 400},
		{name: "unknown field", method: "POST", path: "/v1/resources", body: `{"resource":"org:new1","color":"red"}`, want: 400},
		{name: "field name case", method: "POST", path: "/v1/resources", body: `{"RESOURCE":"org:new1"}`, want: 400},
		{name: "duplicate field", method: "POST", path: "/v1/resources", body: `{"resource":"org:new1","resource":"org:new2"}`, want: 400},
		{name: "unknown field in check", method: "POST", path: "/v1/check", body: `{"permission":"view","resource":"document:d1","admin":true}`, want: 400},
		{name: "unknown field in role", method: "PUT", path: d1Bob, body: `{"role":"editor","expires_at":"2030-01-01T00:00:00Z"}`, want: 400},
		{name: "number as id", method: "POST", path: "/v1/resources", body: `{"resource":1}`, want: 400},
		{name: "array as role", method: "PUT", path: d1Bob, body: `{"role":["editor"]}`, want: 400},
		{name: "string as page size", method: "POST", path: "/v1/lookup/resources", body: `{"permission":"view","resource_type":"org","page_size":"10"}`, want: 400},
		{name: "object as checks", method: "POST", path: "/v1/check/bulk", body: `{"checks":{"permission":"view"}}`, want: 400},
		{name: "array body", method: "POST", path: "/v1/resources", body: `[{"resource":"org:new1"}]`, want: 400},
		{name: "null body", method: "POST", path: "/v1/resources", body: `null`, want: 400},
		{name: "empty body", method: "POST", path: "/v1/resources", body: ``, want: 400},
		{name: "empty role body", method: "PUT", path: d1Bob, body: ``, want: 400},
		{name: "text content type", method: "POST", path: "/v1/resources", body: `{"resource":"org:new1"}`, contentType: "text/plain", want: 415},
		{name: "form content type", method: "POST", path: "/v1/check", body: `{"permission":"view","resource":"document:d1"}`, contentType: "application/x-www-form-urlencoded", want: 415},
		{name: "no content type", method: "PUT", path: d1Bob, body: `{"role":"editor"}`, omitContentType: true, want: 415},
		{name: "oversized body", method: "POST", path: "/v1/resources", body: `{"resource":"org:new1","owner":"` + huge + `"}`, want: 413},
		{name: "oversized trailing space", method: "POST", path: "/v1/resources", body: `{"resource":"org:new1"}` + strings.Repeat(" ", 70<<10), want: 413},

		// Resource and subject ids.
		{name: "id with space", method: "POST", path: "/v1/resources", body: createReq("org:new 1", ""), want: 400},
		{name: "unicode id", method: "POST", path: "/v1/resources", body: createReq("org:nëw1", ""), want: 400},
		{name: "long id", method: "POST", path: "/v1/resources", body: createReq("org:"+long, ""), want: 400},
		{name: "dot dot id", method: "POST", path: "/v1/resources", body: createReq("workspace:..", "org:acme"), want: 400},
		{name: "slash in id", method: "POST", path: "/v1/resources", body: createReq("workspace:a/b", "org:acme"), want: 400},
		{name: "empty resource", method: "POST", path: "/v1/resources", body: createReq("", ""), want: 400},
		{name: "type only", method: "POST", path: "/v1/resources", body: createReq("org:", ""), want: 400},
		{name: "id only", method: "POST", path: "/v1/resources", body: createReq(":new1", ""), want: 400},
		{name: "uppercase type", method: "POST", path: "/v1/resources", body: createReq("ORG:new1", ""), want: 400},
		{name: "unknown type", method: "POST", path: "/v1/resources", body: createReq("folder:new1", ""), want: 400},
		{name: "platform type", method: "POST", path: "/v1/resources", body: createReq("platform:gatehouse", ""), want: 400},
		{name: "user type", method: "POST", path: "/v1/resources", body: createReq("user:dev|mallory", ""), want: 400},
		{name: "space in path id", method: "DELETE", path: "/v1/resources/org/acme%20x", want: 400},
		{name: "unicode path id", method: "GET", path: "/v1/resources/org/%C3%A4cme/members", want: 400},
		{name: "unknown path type", method: "DELETE", path: "/v1/resources/folder/acme", want: 400},
		{name: "subject without issuer", method: "PUT", path: memberPath("document:d1", "user:bob"), body: map[string]string{"role": "viewer"}, want: 400},
		{name: "subject of resource type", method: "PUT", path: memberPath("document:d1", "org:globex"), body: map[string]string{"role": "viewer"}, want: 400},
		{name: "subject with relation", method: "PUT", path: memberPath("document:d1", "group:eng#member"), body: map[string]string{"role": "viewer"}, want: 400},
		{name: "uppercase issuer", method: "DELETE", path: memberPath("document:d1", "user:DEV|bob"), want: 400},

		// Resource tree.
		{name: "wrong parent type", method: "POST", path: "/v1/resources", body: createReq("project:np", "org:acme"), want: 400},
		{name: "missing parent", method: "POST", path: "/v1/resources", body: createReq("workspace:nw", ""), want: 400},
		{name: "parent not found", method: "POST", path: "/v1/resources", body: createReq("workspace:nw", "org:nope"), want: 404},
		{name: "org with parent", method: "POST", path: "/v1/resources", body: createReq("org:new1", "org:acme"), want: 400},
		{name: "group as parent", method: "POST", path: "/v1/resources", body: createReq("workspace:nw", "group:eng"), want: 400},
		{name: "id taken in other org", method: "POST", path: "/v1/resources", body: createReq("workspace:gw", "org:acme"), want: 409},
		{name: "id taken in same org", method: "POST", path: "/v1/resources", body: createReq("workspace:w1", "org:acme"), want: 409},
		{name: "org id taken", method: "POST", path: "/v1/resources", body: createReq("org:globex", ""), want: 409},
		{name: "user names owner", method: "POST", path: "/v1/resources", body: map[string]string{"resource": "workspace:nw", "parent": "org:acme", "owner": bob.ref}, want: 403},
		{name: "service names group owner", by: billing, method: "POST", path: "/v1/resources", body: map[string]string{"resource": "workspace:nw", "parent": "org:acme", "owner": "group:eng"}, want: 400},

		// Roles.
		{name: "unknown role", method: "PUT", path: d1Bob, body: map[string]string{"role": "superuser"}, want: 400},
		{name: "role of other type", method: "PUT", path: d1Bob, body: map[string]string{"role": "admin"}, want: 400},
		{name: "empty role", method: "PUT", path: d1Bob, body: map[string]string{"role": ""}, want: 400},
		{name: "relation as role", method: "PUT", path: memberPath("workspace:w1", bob.ref), body: map[string]string{"role": "org"}, want: 400},
		{name: "permission as role", method: "PUT", path: d1Bob, body: map[string]string{"role": "view"}, want: 400},
		{name: "app role for user", method: "PUT", path: acmeBob, body: map[string]string{"role": "app"}, want: 400},
		{name: "app role for group", method: "PUT", path: memberPath("org:acme", "group:eng"), body: map[string]string{"role": "app"}, want: 400},
		{name: "group member of itself", method: "PUT", path: memberPath("group:eng", "group:eng"), body: map[string]string{"role": "member"}, want: 400},

		// Checks and lookups.
		{name: "unknown permission", method: "POST", path: "/v1/check", body: checkBody("", "read", "document:d1"), want: 400},
		{name: "internal permission", method: "POST", path: "/v1/check", body: checkBody("", "inspect", "document:d1"), want: 400},
		{name: "owners permission", method: "POST", path: "/v1/check", body: checkBody("", "manage_owners", "org:acme"), want: 400},
		{name: "role as permission", method: "POST", path: "/v1/check", body: checkBody("", "viewer", "document:d1"), want: 400},
		{name: "empty permission", method: "POST", path: "/v1/check", body: checkBody("", "", "document:d1"), want: 400},
		{name: "check without resource", method: "POST", path: "/v1/check", body: `{"permission":"view"}`, want: 400},
		{name: "check of platform", method: "POST", path: "/v1/check", body: checkBody("", "view", "platform:gatehouse"), want: 400},
		{name: "lookup unknown permission", method: "POST", path: "/v1/lookup/resources", body: map[string]any{"permission": "admin", "resource_type": "document"}, want: 400},
		{name: "lookup unknown type", method: "POST", path: "/v1/lookup/resources", body: map[string]any{"permission": "view", "resource_type": "platform"}, want: 400},
		{name: "lookup bad subject", method: "POST", path: "/v1/lookup/resources", body: map[string]any{"subject": "user:bob", "permission": "view", "resource_type": "document"}, want: 400},
		{name: "subjects of resource type", method: "POST", path: "/v1/lookup/subjects", body: map[string]any{"resource": "document:d1", "permission": "view", "subject_type": "org"}, want: 400},
		{name: "bulk of 0", method: "POST", path: "/v1/check/bulk", body: map[string]any{"checks": checks(0)}, want: 400},
		{name: "bulk without checks", method: "POST", path: "/v1/check/bulk", body: `{}`, want: 400},
		{name: "bulk of 101", method: "POST", path: "/v1/check/bulk", body: map[string]any{"checks": checks(101)}, want: 400},

		// Paging.
		{name: "lookup page size -1", method: "POST", path: "/v1/lookup/resources", body: map[string]any{"permission": "view", "resource_type": "document", "page_size": -1}, want: 400},
		{name: "lookup page size 1001", method: "POST", path: "/v1/lookup/resources", body: map[string]any{"permission": "view", "resource_type": "document", "page_size": 1001}, want: 400},
		{name: "subjects page size 1001", method: "POST", path: "/v1/lookup/subjects", body: map[string]any{"resource": "document:d1", "permission": "view", "subject_type": "user", "page_size": 1001}, want: 400},
		{name: "members page size -1", method: "GET", path: "/v1/resources/org/acme/members?page_size=-1", want: 400},
		{name: "members page size 1001", method: "GET", path: "/v1/resources/org/acme/members?page_size=1001", want: 400},
		{name: "members page size text", method: "GET", path: "/v1/resources/org/acme/members?page_size=ten", want: 400},
		{name: "lookup page token", method: "POST", path: "/v1/lookup/resources", body: map[string]any{"permission": "view", "resource_type": "document", "page_token": "garbage"}, want: 400},
		{name: "lookup long page token", method: "POST", path: "/v1/lookup/resources", body: map[string]any{"permission": "view", "resource_type": "document", "page_token": strings.Repeat("A", 4097)}, want: 400},
		{name: "subjects page token", method: "POST", path: "/v1/lookup/subjects", body: map[string]any{"resource": "document:d1", "permission": "view", "subject_type": "user", "page_token": "!!"}, want: 400},
		{name: "members page token", method: "GET", path: "/v1/resources/org/acme/members?page_token=garbage", want: 400},

		// Consistency.
		{name: "unknown consistency", method: "POST", path: "/v1/check", body: map[string]string{"permission": "view", "resource": "document:d1", "consistency": "eventual"}, want: 400},
		{name: "bulk unknown consistency", method: "POST", path: "/v1/check/bulk", body: map[string]any{"checks": checks(1), "consistency": "at_least_as_fresh"}, want: 400},
		{name: "lookup unknown consistency", method: "POST", path: "/v1/lookup/resources", body: map[string]any{"permission": "view", "resource_type": "document", "consistency": "FULL"}, want: 400},
		{name: "garbage consistency token", method: "POST", path: "/v1/check", body: map[string]string{"permission": "view", "resource": "document:d1", "consistency_token": "garbage"}, want: 400},
		{name: "long consistency token", method: "POST", path: "/v1/check", body: map[string]string{"permission": "view", "resource": "document:d1", "consistency_token": strings.Repeat("A", 1025)}, want: 400},
		{name: "token with minimize latency", method: "POST", path: "/v1/check", body: map[string]string{"permission": "view", "resource": "document:d1", "consistency_token": "x", "consistency": "minimize_latency"}, want: 400},

		// Routes.
		{name: "unknown route", method: "GET", path: "/v1/nope", want: 404},
		{name: "unknown version", method: "POST", path: "/v2/check", body: checkBody("", "view", "document:d1"), want: 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			by := c.by
			if by == nil {
				by = alice
			}
			r := g.send(t, request{
				Method: c.method, Path: c.path, Token: by.token, Body: c.body,
				ContentType: c.contentType, OmitContentType: c.omitContentType,
			})
			after := observe(t, callers, owners)
			changed := current.diff(after)
			current = after
			wantProblem(t, r, c.want)
			if len(changed) > 0 {
				t.Fatalf("state changed:\n%s", strings.Join(changed, "\n"))
			}
		})
	}
}

// TestWrongMethod sends a method that a route does not serve. RFC 9110,
// section 15.5.6, requires 405 with an Allow header that lists the methods
// the route does serve.
func TestWrongMethod(t *testing.T) {
	g := startGatehouse(t)
	alice := g.user(t, "alice")

	cases := []struct {
		name, method, path, allow string
	}{
		{"get check", "GET", "/v1/check", "POST"},
		{"put check", "PUT", "/v1/check", "POST"},
		{"get resources", "GET", "/v1/resources", "POST"},
		{"put resource", "PUT", "/v1/resources/org/acme", "DELETE"},
		{"patch member", "PATCH", "/v1/resources/org/acme/members/user:dev%7Cbob", "DELETE, GET, HEAD, PUT"},
		{"post me", "POST", "/v1/me", "GET, HEAD"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := g.send(t, request{Method: c.method, Path: c.path, Token: alice.token})
			wantProblem(t, r, http.StatusMethodNotAllowed)
			if got := r.header.Get("Allow"); got != c.allow {
				t.Errorf("Allow %q, want %q", got, c.allow)
			}
		})
	}
}

// TestPageSizeZero documents that page_size 0 selects the default page
// size, as an omitted page_size does, rather than being rejected: in a JSON
// body Gatehouse cannot tell 0 from absent.
func TestPageSizeZero(t *testing.T) {
	g := startGatehouse(t)
	alice := g.user(t, "alice")
	alice.create(t, "org:acme", "")

	r := alice.do(t, http.MethodGet, "/v1/resources/org/acme/members?page_size=0", nil)
	wantStatus(t, r, http.StatusOK)
	r = alice.do(t, http.MethodPost, "/v1/lookup/resources", map[string]any{"permission": "view", "resource_type": "org", "page_size": 0})
	wantStatus(t, r, http.StatusOK)
	var out struct {
		Resources     []string `json:"resources"`
		NextPageToken string   `json:"next_page_token"`
	}
	decodeJSON(t, r, &out)
	if !slices.Equal(out.Resources, []string{"org:acme"}) {
		t.Errorf("lookup with page_size 0: got %v, want [org:acme]", out.Resources)
	}
}

// TestGroupCycle closes a loop of group memberships. Gatehouse should
// reject the closing write, as it rejects a group that is a member of
// itself, and whatever it does, no check may fail with a server error.
func TestGroupCycle(t *testing.T) {
	g := startGatehouse(t)
	alice, zed := g.user(t, "alice"), g.user(t, "zed")
	alice.create(t, "org:acme", "")
	alice.create(t, "workspace:w1", "org:acme")
	alice.create(t, "group:a", "org:acme")
	alice.create(t, "group:b", "org:acme")
	alice.create(t, "group:c", "org:acme")
	alice.setRole(t, "workspace:w1", "group:a", "viewer")
	alice.setRole(t, "group:a", "group:b", "member")
	alice.setRole(t, "group:b", "group:c", "member")

	r := alice.do(t, http.MethodPut, memberPath("group:c", "group:a"), map[string]string{"role": "member"})
	if r.status != http.StatusBadRequest && r.status != http.StatusConflict {
		t.Errorf("closing the loop a > b > c > a: got %v, want 400 or 409", r)
	}

	checks := []struct {
		name                          string
		by                            *caller
		subject, permission, resource string
	}{
		{"outsider on workspace", zed, "", "view", "workspace:w1"},
		{"outsider on group", zed, "", "view", "group:a"},
		{"owner about outsider", alice, zed.ref, "view", "workspace:w1"},
		{"owner on workspace", alice, "", "edit", "workspace:w1"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			r := c.by.do(t, http.MethodPost, "/v1/check", checkBody(c.subject, c.permission, c.resource))
			if r.status >= 500 {
				t.Errorf("got %v, want 200", r)
			}
		})
	}
	t.Run("lookup subjects", func(t *testing.T) {
		_, r := alice.lookupSubjects(t, "workspace:w1", "view", "user")
		if r.status >= 500 {
			t.Errorf("got %v, want 200", r)
		}
	})
}
