package engine_test

import (
	"log/slog"
	"testing"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/store"
	"github.com/gatehouse-authz/gatehouse/schema"
)

// instances are two engines on one datastore, as two Gatehouse instances
// share one PostgreSQL database, with the first one's metrics.
type instances struct {
	a, b    *engine.Engine
	metrics *prometheus.Registry
	url     string // the PostgreSQL database, if any
}

func startEngine(tb testing.TB, cfg engine.Config) *engine.Engine {
	tb.Helper()
	cfg.Schema = schema.Text
	cfg.Logger = slog.New(slog.DiscardHandler)
	e, err := engine.New(tb.Context(), cfg)
	if err != nil {
		tb.Fatalf("start engine: %v", err)
	}
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("close engine: %v", err)
		}
	})
	return e
}

func memoryInstances(tb testing.TB, cacheSize int) instances {
	reg := prometheus.NewRegistry()
	a := startEngine(tb, engine.Config{Registry: reg, ResultCacheBytes: cacheSize})
	b := startEngine(tb, engine.Config{Datastore: a.Datastore()})
	return instances{a: a, b: b, metrics: reg}
}

func postgresInstances(tb testing.TB) instances {
	url := pgtest.NewDatabase(tb)
	if err := store.Migrate(tb.Context(), store.Config{URL: url}, slog.New(slog.DiscardHandler)); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	open := func() engine.Config {
		ds, err := engine.NewPostgresDatastore(tb.Context(), engine.PostgresConfig{URL: url})
		if err != nil {
			tb.Fatalf("open datastore: %v", err)
		}
		tb.Cleanup(func() { ds.Close() }) // runs after the engine's Close
		return engine.Config{Datastore: ds, PostgresURL: url}
	}
	reg := prometheus.NewRegistry()
	cfgA := open()
	cfgA.Registry = reg
	return instances{a: startEngine(tb, cfgA), b: startEngine(tb, open()), metrics: reg, url: url}
}

func cacheLookups(tb testing.TB, reg *prometheus.Registry, result string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != "gatehouse_check_cache_lookups_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestCheckCacheFollowsEveryWrite checks that cached results are served,
// and never after a write on another instance has changed the result.
func TestCheckCacheFollowsEveryWrite(t *testing.T) {
	for name, start := range map[string]func(testing.TB) instances{
		"memory":   func(tb testing.TB) instances { return memoryInstances(tb, 0) },
		"postgres": postgresInstances,
	} {
		t.Run(name, func(t *testing.T) {
			in := start(t)
			seed(t, in.a)
			req := engine.CheckRequest{Resource: doc, Permission: "edit", Subject: alice}

			var token string
			for i := range 3 {
				d, err := in.a.Check(t.Context(), req)
				if err != nil {
					t.Fatalf("check %d: %v", i, err)
				}
				if !d.Allowed || d.Token == "" {
					t.Fatalf("check %d = %+v, want allowed with a token", i, d)
				}
				token = d.Token
			}
			if hits := cacheLookups(t, in.metrics, "hit"); hits < 2 {
				t.Errorf("cache hits = %v after three identical checks, want at least 2", hits)
			}

			// A token from a cached result is a valid consistency token.
			if _, err := in.a.Check(t.Context(), engine.CheckRequest{
				Resource: doc, Permission: "edit", Subject: alice, Consistency: engine.Consistency{Token: token},
			}); err != nil {
				t.Fatalf("check with the token of a cached result: %v", err)
			}

			// The other instance removes alice's role; the next fully
			// consistent check on the first must see it.
			if _, err := in.b.DeleteMatching(t.Context(), &v1.RelationshipFilter{
				ResourceType: "org", OptionalResourceId: acme.ID, OptionalRelation: "owner",
			}, nil); err != nil {
				t.Fatalf("delete role: %v", err)
			}
			d, err := in.a.Check(t.Context(), req)
			if err != nil {
				t.Fatalf("check after the write: %v", err)
			}
			if d.Allowed {
				t.Fatal("a cached allow was served after the role was removed")
			}
			bulk, err := in.a.CheckBulk(t.Context(), []engine.CheckRequest{req, req}, engine.Consistency{})
			if err != nil {
				t.Fatalf("bulk check after the write: %v", err)
			}
			for i, r := range bulk {
				if r.Err != nil || r.Decision.Allowed {
					t.Errorf("bulk item %d after the write = %+v, want a deny", i, r)
				}
			}

			// And the role coming back is seen at once too.
			if _, err := in.b.Write(t.Context(), []*v1.RelationshipUpdate{touch(acme, "owner", alice)}, nil); err != nil {
				t.Fatalf("restore role: %v", err)
			}
			bulk, err = in.a.CheckBulk(t.Context(), []engine.CheckRequest{req}, engine.Consistency{})
			if err != nil || bulk[0].Err != nil || !bulk[0].Decision.Allowed {
				t.Fatalf("bulk check after the role came back = %+v, %v; want allowed", bulk, err)
			}
			if d, err := in.a.Check(t.Context(), req); err != nil || !d.Allowed {
				t.Fatalf("check after the role came back = %+v, %v; want allowed", d, err)
			}
		})
	}
}

func TestCheckCacheOff(t *testing.T) {
	in := memoryInstances(t, -1)
	seed(t, in.a)
	req := engine.CheckRequest{Resource: doc, Permission: "edit", Subject: alice}
	for range 3 {
		if d, err := in.a.Check(t.Context(), req); err != nil || !d.Allowed {
			t.Fatalf("check = %+v, %v; want allowed", d, err)
		}
	}
	if got := cacheLookups(t, in.metrics, "hit") + cacheLookups(t, in.metrics, "miss"); got != 0 {
		t.Errorf("cache lookups = %v with the cache off, want 0", got)
	}
}

func TestCheckCacheMinimizeLatency(t *testing.T) {
	in := memoryInstances(t, 0)
	seed(t, in.a)
	req := engine.CheckRequest{Resource: doc, Permission: "edit", Subject: alice, Consistency: engine.Consistency{MinimizeLatency: true}}
	for i := range 3 {
		d, err := in.a.Check(t.Context(), req)
		if err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
		if !d.Allowed || d.Token == "" {
			t.Fatalf("check %d = %+v, want allowed with a token", i, d)
		}
	}
	if hits := cacheLookups(t, in.metrics, "hit"); hits != 2 {
		t.Errorf("cache hits = %v for 3 minimize_latency checks, want 2", hits)
	}
}

// TestCheckCacheIgnoresOtherWrites checks that on PostgreSQL, writes that
// change no relationship, such as Gatehouse's own rows or another
// database's, leave cached results in use.
func TestCheckCacheIgnoresOtherWrites(t *testing.T) {
	in := postgresInstances(t)
	seed(t, in.a)
	req := engine.CheckRequest{Resource: doc, Permission: "edit", Subject: alice}
	if d, err := in.a.Check(t.Context(), req); err != nil || !d.Allowed {
		t.Fatalf("first check = %+v, %v; want allowed", d, err)
	}

	st, err := store.Open(t.Context(), store.Config{URL: in.url})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer st.Close()
	for i := range 3 {
		if _, err := st.Pool.Exec(t.Context(), "CREATE TEMPORARY TABLE IF NOT EXISTS unrelated (n int); INSERT INTO unrelated VALUES (1)"); err != nil {
			t.Fatalf("unrelated write %d: %v", i, err)
		}
		before := cacheLookups(t, in.metrics, "hit")
		if d, err := in.a.Check(t.Context(), req); err != nil || !d.Allowed {
			t.Fatalf("check after unrelated write %d = %+v, %v; want allowed", i, d, err)
		}
		if after := cacheLookups(t, in.metrics, "hit"); after != before+1 {
			t.Errorf("check after unrelated write %d missed the cache", i)
		}
	}
}

// TestLookupCacheFollowsEveryWrite checks that a cached lookup result is
// never served after a write on another instance has changed it.
func TestLookupCacheFollowsEveryWrite(t *testing.T) {
	for name, start := range map[string]func(testing.TB) instances{
		"memory":   func(tb testing.TB) instances { return memoryInstances(tb, 0) },
		"postgres": postgresInstances,
	} {
		t.Run(name, func(t *testing.T) {
			in := start(t)
			seed(t, in.a)
			req := engine.LookupResourcesRequest{ResourceType: "document", Permission: "view", Subject: alice}

			for i := range 2 {
				ids, truncated, err := in.a.LookupResources(t.Context(), req, 10)
				if err != nil {
					t.Fatalf("lookup %d: %v", i, err)
				}
				if truncated || len(ids) != 1 || ids[0] != doc.ID {
					t.Fatalf("lookup %d = %v (truncated %v), want [%s]", i, ids, truncated, doc.ID)
				}
			}

			if _, err := in.b.DeleteMatching(t.Context(), &v1.RelationshipFilter{
				ResourceType: "org", OptionalResourceId: acme.ID, OptionalRelation: "owner",
			}, nil); err != nil {
				t.Fatalf("delete role: %v", err)
			}
			ids, _, err := in.a.LookupResources(t.Context(), req, 10)
			if err != nil {
				t.Fatalf("lookup after the write: %v", err)
			}
			if len(ids) != 0 {
				t.Errorf("lookup after the role was removed = %v, want none", ids)
			}
		})
	}
}

// TestWithSnapshotPinsOneRevision checks that checks in a pinned context
// may be served from the pinned revision, and checks outside it read the
// newest one.
func TestWithSnapshotPinsOneRevision(t *testing.T) {
	in := memoryInstances(t, 0)
	seed(t, in.a)
	req := engine.CheckRequest{Resource: doc, Permission: "edit", Subject: alice}

	pinned, err := in.a.WithSnapshot(t.Context())
	if err != nil {
		t.Fatalf("pin snapshot: %v", err)
	}
	if d, err := in.a.Check(pinned, req); err != nil || !d.Allowed {
		t.Fatalf("pinned check before the write = %+v, %v; want allowed", d, err)
	}
	if _, err := in.b.DeleteMatching(t.Context(), &v1.RelationshipFilter{
		ResourceType: "org", OptionalResourceId: acme.ID, OptionalRelation: "owner",
	}, nil); err != nil {
		t.Fatalf("delete role: %v", err)
	}
	if d, err := in.a.Check(pinned, req); err != nil || !d.Allowed {
		t.Errorf("pinned check after the write = %+v, %v; want the pinned allow", d, err)
	}
	if d, err := in.a.Check(t.Context(), req); err != nil || d.Allowed {
		t.Errorf("new check after the write = %+v, %v; want a deny", d, err)
	}
}
