package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// tenants is two orgs with their trees and the principals that hold roles
// in them:
//
//	org:acme (owner alice, admin frank, member bob, app service billing)
//	  workspace:a-w1 (viewer bob)
//	    project:a-p1: document:a-d1, document:a-d2
//	    project:a-p2 (viewer group:a-eng): document:a-d3
//	  workspace:a-w2
//	    project:a-p3 (editor grace): document:a-d4 (owner erin)
//	  group:a-eng (member group:a-core), group:a-core (member dave)
//	org:globex (owner carol)
//	  workspace:g-w1: project:g-p1: document:g-d1
//	  group:g-team (member grace)
type tenants struct {
	g                                           *gatehouse
	alice, bob, carol, dave, erin, frank, grace *caller
	billing                                     *caller

	acme   []string // every acme resource, "type:id"
	globex []string // every globex resource
}

// all returns every resource of both orgs.
func (ts *tenants) all() []string { return append(slices.Clone(ts.acme), ts.globex...) }

// newTenants starts a server and builds the two orgs.
func newTenants(t *testing.T) *tenants {
	t.Helper()
	g := startGatehouse(t)
	ts := &tenants{
		g:     g,
		alice: g.user(t, "alice"), bob: g.user(t, "bob"), carol: g.user(t, "carol"),
		dave: g.user(t, "dave"), erin: g.user(t, "erin"), frank: g.user(t, "frank"),
		grace: g.user(t, "grace"), billing: g.service(t, "billing"),
	}

	tree := []struct{ resource, parent string }{
		{"org:acme", ""},
		{"workspace:a-w1", "org:acme"},
		{"workspace:a-w2", "org:acme"},
		{"project:a-p1", "workspace:a-w1"},
		{"project:a-p2", "workspace:a-w1"},
		{"project:a-p3", "workspace:a-w2"},
		{"document:a-d1", "project:a-p1"},
		{"document:a-d2", "project:a-p1"},
		{"document:a-d3", "project:a-p2"},
		{"document:a-d4", "project:a-p3"},
		{"group:a-eng", "org:acme"},
		{"group:a-core", "org:acme"},
	}
	for _, n := range tree {
		ts.alice.create(t, n.resource, n.parent)
		ts.acme = append(ts.acme, n.resource)
	}
	for _, n := range []struct{ resource, parent string }{
		{"org:globex", ""},
		{"workspace:g-w1", "org:globex"},
		{"project:g-p1", "workspace:g-w1"},
		{"document:g-d1", "project:g-p1"},
		{"group:g-team", "org:globex"},
	} {
		ts.carol.create(t, n.resource, n.parent)
		ts.globex = append(ts.globex, n.resource)
	}

	grants := []struct{ resource, subject, role string }{
		{"org:acme", ts.frank.ref, "admin"},
		{"org:acme", ts.bob.ref, "member"},
		{"org:acme", ts.billing.ref, "app"},
		{"workspace:a-w1", ts.bob.ref, "viewer"},
		{"project:a-p2", "group:a-eng", "viewer"},
		{"project:a-p3", ts.grace.ref, "editor"},
		{"document:a-d4", ts.erin.ref, "owner"},
		{"group:a-eng", "group:a-core", "member"},
		{"group:a-core", ts.dave.ref, "member"},
	}
	for _, gr := range grants {
		ts.alice.setRole(t, gr.resource, gr.subject, gr.role)
	}
	ts.carol.setRole(t, "group:g-team", ts.grace.ref, "member")
	return ts
}

// ofType returns the resources of type typ, sorted.
func ofType(resources []string, typ string) []string {
	out := []string{}
	for _, r := range resources {
		if strings.HasPrefix(r, typ+":") {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// normalizedProblem returns r's problem document without its request id and
// with every name in names replaced by a placeholder, so that responses
// about different objects can be compared byte for byte.
func normalizedProblem(t *testing.T, r response, names ...string) string {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("%v: body is not JSON: %v", r, err)
	}
	delete(doc, "request_id")
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		data = bytes.ReplaceAll(data, []byte(name), []byte("<name>"))
	}
	return r.header.Get("Content-Type") + " " + string(data)
}

func TestTenantIsolation(t *testing.T) {
	ts := newTenants(t)
	alice, carol := ts.alice, ts.carol

	t.Run("own permissions in other org", func(t *testing.T) {
		for _, perm := range []string{"view", "edit", "delete", "share", "manage", "create"} {
			if got := alice.allowedSet(t, "", perm, ts.globex); len(got) != 0 {
				t.Errorf("alice has %q on %v", perm, got)
			}
			if got := carol.allowedSet(t, "", perm, ts.acme); len(got) != 0 {
				t.Errorf("carol has %q on %v", perm, got)
			}
		}
	})

	t.Run("checks about carol", func(t *testing.T) {
		for _, res := range ts.globex {
			r := alice.do(t, http.MethodPost, "/v1/check", checkBody(carol.ref, "view", res))
			wantProblem(t, r, http.StatusNotFound)
		}
		for _, res := range ts.acme {
			if alice.allowed(t, carol.ref, "view", res) {
				t.Errorf("carol can view %s", res)
			}
		}
	})

	t.Run("bulk checks about carol", func(t *testing.T) {
		var checks []map[string]string
		for _, res := range ts.globex {
			checks = append(checks, checkBody(carol.ref, "view", res))
		}
		r := alice.do(t, http.MethodPost, "/v1/check/bulk", map[string]any{"checks": checks})
		wantStatus(t, r, http.StatusOK)
		var out struct {
			Results []struct {
				Allowed bool        `json:"allowed"`
				Error   *problemDoc `json:"error"`
			} `json:"results"`
		}
		decodeJSON(t, r, &out)
		if len(out.Results) != len(checks) {
			t.Fatalf("got %d results, want %d", len(out.Results), len(checks))
		}
		for i, res := range out.Results {
			if res.Allowed || res.Error == nil || res.Error.Status != http.StatusNotFound {
				t.Errorf("bulk check about carol on %s: allowed %v, error %+v, want a 404 error", ts.globex[i], res.Allowed, res.Error)
			}
		}
	})

	t.Run("lookups", func(t *testing.T) {
		for _, typ := range resourceTypes {
			for _, res := range alice.lookupResources(t, "", "view", typ) {
				if slices.Contains(ts.globex, res) {
					t.Errorf("alice's lookup of %s returns %s", typ, res)
				}
			}
			if got := alice.lookupResources(t, carol.ref, "view", typ); len(got) != 0 {
				t.Errorf("alice's lookup of %s about carol returns %v", typ, got)
			}
			if got := carol.lookupResources(t, "", "view", typ); !slices.Equal(got, ofType(ts.globex, typ)) {
				t.Errorf("carol's lookup of %s: got %v, want %v", typ, got, ofType(ts.globex, typ))
			}
		}
		for _, res := range ts.globex {
			for _, subjectType := range []string{"user", "service", "group"} {
				_, r := alice.lookupSubjects(t, res, "view", subjectType)
				wantProblem(t, r, http.StatusNotFound)
			}
		}
	})

	t.Run("member changes", func(t *testing.T) {
		before := map[string][]string{}
		for _, res := range ts.globex {
			before[res] = carol.members(t, res)
		}
		for _, res := range ts.globex {
			role := "viewer"
			switch {
			case strings.HasPrefix(res, "org:"):
				role = "owner"
			case strings.HasPrefix(res, "group:"):
				role = "admin"
			}
			wantProblem(t, alice.do(t, http.MethodGet, resourcePath(res)+"/members", nil), http.StatusNotFound)
			wantProblem(t, alice.do(t, http.MethodPut, memberPath(res, alice.ref), map[string]string{"role": role}), http.StatusNotFound)
			wantProblem(t, alice.do(t, http.MethodDelete, memberPath(res, carol.ref), nil), http.StatusNotFound)
		}
		for _, res := range ts.globex {
			if got := carol.members(t, res); !slices.Equal(got, before[res]) {
				t.Errorf("members of %s: got %v, want %v", res, got, before[res])
			}
		}
	})

	t.Run("creates under other org", func(t *testing.T) {
		for _, c := range []struct{ resource, parent string }{
			{"workspace:x-w", "org:globex"},
			{"group:x-g", "org:globex"},
			{"project:x-p", "workspace:g-w1"},
			{"document:x-d", "project:g-p1"},
		} {
			r := alice.do(t, http.MethodPost, "/v1/resources", createReq(c.resource, c.parent))
			wantProblem(t, r, http.StatusNotFound)
			if alice.allowed(t, "", "view", c.resource) || carol.allowed(t, "", "view", c.resource) {
				t.Errorf("%s exists after a rejected create", c.resource)
			}
		}
		if got := alice.lookupResources(t, "", "view", "workspace"); !slices.Equal(got, ofType(ts.acme, "workspace")) {
			t.Errorf("alice's workspaces: got %v, want %v", got, ofType(ts.acme, "workspace"))
		}
	})

	t.Run("deletes", func(t *testing.T) {
		for _, res := range ts.globex {
			wantProblem(t, alice.do(t, http.MethodDelete, resourcePath(res), nil), http.StatusNotFound)
		}
		want := slices.Sorted(slices.Values(ts.globex))
		if got := carol.allowedSet(t, "", "view", ts.globex); !slices.Equal(got, want) {
			t.Errorf("carol views %v after alice's deletes, want %v", got, want)
		}
	})
}

// TestNotFoundIndistinguishable compares, for every request that a
// cross-org caller gets 404 for, the response about an existing object of
// the other org with the response about a missing one.
func TestNotFoundIndistinguishable(t *testing.T) {
	ts := newTenants(t)
	alice, carol := ts.alice, ts.carol

	type requestFunc func(object string) response
	requests := []struct {
		name string
		do   requestFunc
	}{
		{"check about other", func(o string) response {
			return alice.do(t, http.MethodPost, "/v1/check", checkBody(carol.ref, "view", o))
		}},
		{"lookup subjects", func(o string) response {
			return alice.do(t, http.MethodPost, "/v1/lookup/subjects", map[string]string{"resource": o, "permission": "view", "subject_type": "user"})
		}},
		{"list members", func(o string) response {
			return alice.do(t, http.MethodGet, resourcePath(o)+"/members", nil)
		}},
		{"set member", func(o string) response {
			role := "viewer"
			if strings.HasPrefix(o, "org:") || strings.HasPrefix(o, "group:") {
				role = "member"
			}
			return alice.do(t, http.MethodPut, memberPath(o, alice.ref), map[string]string{"role": role})
		}},
		{"remove member", func(o string) response {
			return alice.do(t, http.MethodDelete, memberPath(o, carol.ref), nil)
		}},
		{"delete", func(o string) response {
			return alice.do(t, http.MethodDelete, resourcePath(o), nil)
		}},
	}
	for _, req := range requests {
		for _, existing := range ts.globex {
			typ, id, _ := strings.Cut(existing, ":")
			missing := typ + ":missing-" + typ
			t.Run(req.name+" "+typ, func(t *testing.T) {
				got := req.do(existing)
				want := req.do(missing)
				wantProblem(t, got, http.StatusNotFound)
				wantProblem(t, want, http.StatusNotFound)
				if g, w := normalizedProblem(t, got, id), normalizedProblem(t, want, "missing-"+typ); g != w {
					t.Errorf("existing %s: %s\nmissing %s: %s", existing, g, missing, w)
				}
			})
		}
	}

	// Creating a child under another org's resource, and granting a role to
	// another org's group, must look like naming a missing one.
	for _, parent := range []string{"org:globex", "workspace:g-w1", "project:g-p1"} {
		typ, id, _ := strings.Cut(parent, ":")
		child := map[string]string{"org": "workspace:c-1", "workspace": "project:c-1", "project": "document:c-1"}[typ]
		t.Run("create under "+typ, func(t *testing.T) {
			got := alice.do(t, http.MethodPost, "/v1/resources", createReq(child, parent))
			want := alice.do(t, http.MethodPost, "/v1/resources", createReq(child, typ+":missing-"+typ))
			wantProblem(t, got, http.StatusNotFound)
			wantProblem(t, want, http.StatusNotFound)
			if g, w := normalizedProblem(t, got, id), normalizedProblem(t, want, "missing-"+typ); g != w {
				t.Errorf("existing parent: %s\nmissing parent: %s", g, w)
			}
		})
	}
	t.Run("group of other org", func(t *testing.T) {
		got := alice.do(t, http.MethodPut, memberPath("document:a-d1", "group:g-team"), map[string]string{"role": "viewer"})
		want := alice.do(t, http.MethodPut, memberPath("document:a-d1", "group:missing-group"), map[string]string{"role": "viewer"})
		wantProblem(t, got, http.StatusNotFound)
		wantProblem(t, want, http.StatusNotFound)
		if g, w := normalizedProblem(t, got, "g-team"), normalizedProblem(t, want, "missing-group"); g != w {
			t.Errorf("other org's group: %s\nmissing group: %s", g, w)
		}
	})
}

// TestLookupMatchesCheck checks that, for principals with direct,
// inherited and nested-group roles, a lookup returns exactly the resources
// that a check allows.
func TestLookupMatchesCheck(t *testing.T) {
	ts := newTenants(t)
	all := ts.all()

	// The view sets follow from the roles in newTenants, and keep the
	// comparison from passing when lookup and check are both empty.
	tests := []struct {
		name      string
		principal *caller
		wantView  []string
	}{
		{"owner", ts.alice, ts.acme},
		{"org admin", ts.frank, ts.acme},
		{"org member and workspace viewer", ts.bob, []string{
			"org:acme", "workspace:a-w1", "project:a-p1", "project:a-p2",
			"document:a-d1", "document:a-d2", "document:a-d3",
		}},
		{"nested group", ts.dave, []string{"project:a-p2", "document:a-d3", "group:a-eng", "group:a-core"}},
		{"document owner", ts.erin, []string{"document:a-d4"}},
		{"project editor in two orgs", ts.grace, []string{"project:a-p3", "document:a-d4", "group:g-team"}},
		{"other org owner", ts.carol, ts.globex},
		{"app service", ts.billing, ts.acme},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, perm := range []string{"view", "edit", "manage"} {
				allowed := tt.principal.allowedSet(t, "", perm, all)
				if perm == "view" {
					want := slices.Sorted(slices.Values(tt.wantView))
					if !slices.Equal(allowed, want) {
						t.Errorf("check view allows %v, want %v", allowed, want)
					}
				}
				for _, typ := range resourceTypes {
					got := tt.principal.lookupResources(t, "", perm, typ)
					if want := ofType(allowed, typ); !slices.Equal(got, want) {
						t.Errorf("lookup %s %s: got %v, checks allow %v", perm, typ, got, want)
					}
				}
			}
		})
	}
}

func TestAppService(t *testing.T) {
	ts := newTenants(t)
	billing := ts.billing

	t.Run("checks about acme users", func(t *testing.T) {
		cases := []struct {
			subject, permission, resource string
			want                          bool
		}{
			{ts.bob.ref, "view", "document:a-d1", true},
			{ts.bob.ref, "edit", "document:a-d1", false},
			{ts.bob.ref, "view", "document:a-d4", false},
			{ts.erin.ref, "manage", "document:a-d4", true},
			{ts.dave.ref, "view", "document:a-d3", true},
			{ts.dave.ref, "view", "group:a-eng", true},
			{ts.frank.ref, "delete", "workspace:a-w2", true},
		}
		for _, c := range cases {
			if got := billing.allowed(t, c.subject, c.permission, c.resource); got != c.want {
				t.Errorf("%s %s %s: got %v, want %v", c.subject, c.permission, c.resource, got, c.want)
			}
		}
	})

	t.Run("own permissions", func(t *testing.T) {
		if !billing.allowed(t, "", "view", "document:a-d1") {
			t.Error("billing cannot view document:a-d1")
		}
		if !billing.allowed(t, "", "create", "project:a-p1") {
			t.Error("billing cannot create in project:a-p1")
		}
		if billing.allowed(t, "", "edit", "document:a-d1") {
			t.Error("billing can edit document:a-d1 through the app role")
		}
	})

	t.Run("lookups about acme", func(t *testing.T) {
		got := billing.lookupResources(t, ts.bob.ref, "view", "document")
		if want := []string{"document:a-d1", "document:a-d2", "document:a-d3"}; !slices.Equal(got, want) {
			t.Errorf("bob's documents: got %v, want %v", got, want)
		}
		subjects, r := billing.lookupSubjects(t, "document:a-d3", "view", "user")
		wantStatus(t, r, http.StatusOK)
		want := []string{ts.alice.ref, ts.bob.ref, ts.dave.ref, ts.frank.ref}
		slices.Sort(want)
		if !slices.Equal(subjects, want) {
			t.Errorf("viewers of document:a-d3: got %v, want %v", subjects, want)
		}
	})

	t.Run("globex is not found", func(t *testing.T) {
		for _, res := range ts.globex {
			wantProblem(t, billing.do(t, http.MethodPost, "/v1/check", checkBody(ts.carol.ref, "view", res)), http.StatusNotFound)
			_, r := billing.lookupSubjects(t, res, "view", "user")
			wantProblem(t, r, http.StatusNotFound)
			wantProblem(t, billing.do(t, http.MethodGet, resourcePath(res)+"/members", nil), http.StatusNotFound)
			if billing.allowed(t, "", "view", res) {
				t.Errorf("billing can view %s", res)
			}
		}
		for _, typ := range resourceTypes {
			if got := billing.lookupResources(t, ts.carol.ref, "view", typ); len(got) != 0 {
				t.Errorf("billing's lookup of %s about carol returns %v", typ, got)
			}
			for _, res := range billing.lookupResources(t, ts.grace.ref, "view", typ) {
				if slices.Contains(ts.globex, res) {
					t.Errorf("billing's lookup of %s about grace returns %s", typ, res)
				}
			}
		}
		wantProblem(t, billing.do(t, http.MethodPost, "/v1/resources", createReq("workspace:b-w", "org:globex")), http.StatusNotFound)
	})
}

// TestAskAboutOthers covers a user without manage (bob, viewer of a-w1)
// asking about another user: 403 where bob can view, 404 where he cannot.
func TestAskAboutOthers(t *testing.T) {
	ts := newTenants(t)
	bob, dave := ts.bob, ts.dave

	cases := []struct {
		name     string
		resource string
		want     int
	}{
		{"visible document", "document:a-d1", http.StatusForbidden},
		{"visible project", "project:a-p2", http.StatusForbidden},
		{"visible workspace", "workspace:a-w1", http.StatusForbidden},
		{"member of org", "org:acme", http.StatusForbidden},
		{"invisible document", "document:a-d4", http.StatusNotFound},
		{"invisible group", "group:a-eng", http.StatusNotFound},
		{"other org", "document:g-d1", http.StatusNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantProblem(t, bob.do(t, http.MethodPost, "/v1/check", checkBody(dave.ref, "view", c.resource)), c.want)
			_, r := bob.lookupSubjects(t, c.resource, "view", "user")
			wantProblem(t, r, c.want)
			wantProblem(t, bob.do(t, http.MethodGet, resourcePath(c.resource)+"/members", nil), c.want)

			r = bob.do(t, http.MethodPost, "/v1/check/bulk", map[string]any{"checks": []map[string]string{checkBody(dave.ref, "view", c.resource)}})
			wantStatus(t, r, http.StatusOK)
			var out struct {
				Results []struct {
					Allowed bool        `json:"allowed"`
					Error   *problemDoc `json:"error"`
				} `json:"results"`
			}
			decodeJSON(t, r, &out)
			if len(out.Results) != 1 || out.Results[0].Allowed || out.Results[0].Error == nil || out.Results[0].Error.Status != c.want {
				t.Errorf("bulk check: got %s, want one %d error", r.body, c.want)
			}
		})
	}

	t.Run("lookup about other", func(t *testing.T) {
		// dave views a-d3 and so does bob, but bob may not inspect it.
		if got := bob.lookupResources(t, dave.ref, "view", "document"); len(got) != 0 {
			t.Errorf("bob's lookup about dave returns %v", got)
		}
	})
}

func TestCrossOrgGroup(t *testing.T) {
	ts := newTenants(t)

	cases := []struct {
		name              string
		by                *caller
		resource, subject string
		role              string
	}{
		{"globex group on acme document", ts.alice, "document:a-d1", "group:g-team", "viewer"},
		{"globex group on acme org", ts.alice, "org:acme", "group:g-team", "member"},
		{"globex group in acme group", ts.alice, "group:a-eng", "group:g-team", "member"},
		{"acme group on globex workspace", ts.carol, "workspace:g-w1", "group:a-eng", "editor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := c.by.members(t, c.resource)
			wantProblem(t, c.by.do(t, http.MethodPut, memberPath(c.resource, c.subject), map[string]string{"role": c.role}), http.StatusNotFound)
			if got := c.by.members(t, c.resource); !slices.Equal(got, before) {
				t.Errorf("members of %s: got %v, want %v", c.resource, got, before)
			}
		})
	}

	// grace is in g-team; dave is in a-eng through a-core.
	if ts.alice.allowed(t, ts.grace.ref, "view", "document:a-d1") {
		t.Error("grace can view document:a-d1 through globex's group")
	}
	if ts.carol.allowed(t, ts.dave.ref, "view", "workspace:g-w1") {
		t.Error("dave can view workspace:g-w1 through acme's group")
	}
}

func TestOwnerRules(t *testing.T) {
	ts := newTenants(t)
	alice, bob, frank := ts.alice, ts.bob, ts.frank
	wantMembers := alice.members(t, "org:acme")

	cases := []struct {
		name   string
		by     *caller
		method string
		path   string
		body   any
		want   int
	}{
		{"admin makes owner", frank, http.MethodPut, memberPath("org:acme", bob.ref), map[string]string{"role": "owner"}, http.StatusForbidden},
		{"admin makes self owner", frank, http.MethodPut, memberPath("org:acme", frank.ref), map[string]string{"role": "owner"}, http.StatusForbidden},
		// Org owners are never groups: org admins manage groups, so a group
		// of owners would let an admin add itself to it.
		{"admin makes group owner", frank, http.MethodPut, memberPath("org:acme", "group:a-eng"), map[string]string{"role": "owner"}, http.StatusBadRequest},
		{"owner makes group owner", alice, http.MethodPut, memberPath("org:acme", "group:a-eng"), map[string]string{"role": "owner"}, http.StatusBadRequest},
		{"admin removes owner", frank, http.MethodDelete, memberPath("org:acme", alice.ref), nil, http.StatusForbidden},
		{"admin demotes owner", frank, http.MethodPut, memberPath("org:acme", alice.ref), map[string]string{"role": "member"}, http.StatusForbidden},
		{"admin deletes org", frank, http.MethodDelete, resourcePath("org:acme"), nil, http.StatusForbidden},
		{"last owner removes self", alice, http.MethodDelete, memberPath("org:acme", alice.ref), nil, http.StatusConflict},
		{"last owner demotes self", alice, http.MethodPut, memberPath("org:acme", alice.ref), map[string]string{"role": "admin"}, http.StatusConflict},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantProblem(t, c.by.do(t, c.method, c.path, c.body), c.want)
			if got := alice.members(t, "org:acme"); !slices.Equal(got, wantMembers) {
				t.Errorf("members of org:acme: got %v, want %v", got, wantMembers)
			}
		})
	}

	t.Run("second owner lets first leave", func(t *testing.T) {
		alice.setRole(t, "org:acme", bob.ref, "owner")
		alice.removeRole(t, "org:acme", alice.ref)
		if alice.allowed(t, "", "view", "org:acme") {
			t.Error("alice still views org:acme after leaving it")
		}
		wantProblem(t, bob.do(t, http.MethodDelete, memberPath("org:acme", bob.ref), nil), http.StatusConflict)
	})
}

// TestLookupPagesRepeatNothing pages through a lookup with small pages: a
// client that follows every page token should see each resource once.
func TestLookupPagesRepeatNothing(t *testing.T) {
	ts := newTenants(t)
	want := ofType(ts.acme, "document")

	for _, pageSize := range []int{1, 3, 4, 50} {
		t.Run(fmt.Sprintf("page size %d", pageSize), func(t *testing.T) {
			// alice reaches each document through several paths: org owner,
			// workspace and project admin, document owner.
			got := ts.alice.lookupPages(t, "", "view", "document", pageSize)
			if set := slices.Compact(slices.Clone(got)); !slices.Equal(set, want) {
				t.Fatalf("pages return the set %v, want %v", set, want)
			}
			if len(got) != len(want) {
				t.Errorf("pages return %d results for the %d documents %v", len(got), len(want), want)
			}
		})
	}
}
