package integration

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// rounds is how often each read-your-writes sequence repeats: enough to
// catch a cache or snapshot that lags behind a write now and then.
const rounds = 100

func TestReadYourWrites(t *testing.T) {
	g := startGatehouse(t)
	alice, bob, dave := g.user(t, "alice"), g.user(t, "bob"), g.user(t, "dave")
	alice.create(t, "org:acme", "")
	alice.create(t, "workspace:w1", "org:acme")
	alice.create(t, "project:p1", "workspace:w1")
	alice.create(t, "document:d1", "project:p1")
	alice.create(t, "group:eng", "org:acme")
	alice.setRole(t, "workspace:w1", "group:eng", "viewer")

	t.Run("remove direct role", func(t *testing.T) {
		for i := range rounds {
			alice.setRole(t, "document:d1", bob.ref, "editor")
			if !bob.allowed(t, "", "edit", "document:d1") {
				t.Fatalf("round %d: bob cannot edit right after being made editor", i)
			}
			alice.removeRole(t, "document:d1", bob.ref)
			if bob.allowed(t, "", "edit", "document:d1") {
				t.Fatalf("round %d: bob can still edit right after his role was removed", i)
			}
		}
	})

	t.Run("remove group member", func(t *testing.T) {
		for i := range rounds {
			alice.setRole(t, "group:eng", dave.ref, "member")
			if !dave.allowed(t, "", "view", "document:d1") {
				t.Fatalf("round %d: dave cannot view right after joining the group", i)
			}
			alice.removeRole(t, "group:eng", dave.ref)
			if dave.allowed(t, "", "view", "document:d1") {
				t.Fatalf("round %d: dave can still view right after leaving the group", i)
			}
		}
	})

	t.Run("downgrade role", func(t *testing.T) {
		for i := range rounds {
			alice.setRole(t, "project:p1", bob.ref, "admin")
			if !alice.allowed(t, bob.ref, "delete", "document:d1") {
				t.Fatalf("round %d: bob cannot delete right after being made admin", i)
			}
			alice.setRole(t, "project:p1", bob.ref, "viewer")
			if alice.allowed(t, bob.ref, "delete", "document:d1") {
				t.Fatalf("round %d: bob can still delete right after being made viewer", i)
			}
		}
	})

	t.Run("create then check", func(t *testing.T) {
		alice.setRole(t, "project:p1", bob.ref, "viewer")
		for i := range rounds {
			doc := fmt.Sprintf("document:new-%d", i)
			alice.create(t, doc, "project:p1")
			if !alice.allowed(t, "", "manage", doc) {
				t.Fatalf("round %d: alice cannot manage %s right after creating it", i, doc)
			}
			if !bob.allowed(t, "", "view", doc) {
				t.Fatalf("round %d: bob cannot view %s right after it was created", i, doc)
			}
		}
		got := alice.lookupResources(t, bob.ref, "view", "document")
		if len(got) != rounds+1 {
			t.Errorf("bob views %d documents, want %d", len(got), rounds+1)
		}
	})
}

// deleteFixture is an org whose tree and roles reach every kind of
// relationship that a delete must remove, next to an org that it must not
// touch.
type deleteFixture struct {
	alice, bob, carol, dave, erin, frank, billing *caller

	acme   []string // every acme resource, "type:id", parents first
	globex []string
}

func newDeleteFixture(t *testing.T, g *gatehouse) *deleteFixture {
	t.Helper()
	f := &deleteFixture{
		alice: g.user(t, "alice"), bob: g.user(t, "bob"), carol: g.user(t, "carol"),
		dave: g.user(t, "dave"), erin: g.user(t, "erin"), frank: g.user(t, "frank"),
		billing: g.service(t, "billing"),
	}
	for _, n := range []struct{ resource, parent string }{
		{"org:acme", ""},
		{"workspace:w1", "org:acme"},
		{"workspace:w2", "org:acme"},
		{"project:p1", "workspace:w1"},
		{"project:p2", "workspace:w2"},
		{"document:d1", "project:p1"},
		{"document:d2", "project:p2"},
		{"group:eng", "org:acme"},
		{"group:core", "org:acme"},
	} {
		f.alice.create(t, n.resource, n.parent)
		f.acme = append(f.acme, n.resource)
	}
	for _, gr := range []struct{ resource, subject, role string }{
		{"org:acme", f.bob.ref, "member"},
		{"org:acme", f.frank.ref, "admin"},
		{"org:acme", f.billing.ref, "app"},
		{"org:acme", "group:core", "member"},
		{"workspace:w1", "group:eng", "viewer"},
		{"group:eng", "group:core", "member"},
		{"group:core", f.dave.ref, "member"},
		{"group:eng", f.erin.ref, "admin"},
		{"document:d1", f.erin.ref, "owner"},
		{"document:d2", f.bob.ref, "editor"},
	} {
		f.alice.setRole(t, gr.resource, gr.subject, gr.role)
	}

	for _, n := range []struct{ resource, parent string }{
		{"org:globex", ""},
		{"workspace:gw", "org:globex"},
		{"group:gteam", "org:globex"},
	} {
		f.carol.create(t, n.resource, n.parent)
		f.globex = append(f.globex, n.resource)
	}
	f.carol.setRole(t, "workspace:gw", f.bob.ref, "viewer")
	f.carol.setRole(t, "group:gteam", f.dave.ref, "member")
	return f
}

func (f *deleteFixture) principals() []*caller {
	return []*caller{f.alice, f.bob, f.carol, f.dave, f.erin, f.frank, f.billing}
}

// wantNoAccess fails if any principal holds any permission on resources or
// finds one of them by lookup.
func wantNoAccess(t *testing.T, principals []*caller, resources []string) {
	t.Helper()
	for _, p := range principals {
		for _, perm := range []string{"view", "edit", "delete", "share", "manage", "create"} {
			if got := p.allowedSet(t, "", perm, resources); len(got) != 0 {
				t.Errorf("%s has %q on %v", p.ref, perm, got)
			}
		}
		for _, typ := range resourceTypes {
			for _, res := range p.lookupResources(t, "", "view", typ) {
				if slices.Contains(resources, res) {
					t.Errorf("%s's lookup of %s returns %s", p.ref, typ, res)
				}
			}
		}
	}
}

func TestDeleteOrg(t *testing.T) {
	g := startGatehouse(t)
	f := newDeleteFixture(t, g)
	globexBefore := f.carol.allowedSet(t, "", "manage", f.globex)

	r := f.alice.do(t, http.MethodDelete, resourcePath("org:acme"), nil)
	wantStatus(t, r, http.StatusNoContent)
	if r.header.Get("Gatehouse-Consistency-Token") == "" {
		t.Error("delete returned no consistency token")
	}

	t.Run("no access", func(t *testing.T) {
		wantNoAccess(t, f.principals(), f.acme)
	})

	t.Run("not found", func(t *testing.T) {
		for _, res := range f.acme {
			wantProblem(t, f.alice.do(t, http.MethodGet, resourcePath(res)+"/members", nil), http.StatusNotFound)
			wantProblem(t, f.alice.do(t, http.MethodDelete, resourcePath(res), nil), http.StatusNotFound)
		}
	})

	t.Run("other org intact", func(t *testing.T) {
		if got := f.carol.allowedSet(t, "", "manage", f.globex); !slices.Equal(got, globexBefore) {
			t.Errorf("carol manages %v, want %v", got, globexBefore)
		}
		if !f.bob.allowed(t, "", "view", "workspace:gw") {
			t.Error("bob lost his role in globex")
		}
		if !f.dave.allowed(t, "", "view", "group:gteam") {
			t.Error("dave lost his globex group")
		}
	})

	// Recreating every id must give fresh objects: no role of the deleted
	// ones may come back with the same name.
	t.Run("ids reusable", func(t *testing.T) {
		parents := map[string]string{
			"workspace:w1": "org:acme", "workspace:w2": "org:acme",
			"project:p1": "workspace:w1", "project:p2": "workspace:w2",
			"document:d1": "project:p1", "document:d2": "project:p2",
			"group:eng": "org:acme", "group:core": "org:acme",
		}
		creatorRole := map[string]string{"org": "owner", "workspace": "admin", "project": "admin", "document": "owner", "group": "admin"}
		for _, res := range f.acme {
			f.carol.create(t, res, parents[res])
		}
		for _, res := range f.acme {
			typ, _, _ := strings.Cut(res, ":")
			if got, want := f.carol.members(t, res), []string{f.carol.ref + "=" + creatorRole[typ]}; !slices.Equal(got, want) {
				t.Errorf("members of recreated %s: got %v, want %v", res, got, want)
			}
		}
		others := []*caller{f.alice, f.bob, f.dave, f.erin, f.frank, f.billing}
		wantNoAccess(t, others, f.acme)
	})
}

func TestDeleteWorkspace(t *testing.T) {
	g := startGatehouse(t)
	f := newDeleteFixture(t, g)
	deleted := []string{"workspace:w1", "project:p1", "document:d1"}
	remaining := []string{"org:acme", "workspace:w2", "project:p2", "document:d2", "group:eng", "group:core"}

	wantStatus(t, f.alice.do(t, http.MethodDelete, resourcePath("workspace:w1"), nil), http.StatusNoContent)

	wantNoAccess(t, []*caller{f.alice, f.bob, f.dave, f.erin, f.billing}, deleted)
	if got := f.alice.allowedSet(t, "", "manage", remaining); !slices.Equal(got, slices.Sorted(slices.Values(remaining))) {
		t.Errorf("alice manages %v after the delete, want %v", got, remaining)
	}
	if !f.bob.allowed(t, "", "edit", "document:d2") {
		t.Error("bob lost his role on document:d2")
	}
	if got := f.alice.members(t, "group:eng"); !slices.Equal(got, []string{"group:core=member", f.alice.ref + "=admin", f.erin.ref + "=admin"}) {
		t.Errorf("members of group:eng: %v", got)
	}

	// The same ids under the other workspace start without the old roles:
	// erin owned document:d1, and group:eng viewed workspace:w1.
	f.bob.create(t, "workspace:w1", "org:acme")
	f.bob.create(t, "project:p1", "workspace:w1")
	f.bob.create(t, "document:d1", "project:p1")
	wantNoAccess(t, []*caller{f.dave, f.erin}, deleted)
}
