package integration

// The tests in this file attack Gatehouse's caches end to end: the check
// and lookup result cache keyed by datastore state, and the cache of
// verified tokens. Each test warms a cache first and then changes what the
// cached entry describes: a role, a group membership, a resource, a share
// link, a token. The result after the change must reflect it, on the
// instance that made the change and on another one.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"

	"github.com/gatehouse-authz/gatehouse/internal/config"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
)

// caForEachDatastore runs test on a fresh memory server and on a fresh
// PostgreSQL server.
func caForEachDatastore(t *testing.T, test func(t *testing.T, g *gatehouse)) {
	t.Run("memory", func(t *testing.T) { test(t, grStart(t, "")) })
	t.Run("postgres", func(t *testing.T) { test(t, grStart(t, pgtest.NewDatabase(t))) })
}

// caCacheHits returns the result cache hits that g's /metrics reports.
func caCacheHits(t *testing.T, g *gatehouse) int {
	t.Helper()
	r := g.send(t, request{Method: http.MethodGet, Path: "/metrics"})
	wantStatus(t, r, http.StatusOK)
	scanner := bufio.NewScanner(strings.NewReader(string(r.body)))
	for scanner.Scan() {
		value, ok := strings.CutPrefix(scanner.Text(), `gatehouse_check_cache_lookups_total{result="hit"} `)
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("parse cache hits %q: %v", value, err)
		}
		return int(n)
	}
	return 0
}

// caWarm repeats check until the result cache of g serves it, so that the
// test after it starts from a cached result. It fails unless every result
// is want.
func caWarm(t *testing.T, g *gatehouse, check func() bool, want bool) {
	t.Helper()
	before := caCacheHits(t, g)
	for range 3 {
		if got := check(); got != want {
			t.Fatalf("warm-up check: got %v, want %v", got, want)
		}
	}
	if caCacheHits(t, g) == before {
		t.Fatal("three identical checks in one datastore state caused no cache hit; the result cache seems off")
	}
}

// caSender returns a client for c that reports errors instead of failing
// the test, so that goroutines may use it.
func caSender(c *caller) *pgClient {
	return &pgClient{base: c.g.url, token: c.token, subject: c.ref}
}

// caProbe is one way of asking whether bob may view document:d1.
type caProbe struct {
	name string
	ask  func(ctx context.Context) (bool, error)
}

// caObservation is the outcome of one probe.
type caObservation struct {
	probe          string
	sent, returned time.Time
	allowed        bool
	err            error
}

// caDecode decodes a 200 response into v, or returns an error naming the
// response.
func caDecode(r pgResponse, err error, v any) error {
	if err != nil {
		return err
	}
	if r.status != http.StatusOK {
		return fmt.Errorf("%v", r)
	}
	return json.Unmarshal(r.body, v)
}

// caProbes returns the probes of bob's view on document:d1 through one
// instance: bob's own check, alice's check about bob (through the inspect
// gate), a bulk check that mixes it with a result that does not change, and
// bob's resource lookup.
func caProbes(alice, bob *pgClient) []caProbe {
	check := func(c *pgClient, subject string) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			body := map[string]string{"permission": "view", "resource": "document:d1"}
			if subject != "" {
				body["subject"] = subject
			}
			var out struct {
				Allowed bool `json:"allowed"`
			}
			r, err := c.send(ctx, http.MethodPost, "/v1/check", body)
			if err := caDecode(r, err, &out); err != nil {
				return false, err
			}
			return out.Allowed, nil
		}
	}
	bulk := func(ctx context.Context) (bool, error) {
		r, err := bob.send(ctx, http.MethodPost, "/v1/check/bulk", map[string]any{"checks": []map[string]string{
			{"permission": "view", "resource": "document:d2"},
			{"permission": "view", "resource": "document:d1"},
			{"permission": "edit", "resource": "document:d1"},
		}})
		var out struct {
			Results []struct {
				Allowed bool            `json:"allowed"`
				Error   json.RawMessage `json:"error"`
			} `json:"results"`
		}
		if err := caDecode(r, err, &out); err != nil {
			return false, err
		}
		if len(out.Results) != 3 || out.Results[0].Error != nil || !out.Results[0].Allowed {
			return false, fmt.Errorf("bulk check: unexpected results %s", r.body)
		}
		return out.Results[1].Allowed || out.Results[2].Allowed, nil
	}
	lookup := func(ctx context.Context) (bool, error) {
		r, err := bob.send(ctx, http.MethodPost, "/v1/lookup/resources", map[string]any{
			"permission": "view", "resource_type": "document", "page_size": 1000,
		})
		var out struct {
			Resources []string `json:"resources"`
		}
		if err := caDecode(r, err, &out); err != nil {
			return false, err
		}
		if !slices.Contains(out.Resources, "document:d2") {
			return false, fmt.Errorf("lookup lost document:d2: %s", r.body)
		}
		return slices.Contains(out.Resources, "document:d1"), nil
	}
	return []caProbe{
		{"own check", check(bob, "")},
		{"check about bob", check(alice, bob.subject)},
		{"bulk check", bulk},
		{"lookup", lookup},
	}
}

// caRepeat calls each of probes in a loop, each in a goroutine of its own,
// while during runs, and returns the errors they returned.
func caRepeat(during func(), probes ...func(ctx context.Context) error) []error {
	var mu sync.Mutex
	var errs []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, probe := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				err := probe(ctx)
				cancel()
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	during()
	close(stop)
	wg.Wait()
	return errs
}

// caObserve runs every probe in a loop while during runs, and returns what
// the probes saw.
func caObserve(probes []caProbe, during func()) []caObservation {
	var mu sync.Mutex
	var seen []caObservation
	loops := make([]func(ctx context.Context) error, len(probes))
	for i, p := range probes {
		loops[i] = func(ctx context.Context) error {
			sent := time.Now()
			allowed, err := p.ask(ctx)
			o := caObservation{probe: p.name, sent: sent, returned: time.Now(), allowed: allowed, err: err}
			mu.Lock()
			seen = append(seen, o)
			mu.Unlock()
			return nil
		}
	}
	caRepeat(during, loops...)
	return seen
}

// caTenant creates org:acme, workspace:w1, project:p1 and documents d1 and
// d2 as alice, and makes bob a viewer of document:d2.
func caTenant(t *testing.T, alice *caller, bob string) {
	t.Helper()
	alice.create(t, "org:acme", "")
	alice.create(t, "workspace:w1", "org:acme")
	alice.create(t, "project:p1", "workspace:w1")
	alice.create(t, "document:d1", "project:p1")
	alice.create(t, "document:d2", "project:p1")
	alice.setRole(t, "document:d2", bob, "viewer")
}

// caRevokeUnderLoad gives bob a role on document:d1 and removes it again,
// rounds times, through writers in turn, while probes ask about it without
// pause. Every probe sent after the removal returned must deny.
func caRevokeUnderLoad(t *testing.T, writers []*caller, bob string, probes []caProbe, rounds int) {
	t.Helper()
	var before, after int
	for round := range rounds {
		writer := writers[round%len(writers)]
		writer.setRole(t, "document:d1", bob, "editor")

		var removed time.Time
		seen := caObserve(probes, func() {
			time.Sleep(20 * time.Millisecond)
			writer.removeRole(t, "document:d1", bob)
			removed = time.Now()
			time.Sleep(40 * time.Millisecond)
		})
		for _, o := range seen {
			switch {
			case o.err != nil:
				t.Errorf("round %d, %s: %v", round, o.probe, o.err)
			case o.sent.After(removed):
				after++
				if o.allowed {
					t.Errorf("round %d, %s: sent %v after the removal returned, allowed; want denied",
						round, o.probe, o.sent.Sub(removed))
				}
			case o.returned.Before(removed) && o.allowed:
				before++
			}
		}
	}
	if before == 0 || after == 0 {
		t.Errorf("%d probes allowed before the removals and %d were sent after them; want some of each", before, after)
	}
	t.Logf("%d probes allowed before the removals, %d sent after them", before, after)
}

func TestCacheRoleRemovedUnderLoad(t *testing.T) {
	caForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := g.user(t, "alice"), g.user(t, "bob")
		caTenant(t, alice, bob.ref)
		caRevokeUnderLoad(t, []*caller{alice}, bob.ref, caProbes(caSender(alice), caSender(bob)), 10)
	})
}

func TestCacheRoleRemovedOnOtherInstance(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	a, b := grStart(t, dbURL), grStart(t, dbURL)
	aliceA, aliceB := a.user(t, "alice"), b.user(t, "alice")
	bobA, bobB := a.user(t, "bob"), b.user(t, "bob")
	caTenant(t, aliceA, bobA.ref)

	probes := append(caProbes(caSender(aliceA), caSender(bobA)), caProbes(caSender(aliceB), caSender(bobB))...)
	for i := range probes {
		probes[i].name += map[bool]string{true: " on A", false: " on B"}[i < len(probes)/2]
	}
	caRevokeUnderLoad(t, []*caller{aliceA, aliceB}, bobA.ref, probes, 10)
}

func TestCacheRecreatedResourceInOtherOrg(t *testing.T) {
	caForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob, carol := g.user(t, "alice"), g.user(t, "bob"), g.user(t, "carol")
		caTenant(t, alice, bob.ref)
		alice.setRole(t, "document:d1", bob.ref, "editor")
		alice.setRole(t, "org:acme", bob.ref, "member")
		carol.create(t, "org:globex", "")
		carol.create(t, "workspace:gw", "org:globex")
		carol.create(t, "project:gp", "workspace:gw")

		caWarm(t, g, func() bool { return bob.allowed(t, "", "edit", "document:d1") }, true)
		caWarm(t, g, func() bool { return alice.allowed(t, bob.ref, "view", "org:acme") }, true)
		if got := bob.lookupResources(t, "", "view", "document"); !slices.Equal(got, []string{"document:d1", "document:d2"}) {
			t.Fatalf("bob's documents before the delete: %v", got)
		}

		// The document comes back in globex, then the whole org does.
		wantStatus(t, alice.do(t, http.MethodDelete, resourcePath("document:d1"), nil), http.StatusNoContent)
		carol.create(t, "document:d1", "project:gp")
		if bob.allowed(t, "", "edit", "document:d1") || bob.allowed(t, "", "view", "document:d1") {
			t.Error("bob reaches the new document:d1 in globex through his role on the deleted one")
		}
		if alice.allowed(t, "", "view", "document:d1") {
			t.Error("alice reaches the new document:d1 in globex")
		}
		if got := bob.lookupResources(t, "", "view", "document"); !slices.Equal(got, []string{"document:d2"}) {
			t.Errorf("bob's documents after document:d1 moved to globex: %v, want [document:d2]", got)
		}

		wantStatus(t, alice.do(t, http.MethodDelete, resourcePath("org:acme"), nil), http.StatusNoContent)
		carol.create(t, "org:acme", "")
		// alice cannot see carol's org, so she may not ask about it.
		wantProblem(t, alice.do(t, http.MethodPost, "/v1/check", checkBody(bob.ref, "view", "org:acme")), http.StatusNotFound)
		if bob.allowed(t, "", "view", "org:acme") || alice.allowed(t, "", "view", "org:acme") {
			t.Error("a member of the deleted org:acme views carol's new one")
		}
		if got := bob.lookupResources(t, "", "view", "org"); len(got) != 0 {
			t.Errorf("bob's orgs after the delete: %v, want none", got)
		}
	})
}

// caNestedGroups creates the tenant of caTenant, in which alice holds every
// role, and gives member view on workspace:w1 through two nested groups:
// member is in group:inner, group:inner in group:outer, and group:outer
// views the workspace.
func caNestedGroups(t *testing.T, alice *caller, member string) {
	t.Helper()
	caTenant(t, alice, alice.ref)
	alice.create(t, "group:outer", "org:acme")
	alice.create(t, "group:inner", "org:acme")
	alice.setRole(t, "workspace:w1", "group:outer", "viewer")
	alice.setRole(t, "group:outer", "group:inner", "member")
	alice.setRole(t, "group:inner", member, "member")
}

func TestCacheNestedGroupChanges(t *testing.T) {
	caForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, dave := g.user(t, "alice"), g.user(t, "dave")
		caNestedGroups(t, alice, dave.ref)

		docs := []string{"document:d1", "document:d2"}
		steps := []struct {
			name        string
			change      func()
			dave, inner bool // whether dave and group:inner view the documents
		}{
			{"dave in inner, inner in outer", func() {}, true, true},
			{"inner removed from outer", func() { alice.removeRole(t, "group:outer", "group:inner") }, false, false},
			{"inner back in outer", func() { alice.setRole(t, "group:outer", "group:inner", "member") }, true, true},
			{"dave removed from inner", func() { alice.removeRole(t, "group:inner", dave.ref) }, false, true},
			{"dave back in inner", func() { alice.setRole(t, "group:inner", dave.ref, "member") }, true, true},
			{"outer's role removed", func() { alice.removeRole(t, "workspace:w1", "group:outer") }, false, false},
		}
		for _, step := range steps {
			step.change()
			caWarm(t, g, func() bool { return dave.allowed(t, "", "view", "document:d1") }, step.dave)
			want := []string{}
			if step.dave {
				want = docs
			}
			if got := dave.allowedSet(t, "", "view", docs); !slices.Equal(got, want) {
				t.Errorf("%s: dave's bulk check views %v, want %v", step.name, got, want)
			}
			if got := dave.lookupResources(t, "", "view", "document"); !slices.Equal(got, want) {
				t.Errorf("%s: dave's lookup finds %v, want %v", step.name, got, want)
			}
			if got := alice.allowed(t, "group:inner", "view", "document:d1"); got != step.inner {
				t.Errorf("%s: group:inner views document:d1: %v, want %v", step.name, got, step.inner)
			}
		}
	})
}

// caPage reads one page of a resource lookup by c about subject ("" for
// c itself) and returns it with the next page token.
func caPage(t *testing.T, c *caller, subject, token string, size int) ([]string, string) {
	t.Helper()
	return c.lookupPage(t, subject, "view", "document", size, token)
}

func TestCacheLookupPagesAfterChange(t *testing.T) {
	caForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := g.user(t, "alice"), g.user(t, "bob")
		caTenant(t, alice, bob.ref)
		for i := 3; i <= 6; i++ {
			doc := fmt.Sprintf("document:d%d", i)
			alice.create(t, doc, "project:p1")
			alice.setRole(t, doc, bob.ref, "viewer")
		}
		alice.setRole(t, "document:d1", bob.ref, "viewer")

		for _, asker := range []struct {
			name    string
			c       *caller
			subject string
		}{{"bob about himself", bob, ""}, {"alice about bob", alice, bob.ref}} {
			t.Run(asker.name, func(t *testing.T) {
				alice.setRole(t, "document:d4", bob.ref, "viewer")
				var first []string
				var token string
				for range 2 {
					first, token = caPage(t, asker.c, asker.subject, "", 2)
				}
				if !slices.Equal(first, []string{"document:d1", "document:d2"}) || token == "" {
					t.Fatalf("page 1: %v, next %q", first, token)
				}

				// Between pages bob loses document:d4.
				alice.removeRole(t, "document:d4", bob.ref)
				second, token := caPage(t, asker.c, asker.subject, token, 2)
				if !slices.Equal(second, []string{"document:d3", "document:d5"}) {
					t.Errorf("page 2 after bob lost document:d4: %v, want [document:d3 document:d5]", second)
				}
				third, token := caPage(t, asker.c, asker.subject, token, 2)
				if !slices.Equal(third, []string{"document:d6"}) || token != "" {
					t.Errorf("page 3: %v, next %q; want [document:d6] and no next page", third, token)
				}
			})
		}
	})
}

// caBulk runs one bulk check as c and returns its decisions, failing on
// any per-check error.
func caBulk(t *testing.T, c *caller, checks []map[string]string) []bool {
	t.Helper()
	return caSender(c).bulkCheck(t, checks)
}

func TestCacheBulkMixesCachedAndFresh(t *testing.T) {
	caForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice, bob := g.user(t, "alice"), g.user(t, "bob")
		caTenant(t, alice, bob.ref)
		alice.create(t, "document:d3", "project:p1")
		alice.setRole(t, "document:d1", bob.ref, "viewer")

		checks := []map[string]string{
			checkBody("", "view", "document:d1"),
			checkBody("", "view", "document:d2"),
			checkBody("", "view", "document:d3"),
			checkBody("", "view", "document:d1"),
			checkBody("", "edit", "document:d2"),
			checkBody(bob.ref, "view", "document:d3"),
		}
		if got, want := caBulk(t, bob, checks), []bool{true, true, false, true, false, false}; !slices.Equal(got, want) {
			t.Fatalf("bulk before the change: %v, want %v", got, want)
		}

		alice.removeRole(t, "document:d1", bob.ref)
		alice.setRole(t, "document:d3", bob.ref, "editor")
		want := []bool{false, true, true, false, false, true}

		// Some items are cached in the new state, the rest are not.
		before := caCacheHits(t, g)
		if !bob.allowed(t, "", "view", "document:d2") || !bob.allowed(t, "", "view", "document:d2") {
			t.Fatal("bob lost view on document:d2")
		}
		if got := caBulk(t, bob, checks); !slices.Equal(got, want) {
			t.Errorf("bulk after the change, partly cached: %v, want %v", got, want)
		}
		if got := caBulk(t, bob, checks); !slices.Equal(got, want) {
			t.Errorf("bulk after the change, all cached: %v, want %v", got, want)
		}
		if caCacheHits(t, g) == before {
			t.Error("no cache hit during the bulk checks")
		}
	})
}

// caCheckToken runs one check as c with the given consistency fields and
// returns its decision and consistency token, failing unless Gatehouse
// responds 200.
func caCheckToken(t *testing.T, c *caller, permission, resource string, consistency map[string]string) (bool, string) {
	t.Helper()
	body := map[string]string{"permission": permission, "resource": resource}
	for k, v := range consistency {
		body[k] = v
	}
	r := c.do(t, http.MethodPost, "/v1/check", body)
	wantStatus(t, r, http.StatusOK)
	var out struct {
		Allowed          bool   `json:"allowed"`
		ConsistencyToken string `json:"consistency_token"`
	}
	decodeJSON(t, r, &out)
	if out.ConsistencyToken == "" {
		t.Fatalf("check %s on %s returned no consistency token", permission, resource)
	}
	return out.Allowed, out.ConsistencyToken
}

// caWantTokenAccepted fails unless every kind of read of c accepts token
// as its consistency token. With want set, the check of view on
// document:d1 must also return *want.
func caWantTokenAccepted(t *testing.T, c *caller, token string, want *bool) {
	t.Helper()
	at := map[string]string{"consistency_token": token}
	if got, _ := caCheckToken(t, c, "view", "document:d1", at); want != nil && got != *want {
		t.Errorf("check at the token: %v, want %v", got, *want)
	}
	r := c.do(t, http.MethodPost, "/v1/check/bulk", map[string]any{
		"checks": []map[string]string{checkBody("", "view", "document:d1")}, "consistency_token": token,
	})
	wantStatus(t, r, http.StatusOK)
	if want != nil && !strings.Contains(string(r.body), fmt.Sprintf(`"allowed":%v`, *want)) {
		t.Errorf("bulk check at the token: %s, want allowed %v", r.body, *want)
	}
	wantStatus(t, c.do(t, http.MethodPost, "/v1/lookup/resources", map[string]any{
		"permission": "view", "resource_type": "document", "consistency_token": token,
	}), http.StatusOK)
	wantStatus(t, c.do(t, http.MethodPost, "/v1/lookup/subjects", map[string]any{
		"resource": "document:d2", "permission": "view", "subject_type": "user", "consistency_token": token,
	}), http.StatusOK)
}

func TestCacheHitTokensAreValid(t *testing.T) {
	caForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice := g.user(t, "alice")
		caTenant(t, alice, alice.ref)

		// A minimize_latency token may name a revision from before the
		// tenant existed, so only its acceptance is checked.
		allowed := true
		for _, tc := range []struct {
			consistency map[string]string
			want        *bool
		}{{map[string]string{}, &allowed}, {map[string]string{"consistency": "minimize_latency"}, nil}} {
			before := caCacheHits(t, g)
			_, missToken := caCheckToken(t, alice, "view", "document:d1", tc.consistency)
			_, hitToken := caCheckToken(t, alice, "view", "document:d1", tc.consistency)
			if caCacheHits(t, g) == before {
				t.Fatalf("consistency %v: the second of two checks was no cache hit", tc.consistency)
			}
			caWantTokenAccepted(t, alice, missToken, tc.want)
			caWantTokenAccepted(t, alice, hitToken, tc.want)
		}
	})
}

func TestCacheHitTokensOnOtherInstance(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	a, b := grStart(t, dbURL), grStart(t, dbURL)
	aliceA, aliceB := a.user(t, "alice"), b.user(t, "alice")
	caTenant(t, aliceA, aliceA.ref)

	caWarm(t, a, func() bool { return aliceA.allowed(t, "", "view", "document:d1") }, true)
	_, hitToken := caCheckToken(t, aliceA, "view", "document:d1", nil)
	allowed := true
	caWantTokenAccepted(t, aliceB, hitToken, &allowed)

	// A write on B, then a hit on A in the new state: B accepts A's
	// token and A accepts B's.
	removed := aliceB.do(t, http.MethodDelete, memberPath("document:d1", aliceA.ref), nil)
	wantStatus(t, removed, http.StatusNoContent)
	caWarm(t, a, func() bool { return aliceA.allowed(t, "", "view", "document:d1") }, true)
	_, hitToken = caCheckToken(t, aliceA, "view", "document:d1", nil)
	caWantTokenAccepted(t, aliceB, hitToken, &allowed)
	caWantTokenAccepted(t, aliceA, removed.header.Get("Gatehouse-Consistency-Token"), &allowed)
}

func TestCacheLinkRevokedWhileCached(t *testing.T) {
	caForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		l := f.alice.createLink(t, map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone"})
		wantStatus(t, f.zed.redeem(t, l.Token), http.StatusOK)
		caWarm(t, g, func() bool { return f.billing.anonAllowed(t, l.Token, "view", "document:d1") }, true)
		caWarm(t, g, func() bool { return f.zed.allowed(t, "", "view", "document:d1") }, true)
		if got := f.zed.lookupResources(t, "", "view", "document"); !slices.Equal(got, []string{"document:d1"}) {
			t.Fatalf("zed's documents through the link: %v", got)
		}

		wantStatus(t, f.alice.do(t, http.MethodDelete, "/v1/links/"+l.ID, nil), http.StatusNoContent)
		if f.billing.anonAllowed(t, l.Token, "view", "document:d1") {
			t.Error("anonymous check allowed right after the link was revoked")
		}
		if f.zed.allowed(t, "", "view", "document:d1") {
			t.Error("holder views document:d1 right after the link was revoked")
		}
		if got := f.zed.lookupResources(t, "", "view", "document"); len(got) != 0 {
			t.Errorf("holder's lookup after the revocation: %v, want none", got)
		}
	})
}

func TestCacheLinkExpiresWhileCached(t *testing.T) {
	caForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		end := time.Now().Add(2500 * time.Millisecond).UTC()
		l := f.alice.createLink(t, map[string]any{
			"resource": "document:d1", "role": "viewer", "audience": "anyone", "expires_at": end.Format(time.RFC3339Nano),
		})
		wantStatus(t, f.zed.redeem(t, l.Token), http.StatusOK)
		caWarm(t, g, func() bool { return f.billing.anonAllowed(t, l.Token, "view", "document:d1") }, true)
		caWarm(t, g, func() bool { return f.zed.allowed(t, "", "view", "document:d1") }, true)

		// The holder's checks keep the cache warm until after the end.
		if _, late := grWantEnd(t, f.zed, f.zed.ref, "view", "document:d1", end); late == 0 {
			t.Error("no check was sent after the end")
		}
		if f.billing.anonAllowed(t, l.Token, "view", "document:d1") {
			t.Error("anonymous check allowed after the link expired")
		}
	})
}

// caMeStatus sends GET /v1/me with token from a goroutine and returns the
// status code.
func caMeStatus(ctx context.Context, g *gatehouse, token string) (int, error) {
	c := &pgClient{base: g.url, token: token}
	r, err := c.send(ctx, http.MethodGet, "/v1/me", nil)
	return r.status, err
}

func TestCacheStaleTokenUnderLoad(t *testing.T) {
	exForEachDatastore(t, func(t *testing.T, dbURL string) {
		g := exStart(t, exOptions{postgresURL: dbURL})
		carol := g.user(t, "carol")
		carol.create(t, "org:acme", "")
		alice := g.exUser(t, "alice")

		for round := range 5 {
			exWantAccepted(t, g, alice.token, alice.ref, g.url)
			type sample struct {
				sent   time.Time
				status int
			}
			var mu sync.Mutex
			var samples []sample
			me := func(ctx context.Context) error {
				sent := time.Now()
				status, err := caMeStatus(ctx, g, alice.token)
				mu.Lock()
				samples = append(samples, sample{sent, status})
				mu.Unlock()
				return err
			}
			var changed time.Time
			errs := caRepeat(func() {
				time.Sleep(20 * time.Millisecond)
				if round%2 == 0 {
					carol.setRole(t, "org:acme", alice.ref, "member")
				} else {
					carol.removeRole(t, "org:acme", alice.ref)
				}
				changed = time.Now()
				time.Sleep(40 * time.Millisecond)
			}, me, me, me)
			for _, err := range errs {
				t.Errorf("round %d: %v", round, err)
			}

			var after int
			for _, s := range samples {
				if s.sent.After(changed) && s.status != 0 {
					after++
					if s.status != http.StatusUnauthorized {
						t.Errorf("round %d: request sent %v after the change returned got %d, want 401", round, s.sent.Sub(changed), s.status)
					}
				}
			}
			if after == 0 {
				t.Errorf("round %d: no request was sent after the change", round)
			}
			alice.reexchange(t)
		}
	})
}

func TestCacheStaleTokenOnOtherInstance(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	a := exStart(t, exOptions{postgresURL: dbURL})
	b := exStart(t, exOptions{postgresURL: dbURL, tokenIssuer: a.url})
	alice := a.exUser(t, "alice")
	for range 3 {
		exWantAccepted(t, b, alice.token, alice.ref, a.url)
	}

	r := alice.g.send(t, request{Method: http.MethodPost, Path: exPrincipalPath(alice.ref) + "/revoke-sessions", Token: alice.idpToken})
	wantStatus(t, r, http.StatusOK)
	exWantRejected(t, a, alice.token)
	exPollRejected(t, b, alice.token, exCrossInstance)

	// Once B has rejected the token, it never accepts it again.
	for range 20 {
		exWantRejected(t, b, alice.token)
	}
}

// caAlterChar returns token with the character at index i replaced by
// another base64url character.
func caAlterChar(token string, i int) string {
	replacement := byte('A')
	if token[i] == 'A' {
		replacement = 'B'
	}
	return token[:i] + string(replacement) + token[i+1:]
}

func TestCacheTokenOneByteOff(t *testing.T) {
	iss := newTestIssuer(t)
	g := exStart(t, exOptions{issuers: []config.Issuer{iss.config()}})
	alice := g.exUser(t, "alice")
	for _, tc := range []struct {
		name, token, principal string
	}{
		{"dev token", alice.idpToken, alice.ref},
		{"gatehouse token", alice.token, alice.ref},
		{"external token", iss.token(t, "alice", nil), "user:test|alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 3 {
				wantPrincipal(t, g, tc.token, tc.principal)
			}
			header, rest, _ := strings.Cut(tc.token, ".")
			payload, signature, _ := strings.Cut(rest, ".")
			variants := map[string]string{
				"header changed":    caAlterChar(tc.token, len(header)/2),
				"payload changed":   caAlterChar(tc.token, len(header)+1+len(payload)/2),
				"signature changed": caAlterChar(tc.token, len(header)+len(payload)+2+len(signature)/2),
				"character added":   tc.token + "A",
				"character removed": tc.token[:len(tc.token)-1],
				"dot added":         tc.token + ".",
				"upper case":        strings.ToUpper(tc.token),
			}
			for name, variant := range variants {
				r := getMe(t, g, variant)
				if r.status != http.StatusUnauthorized {
					t.Errorf("%s: got %v, want 401", name, r)
				}
			}
			wantPrincipal(t, g, tc.token, tc.principal)
		})
	}
}

func TestCacheTokenExpiresWhileCached(t *testing.T) {
	iss := newTestIssuer(t)
	g := startGatehouse(t, iss.config())
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second)
	token := iss.token(t, "alice", func(c map[string]any) { c["exp"] = exp.Unix() })

	var before, after int
	for time.Now().Before(exp.Add(300 * time.Millisecond)) {
		sent := time.Now()
		r := getMe(t, g, token)
		returned := time.Now()
		switch {
		case sent.After(exp) || sent.Equal(exp):
			after++
			if r.status != http.StatusUnauthorized {
				t.Fatalf("request sent %v after exp: got %v, want 401", sent.Sub(exp), r)
			}
		case returned.Before(exp):
			before++
			if r.status != http.StatusOK {
				t.Fatalf("request returned %v before exp: got %v, want 200", exp.Sub(returned), r)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if before < 3 || after < 3 {
		t.Errorf("%d requests before exp and %d after it, want at least 3 of each", before, after)
	}
}

func TestCacheTokenPrincipalsKeptApart(t *testing.T) {
	iss := newTestIssuer(t)
	g := exStart(t, exOptions{issuers: []config.Issuer{iss.config()}})
	type identity struct {
		token, principal, issuer string
	}
	var ids []identity
	for i := range 8 {
		name := fmt.Sprintf("u%d", i)
		user := g.user(t, name)
		ids = append(ids,
			identity{user.token, user.ref, g.srv.DevIssuer().Config().Issuer},
			identity{g.service(t, name).token, "service:dev|" + name, g.srv.DevIssuer().Config().Issuer},
			identity{iss.token(t, name, nil), "user:test|" + name, iss.url},
			identity{g.exExchange(t, user.token), user.ref, g.url},
		)
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(ids)*20)
	for worker := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range len(ids) * 5 {
				id := ids[(n*7+worker*3)%len(ids)]
				c := &pgClient{base: g.url, token: id.token}
				r, err := c.send(context.Background(), http.MethodGet, "/v1/me", nil)
				var got me
				if err := caDecode(r, err, &got); err != nil {
					errs <- err
					continue
				}
				if got.Principal != id.principal || got.Issuer != id.issuer {
					errs <- fmt.Errorf("token of %s at %s: GET /v1/me returned %s at %s", id.principal, id.issuer, got.Principal, got.Issuer)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCacheChangesSeenOnOtherInstance(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	a, b := grStart(t, dbURL), grStart(t, dbURL)
	aliceA, aliceB := a.user(t, "alice"), b.user(t, "alice")
	daveB := b.user(t, "dave")
	carolA := a.user(t, "carol")
	billingB := b.service(t, "billing")
	caNestedGroups(t, aliceA, daveB.ref)
	carolA.create(t, "org:globex", "")
	carolA.create(t, "workspace:gw", "org:globex")
	carolA.create(t, "project:gp", "workspace:gw")
	daveViews := func() bool { return daveB.allowed(t, "", "view", "document:d1") }

	// Nested group membership changed on A, read on B.
	caWarm(t, b, daveViews, true)
	aliceA.removeRole(t, "group:outer", "group:inner")
	if daveViews() {
		t.Error("B: dave views document:d1 after A removed group:inner from group:outer")
	}
	aliceA.setRole(t, "group:outer", "group:inner", "member")
	caWarm(t, b, daveViews, true)

	// A grant revoked on A, read on B.
	grant := aliceA.grant(t, map[string]any{"resource": "document:d1", "subject": daveB.ref, "role": "editor", "duration": "1h"})
	caWarm(t, b, func() bool { return daveB.allowed(t, "", "edit", "document:d1") }, true)
	aliceA.revokeGrant(t, grant.ID)
	if daveB.allowed(t, "", "edit", "document:d1") {
		t.Error("B: dave edits document:d1 after A revoked his grant")
	}

	// A share link revoked on A, read on B.
	l := aliceA.createLink(t, map[string]any{"resource": "document:d2", "role": "viewer", "audience": "anyone"})
	caWarm(t, b, func() bool { return billingB.anonAllowed(t, l.Token, "view", "document:d2") }, true)
	wantStatus(t, aliceA.do(t, http.MethodDelete, "/v1/links/"+l.ID, nil), http.StatusNoContent)
	if billingB.anonAllowed(t, l.Token, "view", "document:d2") {
		t.Error("B: anonymous check allowed after A revoked the link")
	}

	// The document deleted on A and created again in globex.
	wantStatus(t, aliceA.do(t, http.MethodDelete, resourcePath("document:d1"), nil), http.StatusNoContent)
	carolA.create(t, "document:d1", "project:gp")
	if daveViews() || aliceB.allowed(t, "", "view", "document:d1") {
		t.Error("B: acme's principals view the new document:d1 in globex")
	}
	if got := daveB.lookupResources(t, "", "view", "document"); !slices.Equal(got, []string{"document:d2"}) {
		t.Errorf("B: dave's documents after document:d1 moved to globex: %v, want [document:d2]", got)
	}
}

// caPoisonDocs is how many documents TestCacheNoStaleResultAfterRemoval
// spreads its checks over, so that every round has many distinct first
// checks after the removal.
const caPoisonDocs = 40

// TestCacheNoStaleResultAfterRemoval removes a role while checks run and,
// once everything has finished, checks again: no result from before the
// removal may remain in the result cache. It runs rounds for a few seconds
// and stops at the first stale result.
func TestCacheNoStaleResultAfterRemoval(t *testing.T) {
	g := grStart(t, pgtest.NewDatabase(t))
	alice, bob := g.user(t, "alice"), g.user(t, "bob")
	alice.create(t, "org:acme", "")
	alice.create(t, "workspace:w1", "org:acme")
	alice.create(t, "project:p1", "workspace:w1")
	var checks []map[string]string
	for i := range caPoisonDocs {
		doc := fmt.Sprintf("document:d%d", i)
		alice.create(t, doc, "project:p1")
		checks = append(checks, checkBody("", "view", doc), checkBody("", "edit", doc))
	}
	sender := caSender(bob)
	probe := func(ctx context.Context) error {
		r, err := sender.send(ctx, http.MethodPost, "/v1/check", checks[rand.IntN(len(checks))])
		if err == nil && r.status != http.StatusOK {
			err = fmt.Errorf("%v", r)
		}
		return err
	}

	deadline := time.Now().Add(4 * time.Second)
	for round := 0; time.Now().Before(deadline); round++ {
		alice.setRole(t, "project:p1", bob.ref, "editor")
		errs := caRepeat(func() {
			time.Sleep(10 * time.Millisecond)
			alice.removeRole(t, "project:p1", bob.ref)
			time.Sleep(10 * time.Millisecond)
		}, slices.Repeat([]func(context.Context) error{probe}, 12)...)
		for _, err := range errs {
			t.Errorf("round %d: %v", round, err)
		}

		// Nothing runs and nothing is written any more, so every result
		// must reflect the removal.
		var stale []string
		for i, allowed := range caBulk(t, bob, checks) {
			if allowed {
				stale = append(stale, checks[i]["permission"]+" on "+checks[i]["resource"])
			}
		}
		if len(stale) > 0 {
			t.Fatalf("round %d: once the removal had returned and every check had finished, bob still holds %v", round, stale)
		}
	}
}

// caReadAfterWriteRounds is how many times TestReadAfterWriteUnderLoad
// writes and deletes the relationship it reads.
const caReadAfterWriteRounds = 100

// TestReadAfterWriteUnderLoad reads one relationship fully consistently
// through the server's engine, without the result cache, in several
// goroutines while the relationship is written and deleted. A read that
// was sent after a delete returned, and returned before the next write
// began, must not find it.
func TestReadAfterWriteUnderLoad(t *testing.T) {
	caForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		alice := g.user(t, "alice")
		caTenant(t, alice, alice.ref)
		e := g.srv.Engine()
		filter := &v1.RelationshipFilter{ResourceType: "document", OptionalResourceId: "d1", OptionalRelation: "viewer"}
		viewer := []*v1.RelationshipUpdate{{
			Operation: v1.RelationshipUpdate_OPERATION_TOUCH,
			Relationship: &v1.Relationship{
				Resource: &v1.ObjectReference{ObjectType: "document", ObjectId: "d1"},
				Relation: "viewer",
				Subject:  &v1.SubjectReference{Object: &v1.ObjectReference{ObjectType: "user", ObjectId: "dev|bob"}},
			},
		}}

		type read struct {
			sent, returned time.Time
			found          bool
		}
		var mu sync.Mutex
		var reads []read
		reader := func(ctx context.Context) error {
			sent := time.Now()
			rels, _, err := e.Read(ctx, filter, 1, nil)
			returned := time.Now()
			mu.Lock()
			reads = append(reads, read{sent, returned, len(rels) > 0})
			mu.Unlock()
			return err
		}

		// Each gap runs from a delete's return to the next write's start,
		// so the relationship does not exist at any time within it.
		type gap struct{ from, to time.Time }
		var gaps []gap
		errs := caRepeat(func() {
			for range caReadAfterWriteRounds {
				if _, err := e.Write(context.Background(), viewer, nil); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				time.Sleep(2 * time.Millisecond)
				if _, err := e.DeleteMatching(context.Background(), filter, nil); err != nil {
					t.Errorf("delete: %v", err)
					return
				}
				from := time.Now()
				time.Sleep(8 * time.Millisecond)
				gaps = append(gaps, gap{from, time.Now()})
			}
		}, slices.Repeat([]func(context.Context) error{reader}, 8)...)
		for _, err := range errs {
			t.Errorf("read: %v", err)
		}

		var inGaps, stale int
		for _, r := range reads {
			for _, g := range gaps {
				if r.sent.After(g.from) && r.returned.Before(g.to) {
					inGaps++
					if r.found {
						stale++
					}
				}
			}
		}
		if inGaps == 0 {
			t.Fatal("no read ran between a delete's return and the next write")
		}
		if stale > 0 {
			t.Errorf("%d of %d fully consistent reads sent after a delete returned still found the deleted relationship", stale, inGaps)
		}
	})
}
