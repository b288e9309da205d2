package engine

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/tuple"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

// countingReader returns the number of reads started so far, after a
// short delay, so that callers overlap.
type countingReader struct{ started atomic.Int64 }

func (r *countingReader) read(ctx context.Context) (snapshot, error) {
	n := r.started.Add(1)
	time.Sleep(2 * time.Millisecond)
	return wholeOnly(strconv.FormatInt(n, 10)), nil
}

func TestCoalescedNeverServesOlderRead(t *testing.T) {
	reader := &countingReader{}
	c := &coalesced{reader: reader}
	var wg sync.WaitGroup
	var calls atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				before := reader.started.Load()
				got, err := c.read(context.Background())
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				n, _ := strconv.ParseInt(got.whole(), 10, 64)
				if n <= before {
					t.Errorf("got read %d, which started before the call (%d reads had started)", n, before)
				}
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	if reads := reader.started.Load(); reads >= calls.Load() {
		t.Errorf("%d reads for %d calls, want fewer reads than calls", reads, calls.Load())
	}
}

func TestCoalescedCallerCancel(t *testing.T) {
	c := &coalesced{reader: &countingReader{}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.read(ctx); err == nil {
		t.Error("read with a cancelled context returned no error")
	}
	if _, err := c.read(context.Background()); err != nil {
		t.Errorf("read after a cancelled caller: %v", err)
	}
}

func TestCoalescedObservesEachRead(t *testing.T) {
	reader := &countingReader{}
	registry := prometheus.NewRegistry()
	durations, err := stateReadHistogram(registry)
	if err != nil {
		t.Fatal(err)
	}
	c := &coalesced{reader: reader, durations: durations}
	for range 3 {
		if _, err := c.read(context.Background()); err != nil {
			t.Fatalf("read: %v", err)
		}
	}

	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 1 {
		t.Fatalf("got %d metric families, want 1", len(families))
	}
	h := families[0].GetMetric()[0].GetHistogram()
	if got, want := h.GetSampleCount(), uint64(reader.started.Load()); got != want {
		t.Errorf("observed %d reads, want %d", got, want)
	}
	// Each read sleeps 2ms, so the sum cannot be smaller.
	if least := 3 * 0.002; h.GetSampleSum() < least {
		t.Errorf("observed %.4fs in all, want at least %.4fs", h.GetSampleSum(), least)
	}
	if _, err := stateReadHistogram(registry); err != nil {
		t.Errorf("second registration: %v", err)
	}
}

// TestPGStateReusesUnchangedRead checks that a state read on PostgreSQL
// returns the previous read again while no write has added a row, without
// running the grouped query, and reads the rows again after a write.
func TestPGStateReusesUnchangedRead(t *testing.T) {
	ds, p, _ := openPGState(t)

	writeRels(t, ds, tuple.UpdateOperationTouch, "org:acme#owner@user:dev|alice")
	first, err := p.read(t.Context())
	if err != nil {
		t.Fatalf("first read: %v", err)
	}
	grouped := p.last.Load()
	second, err := p.read(t.Context())
	if err != nil {
		t.Fatalf("second read: %v", err)
	}
	if p.last.Load() != grouped {
		t.Error("the grouped query ran again although no row was added")
	}
	if second.whole() != first.whole() || second.org("acme") != first.org("acme") {
		t.Errorf("state changed without a write: %q, then %q", first.org("acme"), second.org("acme"))
	}

	writeRels(t, ds, tuple.UpdateOperationTouch, "org:acme#owner@user:dev|bob")
	third, err := p.read(t.Context())
	if err != nil {
		t.Fatalf("third read: %v", err)
	}
	if p.last.Load() == grouped {
		t.Error("the grouped query did not run after a write")
	}
	if third.whole() == first.whole() || third.org("acme") == first.org("acme") {
		t.Errorf("state unchanged after a write: %q", third.org("acme"))
	}
}

// openPGState opens a migrated database, a SpiceDB datastore on it and a state
// reader.
func openPGState(t *testing.T) (datastore.Datastore, *pgTransactions, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	if err := store.Migrate(t.Context(), store.Config{URL: url}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	ds, err := NewPostgresDatastore(t.Context(), PostgresConfig{URL: url})
	if err != nil {
		t.Fatalf("open datastore: %v", err)
	}
	t.Cleanup(func() { ds.Close() })
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	p, err := newPGTransactions(t.Context(), pool)
	if err != nil {
		t.Fatalf("read horizon: %v", err)
	}
	return ds, p, pool
}

// timedReader records when each read starts, and takes delay.
type timedReader struct {
	delay  time.Duration
	mu     sync.Mutex
	starts []time.Time
}

func (r *timedReader) read(ctx context.Context) (snapshot, error) {
	r.mu.Lock()
	r.starts = append(r.starts, time.Now())
	r.mu.Unlock()
	time.Sleep(r.delay)
	return wholeOnly("s"), nil
}

func TestCoalescedSharesReads(t *testing.T) {
	// Reads that take a while make callers wait together.
	reader := &timedReader{delay: 200 * time.Microsecond}
	c := &coalesced{reader: reader}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				if _, err := c.read(context.Background()); err != nil {
					t.Errorf("read: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if reads := len(reader.starts); reads >= 16*50 {
		t.Errorf("%d reads for %d calls, want fewer", reads, 16*50)
	}
}
