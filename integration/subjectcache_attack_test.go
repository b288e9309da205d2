package integration

// The tests in this file attack, through the HTTP API, the check results
// keyed by an org's state for one principal. Each write that names one
// principal (roles, group membership, grants, link redemption) is made on
// one instance while the other serves warm results about every subject.
// Every check after the write must reflect it.

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
)

// scProbe is one check that a caller sends to the reading instance. An
// empty subject means the caller itself.
type scProbe struct {
	by                            *caller
	subject, permission, resource string
}

func (p scProbe) String() string {
	return fmt.Sprintf("%s asking %q %s %s", p.by.ref, p.subject, p.permission, p.resource)
}

func TestAttackSubjectStateAPI(t *testing.T) {
	run := func(t *testing.T, writer, reader *gatehouse) {
		alice := writer.user(t, "alice")
		users := map[string]*caller{}
		for _, n := range []string{"bob", "carol", "dave", "erin", "frank"} {
			users[n] = reader.user(t, n)
		}
		billing := reader.service(t, "billing")
		ops := reader.service(t, "ops")
		for _, n := range []struct{ resource, parent string }{
			{"org:acme", ""}, {"workspace:w1", "org:acme"}, {"project:p1", "workspace:w1"},
			{"document:d1", "project:p1"}, {"group:eng", "org:acme"}, {"group:outer", "org:acme"},
		} {
			alice.create(t, n.resource, n.parent)
		}
		alice.setRole(t, "org:acme", billing.ref, "app")
		alice.setRole(t, "group:outer", "group:eng", "member")
		alice.setRole(t, "document:d1", "group:outer", "viewer")

		want := map[scProbe]bool{}
		for n, u := range users {
			want[scProbe{u, "", "view", "document:d1"}] = false
			want[scProbe{u, "", "edit", "document:d1"}] = false
			want[scProbe{billing, users[n].ref, "view", "document:d1"}] = false
		}
		want[scProbe{ops, "", "view", "document:d1"}] = false
		want[scProbe{billing, "group:eng", "view", "document:d1"}] = true
		want[scProbe{billing, "", "view", "document:d1"}] = true
		set := func(who *caller, permission string, v bool) {
			want[scProbe{who, "", permission, "document:d1"}] = v
			if who.ref[:5] == "user:" {
				want[scProbe{billing, who.ref, permission, "document:d1"}] = v
			}
		}
		verify := func(when string) {
			t.Helper()
			for p, v := range want {
				if p.permission != "view" && p.by == billing {
					continue
				}
				for i := range 2 { // the second comes from the cache
					if got := p.by.allowed(t, p.subject, p.permission, p.resource); got != v {
						t.Errorf("%s: %s = %v (try %d), want %v", when, p, got, i, v)
						break
					}
				}
			}
			// Bulk checks and lookups, keyed by the whole state, agree.
			for p, v := range want {
				if p.subject != "" || p.by == billing || p.permission != "view" {
					continue
				}
				if got := len(billing.allowedSet(t, p.by.ref, "view", []string{p.resource})) == 1; got != v {
					t.Errorf("%s: billing's bulk check of %s = %v, want %v", when, p, got, v)
				}
				if got := slices.Contains(p.by.lookupResources(t, "", "view", "document"), p.resource); got != v {
					t.Errorf("%s: lookup by %s finds %s = %v, want %v", when, p.by.ref, p.resource, got, v)
				}
			}
		}
		verify("start")

		alice.setRole(t, "group:eng", users["bob"].ref, "member")
		set(users["bob"], "view", true)
		verify("bob joined eng")

		carolGrant := alice.grant(t, map[string]any{"resource": "document:d1", "subject": users["carol"].ref, "role": "editor", "duration": "1h"})
		set(users["carol"], "view", true)
		set(users["carol"], "edit", true)
		verify("carol was granted editor")

		daveGrant := alice.grant(t, map[string]any{"resource": "group:eng", "subject": users["dave"].ref, "role": "member", "duration": "1h"})
		set(users["dave"], "view", true)
		verify("dave was granted membership of eng")

		link := alice.createLink(t, map[string]any{"resource": "document:d1", "role": "editor", "audience": "anyone"})
		erinOnWriter := writer.user(t, "erin")
		wantStatus(t, erinOnWriter.redeem(t, link.Token), http.StatusOK)
		set(users["erin"], "view", true)
		set(users["erin"], "edit", true)
		verify("erin redeemed an editor link")

		alice.setRole(t, "org:acme", ops.ref, "app")
		want[scProbe{ops, "", "view", "document:d1"}] = true
		verify("ops got the app role")

		alice.setRole(t, "workspace:w1", users["frank"].ref, "editor")
		set(users["frank"], "view", true)
		set(users["frank"], "edit", true)
		verify("frank became a workspace editor")

		alice.revokeGrant(t, carolGrant.ID)
		set(users["carol"], "view", false)
		set(users["carol"], "edit", false)
		verify("carol's grant was revoked")

		alice.revokeGrant(t, daveGrant.ID)
		set(users["dave"], "view", false)
		verify("dave's grant was revoked")

		wantStatus(t, alice.do(t, http.MethodDelete, "/v1/links/"+link.ID, nil), http.StatusNoContent)
		set(users["erin"], "view", false)
		set(users["erin"], "edit", false)
		verify("erin's link was revoked")

		alice.removeRole(t, "org:acme", ops.ref)
		want[scProbe{ops, "", "view", "document:d1"}] = false
		verify("ops lost the app role")

		alice.setRole(t, "workspace:w1", users["frank"].ref, "viewer")
		set(users["frank"], "edit", false)
		verify("frank became a workspace viewer")

		alice.grant(t, map[string]any{"resource": "document:d1", "subject": "group:eng", "role": "editor", "duration": "1h"})
		set(users["bob"], "edit", true)
		verify("eng was granted editor")

		alice.removeRole(t, "group:eng", users["bob"].ref)
		set(users["bob"], "view", false)
		set(users["bob"], "edit", false)
		verify("bob left eng")

		// A short grant to bob ends by itself, through the scheduler of
		// either instance, while the reader's cache is warm.
		short := alice.grant(t, map[string]any{"resource": "document:d1", "subject": users["bob"].ref, "role": "viewer", "duration": "3s"})
		if _, late := grWantEnd(t, users["bob"], "", "view", "document:d1", short.ExpiresAt); late == 0 {
			t.Error("no check ran after the end of bob's short grant")
		}
		if billing.allowed(t, users["bob"].ref, "view", "document:d1") {
			t.Error("billing sees bob view document:d1 after his grant ended")
		}
	}
	t.Run("memory", func(t *testing.T) {
		g := grStart(t, "")
		run(t, g, g)
	})
	t.Run("postgres two instances", func(t *testing.T) {
		dbURL := pgtest.NewDatabase(t)
		run(t, grStart(t, dbURL), grStart(t, dbURL))
	})
}
