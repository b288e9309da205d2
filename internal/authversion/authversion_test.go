package authversion_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authversion"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

type storeCase struct {
	name string
	open func(t *testing.T) authversion.Store
}

func stores() []storeCase {
	return []storeCase{
		{"memory", func(t *testing.T) authversion.Store { return authversion.NewMemory() }},
		{"postgres", func(t *testing.T) authversion.Store {
			pg, _ := openPostgres(t)
			return pg
		}},
	}
}

// openPostgres returns a listening Postgres store on a fresh database and a
// second one on the same database, as another instance would have.
func openPostgres(t testing.TB) (*authversion.Postgres, *authversion.Postgres) {
	t.Helper()
	a, b, _ := openPostgresURL(t)
	return a, b
}

// openPostgresURL is openPostgres that also returns the database URL.
func openPostgresURL(t testing.TB) (*authversion.Postgres, *authversion.Postgres, string) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	logger := slog.New(slog.DiscardHandler)
	if err := store.Migrate(t.Context(), store.Config{URL: url}, logger); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	open := func() *authversion.Postgres {
		st, err := store.Open(t.Context(), store.Config{URL: url})
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		pg := authversion.NewPostgres(st.Pool, logger)
		done := make(chan struct{})
		go func() { defer close(done); pg.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done; st.Close() })
		waitFor(t, pg.Listening)
		return pg
	}
	return open(), open(), url
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBumpRaisesOnlyNamedPrincipals(t *testing.T) {
	for _, sc := range stores() {
		t.Run(sc.name, func(t *testing.T) {
			s := sc.open(t)
			ctx := t.Context()

			if v, err := s.Get(ctx, "user:dev|alice"); err != nil || v != authversion.Initial {
				t.Fatalf("Get before any bump = %d, %v; want %d", v, err, authversion.Initial)
			}
			changes, err := s.Bump(ctx, []string{"user:dev|alice", "user:dev|alice", "service:dev|billing"})
			if err != nil {
				t.Fatalf("Bump: %v", err)
			}
			if len(changes) != 2 {
				t.Fatalf("Bump returned %d changes, want 2 (duplicates count once)", len(changes))
			}
			if v, _ := s.Get(ctx, "user:dev|alice"); v != 2 {
				t.Errorf("alice version = %d, want 2", v)
			}
			if _, err := s.Bump(ctx, []string{"user:dev|alice"}); err != nil {
				t.Fatalf("Bump: %v", err)
			}
			if v, _ := s.Get(ctx, "user:dev|alice"); v != 3 {
				t.Errorf("alice version = %d, want 3", v)
			}
			if v, _ := s.Get(ctx, "user:dev|bob"); v != authversion.Initial {
				t.Errorf("bob version = %d, want %d: an unrelated principal rose", v, authversion.Initial)
			}
		})
	}
}

func TestSubscribeSeesBumps(t *testing.T) {
	for _, sc := range stores() {
		t.Run(sc.name, func(t *testing.T) {
			s := sc.open(t)
			changes, stop := s.Subscribe()
			defer stop()

			if _, err := s.Bump(t.Context(), []string{"user:dev|carol"}); err != nil {
				t.Fatalf("Bump: %v", err)
			}
			select {
			case c := <-changes:
				if c.Principal != "user:dev|carol" || c.Version != 2 {
					t.Errorf("change = %+v, want user:dev|carol at 2", c)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no change within 5s")
			}
		})
	}
}

func TestPostgresCacheFollowsOtherInstance(t *testing.T) {
	a, b := openPostgres(t)
	ctx := t.Context()

	// Warm b's cache, then bump through a.
	if v, _ := b.Get(ctx, "user:dev|dave"); v != authversion.Initial {
		t.Fatalf("initial version = %d", v)
	}
	if _, err := a.Bump(ctx, []string{"user:dev|dave"}); err != nil {
		t.Fatalf("Bump: %v", err)
	}
	waitFor(t, func() bool {
		v, err := b.Get(ctx, "user:dev|dave")
		return err == nil && v == 2
	})
}

func TestPostgresReadsDatabaseWithoutListener(t *testing.T) {
	url := pgtest.NewDatabase(t)
	logger := slog.New(slog.DiscardHandler)
	if err := store.Migrate(t.Context(), store.Config{URL: url}, logger); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	open := func() *authversion.Postgres {
		st, err := store.Open(t.Context(), store.Config{URL: url})
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		t.Cleanup(st.Close)
		return authversion.NewPostgres(st.Pool, logger) // never Run: no listener
	}
	reader, writer := open(), open()

	for want := int64(2); want <= 4; want++ {
		if _, err := writer.Bump(t.Context(), []string{"user:dev|erin"}); err != nil {
			t.Fatalf("Bump: %v", err)
		}
		got, err := reader.Get(t.Context(), "user:dev|erin")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got != want {
			t.Errorf("version seen by another instance = %d, want %d", got, want)
		}
	}
}

func TestPostgresListenerLossResetsSubscribers(t *testing.T) {
	a, _, url := openPostgresURL(t)
	changes, stop := a.Subscribe()
	defer stop()

	// Kill the listeners of this test's database from the server side.
	st, err := store.Open(t.Context(), store.Config{URL: url})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer st.Close()
	_, err = st.Pool.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN `+authversion.Channel+`' AND datname = current_database()`)
	if err != nil {
		t.Fatalf("terminate listener: %v", err)
	}

	select {
	case _, open := <-changes:
		if open {
			t.Fatal("received a change instead of a reset")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber was not reset within 5s of losing the listener")
	}
	waitFor(t, a.Listening)
}

// BenchmarkGet measures reading a principal's auth version, as every
// request with a Gatehouse token does: from memory, and from the
// PostgreSQL store's cache that LISTEN/NOTIFY keeps current.
func BenchmarkGet(b *testing.B) {
	pg, _ := openPostgres(b)
	for _, bench := range []struct {
		name  string
		store authversion.Store
	}{{"memory", authversion.NewMemory()}, {"postgres_cached", pg}} {
		b.Run(bench.name, func(b *testing.B) {
			if _, err := bench.store.Bump(b.Context(), []string{"user:corp|alice"}); err != nil {
				b.Fatal(err)
			}
			if _, err := bench.store.Get(b.Context(), "user:corp|alice"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bench.store.Get(b.Context(), "user:corp|alice"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
