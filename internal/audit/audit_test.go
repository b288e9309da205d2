package audit_test

// The tests in this file run against every Log implementation. Memory runs
// always. Postgres runs when GATEHOUSE_TEST_DATABASE_URL names a test
// server, which scripts/test-postgres.sh start prints, and is skipped
// otherwise.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-authz/gatehouse/internal/audit"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

// backend opens an empty Log of one implementation.
type backend struct {
	name string
	open func(t *testing.T) audit.Log
}

var backends = []backend{
	{name: "memory", open: func(t *testing.T) audit.Log { return audit.NewMemory() }},
	{name: "postgres", open: func(t *testing.T) audit.Log { log, _ := openPostgres(t); return log }},
}

// forEachBackend runs test once per Log implementation, each on an empty log.
func forEachBackend(t *testing.T, test func(t *testing.T, log audit.Log)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			test(t, b.open(t))
		})
	}
}

// openPostgres creates and migrates a database of its own and returns a
// Postgres log on it with the database's URL. It skips the test when no
// test server is configured.
func openPostgres(t *testing.T) (*audit.Postgres, string) {
	t.Helper()
	dbURL := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := store.Migrate(ctx, store.Config{URL: dbURL}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	st, err := store.Open(ctx, store.Config{URL: dbURL})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	return audit.NewPostgres(st.Pool), dbURL
}

// testContext returns a context that ends after a minute or with the test.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// steppingClock returns a clock that starts at start and advances by step
// on every call, so that each appended entry gets a known, distinct time.
func steppingClock(start time.Time, step time.Duration) func() time.Time {
	var calls atomic.Int64
	return func() time.Time {
		return start.Add(time.Duration(calls.Add(1)-1) * step)
	}
}

// mustAppend appends e and fails the test on error.
func mustAppend(t *testing.T, log audit.Log, e audit.Entry) audit.Entry {
	t.Helper()
	stored, err := log.Append(testContext(t), e)
	if err != nil {
		t.Fatalf("append %s entry to %s: %v", e.Kind, e.Chain, err)
	}
	return stored
}

// event returns an event entry on chain with the given action and resource.
func event(chain, actor, action, resource string) audit.Entry {
	return audit.Entry{
		Chain: chain, Kind: audit.KindEvent,
		Actor:  audit.Actor{Principal: actor, Issuer: "https://idp.example/", TokenID: "jti-" + action},
		Action: action, Resource: resource,
	}
}

// outcome returns the outcome entry of event e.
func outcome(e audit.Entry, result, token string) audit.Entry {
	return audit.Entry{Chain: e.Chain, Kind: audit.KindOutcome, EventID: e.ID, Outcome: result, ConsistencyToken: token}
}

// walkAll returns every entry of log in Walk order.
func walkAll(t *testing.T, log audit.Log) []audit.Entry {
	t.Helper()
	var entries []audit.Entry
	err := log.Walk(testContext(t), func(e audit.Entry) error {
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	return entries
}

// wantVerified fails the test unless Verify finds log intact.
func wantVerified(t *testing.T, log audit.Log) audit.Report {
	t.Helper()
	report, err := audit.Verify(testContext(t), log)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !report.OK() {
		t.Fatalf("verify: breaks %v, want none", report.Breaks)
	}
	return report
}

func TestAppendLinksChains(t *testing.T) {
	forEachBackend(t, func(t *testing.T, log audit.Log) {
		start := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
		audit.SetClock(log, steppingClock(start, time.Second))

		full := audit.Entry{
			Chain: "org:acme", Kind: audit.KindEvent,
			Actor:      audit.Actor{Principal: "service:idp|billing", Issuer: "https://idp.example/", TokenID: "jti-1"},
			OnBehalfOf: "user:idp|bob", Action: "member.set", Resource: "document:d1", Subject: "user:idp|carol",
			Before: map[string]string{}, After: map[string]string{"role": "editor"},
			Reason: "quarterly review ✓", ClientIP: "203.0.113.7", UserAgent: "audit-test/1.0",
			RequestID: "req-1", BreakGlass: true,
		}
		var stored []audit.Entry
		for _, e := range []audit.Entry{
			full,
			event("org:globex", "user:idp|gina", "resource.create", "org:globex"),
			event("org:acme", "user:idp|alice", "member.remove", "document:d1"),
			event("org:acme", "user:idp|alice", "resource.delete", "document:d1"),
			event("org:globex", "user:idp|gina", "member.set", "org:globex"),
		} {
			stored = append(stored, mustAppend(t, log, e))
		}

		// Seq counts 1, 2, … per chain, and each entry names its
		// predecessor's hash.
		wantSeq := map[string][]int64{"org:acme": {1, 2, 3}, "org:globex": {1, 2}}
		gotSeq := map[string][]int64{}
		prevHash := map[string]string{}
		ids := map[string]bool{}
		for i, e := range stored {
			gotSeq[e.Chain] = append(gotSeq[e.Chain], e.Seq)
			if e.PrevHash != prevHash[e.Chain] {
				t.Errorf("entry %d on %s: prev_hash %q, want %q", i, e.Chain, e.PrevHash, prevHash[e.Chain])
			}
			if e.Hash != audit.ComputeHash(e) {
				t.Errorf("entry %d on %s: hash %q does not match its content", i, e.Chain, e.Hash)
			}
			prevHash[e.Chain] = e.Hash
			if e.ID == "" || ids[e.ID] {
				t.Errorf("entry %d: id %q is empty or repeated", i, e.ID)
			}
			ids[e.ID] = true
			if want := start.Add(time.Duration(i) * time.Second); !e.Time.Equal(want) {
				t.Errorf("entry %d: time %v, want %v from the log's clock", i, e.Time, want)
			}
		}
		for chain, want := range wantSeq {
			if !slices.Equal(gotSeq[chain], want) {
				t.Errorf("%s: seq %v, want %v", chain, gotSeq[chain], want)
			}
		}

		// Walk returns the stored entries unchanged, chain by chain in Seq
		// order.
		walked := walkAll(t, log)
		if len(walked) != len(stored) {
			t.Fatalf("walk: %d entries, want %d", len(walked), len(stored))
		}
		byID := map[string]audit.Entry{}
		for _, e := range stored {
			byID[e.ID] = e
		}
		for i, got := range walked {
			if i > 0 && walked[i-1].Chain == got.Chain && walked[i-1].Seq+1 != got.Seq {
				t.Errorf("walk: %s seq %d follows seq %d", got.Chain, got.Seq, walked[i-1].Seq)
			}
			if want := byID[got.ID]; !entriesEqual(got, want) {
				t.Errorf("walk: entry %s\n got %+v\nwant %+v", got.ID, got, want)
			}
		}

		heads, err := log.Heads(testContext(t))
		if err != nil {
			t.Fatalf("heads: %v", err)
		}
		wantHeads := map[string]audit.Head{
			"org:acme":   {Seq: 3, Hash: stored[3].Hash},
			"org:globex": {Seq: 2, Hash: stored[4].Hash},
		}
		if !maps.Equal(heads, wantHeads) {
			t.Errorf("heads: got %v, want %v", heads, wantHeads)
		}

		report := wantVerified(t, log)
		if report.Chains != 2 || report.Entries != 5 {
			t.Errorf("verify: %d chains and %d entries, want 2 and 5", report.Chains, report.Entries)
		}
	})
}

// entriesEqual compares entries field by field, treating a nil state map
// and an empty one alike because neither is hashed.
func entriesEqual(a, b audit.Entry) bool {
	if len(a.Before) == 0 && len(b.Before) == 0 {
		a.Before, b.Before = nil, nil
	}
	if len(a.After) == 0 && len(b.After) == 0 {
		a.After, b.After = nil, nil
	}
	return a.Time.Equal(b.Time) && fmt.Sprintf("%+v", withoutTime(a)) == fmt.Sprintf("%+v", withoutTime(b))
}

func withoutTime(e audit.Entry) audit.Entry {
	e.Time = time.Time{}
	return e
}

func TestListFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, log audit.Log) {
		// Every append, event or outcome, takes the next minute.
		start := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
		minute := func(n int) time.Time { return start.Add(time.Duration(n) * time.Minute) }
		audit.SetClock(log, steppingClock(start, time.Minute))

		created := mustAppend(t, log, event("org:acme", "user:idp|alice", "resource.create", "document:d1"))   // minute 0
		mustAppend(t, log, outcome(created, audit.OutcomeApplied, "token-created"))                            // 1
		shared := mustAppend(t, log, event("org:acme", "user:idp|bob", "member.set", "document:d1"))           // 2
		mustAppend(t, log, outcome(shared, audit.OutcomeApplied, "token-shared"))                              // 3
		foreign := mustAppend(t, log, event("org:globex", "user:idp|alice", "resource.create", "document:g1")) // 4
		mustAppend(t, log, outcome(foreign, audit.OutcomeApplied, "token-foreign"))                            // 5
		failed := mustAppend(t, log, event("org:acme", "user:idp|alice", "member.set", "document:d2"))         // 6
		mustAppend(t, log, outcome(failed, audit.OutcomeFailed, ""))                                           // 7
		pending := mustAppend(t, log, event("org:acme", "user:idp|alice", "member.remove", "document:d1"))     // 8

		names := map[string]string{created.ID: "created", shared.ID: "shared", foreign.ID: "foreign", failed.ID: "failed", pending.ID: "pending"}
		tests := []struct {
			name   string
			filter audit.Filter
			want   []string
		}{
			{"no filter hides failed", audit.Filter{}, []string{"created", "shared", "foreign", "pending"}},
			{"one chain", audit.Filter{Chains: []string{"org:acme"}}, []string{"created", "shared", "pending"}},
			{"two chains", audit.Filter{Chains: []string{"org:globex", "org:acme"}}, []string{"created", "shared", "foreign", "pending"}},
			{"empty chain list", audit.Filter{Chains: []string{}}, nil},
			{"unknown chain", audit.Filter{Chains: []string{"org:initech"}}, nil},
			{"resource", audit.Filter{Resource: "document:d1"}, []string{"created", "shared", "pending"}},
			{"actor", audit.Filter{Actor: "user:idp|alice"}, []string{"created", "foreign", "pending"}},
			{"action of a failed event", audit.Filter{Action: "member.set"}, []string{"shared"}},
			{"since is inclusive", audit.Filter{Since: minute(2)}, []string{"shared", "foreign", "pending"}},
			{"until is exclusive", audit.Filter{Until: minute(4)}, []string{"created", "shared"}},
			{"since and until", audit.Filter{Since: minute(1), Until: minute(8)}, []string{"shared", "foreign"}},
			{"limit", audit.Filter{Limit: 2}, []string{"created", "shared"}},
			{"after", audit.Filter{After: shared.Position}, []string{"foreign", "pending"}},
			{"after a failed event", audit.Filter{After: failed.Position}, []string{"pending"}},
			{"after and limit", audit.Filter{After: shared.Position, Limit: 1}, []string{"foreign"}},
			{"after the last", audit.Filter{After: pending.Position}, nil},
			{"chain and actor", audit.Filter{Chains: []string{"org:acme"}, Actor: "user:idp|alice"}, []string{"created", "pending"}},
			{"chain and resource after", audit.Filter{Chains: []string{"org:acme"}, Resource: "document:d1", After: created.Position}, []string{"shared", "pending"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				events, err := log.List(testContext(t), tt.filter)
				if err != nil {
					t.Fatalf("list: %v", err)
				}
				var got []string
				for _, e := range events {
					got = append(got, names[e.ID])
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("list %+v: got %v, want %v", tt.filter, got, tt.want)
				}
			})
		}

		t.Run("joins outcome and token", func(t *testing.T) {
			events, err := log.List(testContext(t), audit.Filter{})
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			want := map[string]struct{ outcome, token string }{
				"created": {audit.OutcomeApplied, "token-created"},
				"shared":  {audit.OutcomeApplied, "token-shared"},
				"foreign": {audit.OutcomeApplied, "token-foreign"},
				"pending": {"", ""},
			}
			for _, e := range events {
				name := names[e.ID]
				if e.Kind != audit.KindEvent {
					t.Errorf("%s: kind %q, want %q", name, e.Kind, audit.KindEvent)
				}
				if e.Outcome != want[name].outcome {
					t.Errorf("%s: outcome %q, want %q", name, e.Outcome, want[name].outcome)
				}
				if e.ConsistencyToken != want[name].token {
					t.Errorf("%s: consistency token %q, want %q", name, e.ConsistencyToken, want[name].token)
				}
				if e.Actor.TokenID != "jti-"+e.Action {
					t.Errorf("%s: actor token id %q, want %q", name, e.Actor.TokenID, "jti-"+e.Action)
				}
			}
		})

		t.Run("pages of one", func(t *testing.T) {
			var got []string
			var after int64
			for range 10 {
				page, err := log.List(testContext(t), audit.Filter{After: after, Limit: 1})
				if err != nil {
					t.Fatalf("list after %d: %v", after, err)
				}
				if len(page) == 0 {
					break
				}
				if len(page) > 1 {
					t.Fatalf("list with limit 1: %d events", len(page))
				}
				got = append(got, names[page[0].ID])
				after = page[0].Position
			}
			want := []string{"created", "shared", "foreign", "pending"}
			if !slices.Equal(got, want) {
				t.Errorf("pages: got %v, want %v", got, want)
			}
		})
	})
}

func TestOutcomeOncePerEvent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, log audit.Log) {
		ev := mustAppend(t, log, event("org:acme", "user:idp|alice", "member.set", "document:d1"))
		mustAppend(t, log, outcome(ev, audit.OutcomeApplied, "token-1"))

		_, err := log.Append(testContext(t), outcome(ev, audit.OutcomeFailed, ""))
		if !errors.Is(err, audit.ErrAlreadySettled) {
			t.Fatalf("second outcome: got error %v, want ErrAlreadySettled", err)
		}

		// The recorder swallows ErrAlreadySettled: a late Failed must not
		// turn an applied change into a hidden one.
		rec := audit.NewRecorder(log, slog.New(slog.DiscardHandler))
		change, err := rec.Begin(testContext(t), event("org:acme", "user:idp|alice", "member.set", "document:d2"))
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		change.Applied(testContext(t), "token-2")
		change.Failed(testContext(t))

		entries := walkAll(t, log)
		if len(entries) != 4 {
			t.Errorf("walk: %d entries, want 2 events and 2 outcomes", len(entries))
		}
		events, err := log.List(testContext(t), audit.Filter{})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		if len(events) != 2 {
			t.Fatalf("list: %d events, want 2", len(events))
		}
		for _, e := range events {
			if e.Outcome != audit.OutcomeApplied {
				t.Errorf("event %s (%s): outcome %q, want %q", e.ID, e.Resource, e.Outcome, audit.OutcomeApplied)
			}
		}
		wantVerified(t, log)
	})
}

func TestOutcomeOnceUnderConcurrency(t *testing.T) {
	forEachBackend(t, func(t *testing.T, log audit.Log) {
		ev := mustAppend(t, log, event("org:acme", "user:idp|alice", "member.set", "document:d1"))

		const writers = 10
		var wg sync.WaitGroup
		var applied, settled atomic.Int32
		errs := make(chan error, writers)
		for i := range writers {
			wg.Go(func() {
				_, err := log.Append(context.Background(), outcome(ev, audit.OutcomeApplied, fmt.Sprint("token-", i)))
				switch {
				case err == nil:
					applied.Add(1)
				case errors.Is(err, audit.ErrAlreadySettled):
					settled.Add(1)
				default:
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("append outcome: %v", err)
		}
		if applied.Load() != 1 || settled.Load() != writers-1 {
			t.Errorf("%d outcomes stored and %d rejected as settled, want 1 and %d", applied.Load(), settled.Load(), writers-1)
		}
		wantVerified(t, log)
	})
}

func TestReconcileSettlesOldEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, log audit.Log) {
		// Three events an hour old: two abandoned, one settled; then one
		// abandoned a moment ago, still inside the grace period.
		hourAgo := time.Now().Add(-time.Hour)
		audit.SetClock(log, steppingClock(hourAgo, time.Second))
		inPlace := mustAppend(t, log, event("org:acme", "user:idp|alice", "member.set", "document:present"))
		absent := mustAppend(t, log, event("org:globex", "user:idp|gina", "resource.create", "document:absent"))
		done := mustAppend(t, log, event("org:acme", "user:idp|alice", "member.set", "document:done"))
		mustAppend(t, log, outcome(done, audit.OutcomeApplied, "token-done"))
		audit.SetClock(log, time.Now)
		recent := mustAppend(t, log, event("org:acme", "user:idp|alice", "member.set", "document:recent"))

		var mu sync.Mutex
		var checked []string
		checker := func(ctx context.Context, e audit.Entry) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			checked = append(checked, e.Resource)
			return e.Resource == "document:present", nil
		}
		rec := audit.NewRecorder(log, slog.New(slog.DiscardHandler))
		n, err := rec.Reconcile(testContext(t), 10*time.Minute, checker)
		if err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		if n != 2 {
			t.Errorf("reconcile settled %d events, want 2", n)
		}
		slices.Sort(checked)
		if want := []string{"document:absent", "document:present"}; !slices.Equal(checked, want) {
			t.Errorf("reconcile checked %v, want %v", checked, want)
		}

		events, err := log.List(testContext(t), audit.Filter{})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		want := map[string]string{
			inPlace.ID: audit.OutcomeReconciledApplied,
			absent.ID:  audit.OutcomeReconciledAbsent,
			done.ID:    audit.OutcomeApplied,
			recent.ID:  "",
		}
		if len(events) != len(want) {
			t.Fatalf("list: %d events, want %d", len(events), len(want))
		}
		for _, e := range events {
			if e.Outcome != want[e.ID] {
				t.Errorf("event on %s: outcome %q, want %q", e.Resource, e.Outcome, want[e.ID])
			}
		}

		// The reconciler's outcomes land on the event's own chain.
		for _, e := range walkAll(t, log) {
			if e.Kind == audit.KindOutcome && e.EventID == absent.ID && e.Chain != "org:globex" {
				t.Errorf("outcome of the org:globex event is on chain %s", e.Chain)
			}
		}

		n, err = rec.Reconcile(testContext(t), 10*time.Minute, checker)
		if err != nil {
			t.Fatalf("second reconcile: %v", err)
		}
		if n != 0 {
			t.Errorf("second reconcile settled %d events, want 0", n)
		}
		wantVerified(t, log)
	})
}

func TestReconcileStopsOnCheckError(t *testing.T) {
	forEachBackend(t, func(t *testing.T, log audit.Log) {
		audit.SetClock(log, steppingClock(time.Now().Add(-time.Hour), time.Second))
		ev := mustAppend(t, log, event("org:acme", "user:idp|alice", "member.set", "document:d1"))

		rec := audit.NewRecorder(log, slog.New(slog.DiscardHandler))
		unavailable := errors.New("engine unavailable")
		n, err := rec.Reconcile(testContext(t), time.Minute, func(context.Context, audit.Entry) (bool, error) {
			return false, unavailable
		})
		if !errors.Is(err, unavailable) {
			t.Errorf("reconcile: got error %v, want the checker's", err)
		}
		if n != 0 {
			t.Errorf("reconcile settled %d events, want 0", n)
		}
		pending, err := log.Unsettled(testContext(t), time.Now())
		if err != nil {
			t.Fatalf("unsettled: %v", err)
		}
		if len(pending) != 1 || pending[0].ID != ev.ID {
			t.Errorf("unsettled: got %d events, want the one event still unsettled", len(pending))
		}
	})
}

func TestConcurrentAppendsKeepChains(t *testing.T) {
	forEachBackend(t, func(t *testing.T, log audit.Log) {
		writers := map[string]struct{ goroutines, entries int }{
			"org:acme":   {goroutines: 8, entries: 50},
			"org:globex": {goroutines: 4, entries: 25},
		}
		var wg sync.WaitGroup
		errs := make(chan error, 12*50)
		for chain, w := range writers {
			for g := range w.goroutines {
				wg.Go(func() {
					for i := range w.entries {
						e := event(chain, fmt.Sprintf("user:idp|writer-%d", g), "member.set", fmt.Sprintf("document:%d-%d", g, i))
						if _, err := log.Append(context.Background(), e); err != nil {
							errs <- fmt.Errorf("writer %d on %s, entry %d: %w", g, chain, i, err)
							return
						}
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}

		// Every chain counts 1…n without gaps or repeats, which also means
		// no two entries claim the same predecessor.
		seqs := map[string][]int64{}
		prevHashes := map[string]map[string]bool{}
		for _, e := range walkAll(t, log) {
			seqs[e.Chain] = append(seqs[e.Chain], e.Seq)
			if prevHashes[e.Chain] == nil {
				prevHashes[e.Chain] = map[string]bool{}
			}
			if prevHashes[e.Chain][e.PrevHash] {
				t.Errorf("%s: fork: two entries follow hash %q", e.Chain, e.PrevHash)
			}
			prevHashes[e.Chain][e.PrevHash] = true
		}
		for chain, w := range writers {
			want := int64(w.goroutines * w.entries)
			got := seqs[chain]
			if int64(len(got)) != want {
				t.Errorf("%s: %d entries, want %d", chain, len(got), want)
				continue
			}
			for i, seq := range got {
				if seq != int64(i+1) {
					t.Errorf("%s: entry %d has seq %d, want %d", chain, i, seq, i+1)
					break
				}
			}
		}
		report := wantVerified(t, log)
		if report.Entries != 500 {
			t.Errorf("verify: %d entries, want 500", report.Entries)
		}
	})
}

// TestPostgresVerifyDetectsTampering edits the audit tables with SQL, as a
// superuser that bypasses the append-only triggers could, and checks that
// Verify names the first row that no longer fits. Each case tampers with a
// chain of its own in one database.
func TestPostgresVerifyDetectsTampering(t *testing.T) {
	log, dbURL := openPostgres(t)
	tests := []struct {
		chain string
		// sql tampers with the chain; %[1]s is the id of its entry with
		// seq 2, %[2]s that of seq 3, and so on.
		sql        []string
		wantSeq    int64
		wantEntry  int // seq of the entry the break must name; 0 for none
		wantReason string
	}{
		{
			chain:      "org:edited",
			sql:        []string{`UPDATE audit_entries SET reason = 'nothing to see' WHERE id = '%[2]s'`},
			wantSeq:    3,
			wantEntry:  3,
			wantReason: "the entry was edited",
		},
		{
			chain:      "org:edited-state",
			sql:        []string{`UPDATE audit_entries SET after = '{"role": "owner"}' WHERE id = '%[2]s'`},
			wantSeq:    3,
			wantEntry:  3,
			wantReason: "the entry was edited",
		},
		{
			chain:      "org:deleted-middle",
			sql:        []string{`DELETE FROM audit_entries WHERE id = '%[2]s'`},
			wantSeq:    4,
			wantEntry:  4,
			wantReason: "entries are missing or reordered",
		},
		{
			chain:      "org:deleted-tail",
			sql:        []string{`DELETE FROM audit_entries WHERE id = '%[4]s'`},
			wantSeq:    4,
			wantReason: "entries were removed from the end",
		},
		{
			chain: "org:reordered",
			sql: []string{
				`UPDATE audit_entries SET seq = -1 WHERE id = '%[1]s'`,
				`UPDATE audit_entries SET seq = 2 WHERE id = '%[2]s'`,
				`UPDATE audit_entries SET seq = 3 WHERE id = '%[1]s'`,
			},
			wantSeq:    2,
			wantEntry:  3,
			wantReason: "previous hash does not match",
		},
		{
			chain: "org:renumbered",
			sql: []string{
				`DELETE FROM audit_entries WHERE id = '%[2]s'`,
				`UPDATE audit_entries SET seq = 3 WHERE id = '%[3]s'`,
				`UPDATE audit_entries SET seq = 4 WHERE id = '%[4]s'`,
			},
			wantSeq:    3,
			wantEntry:  4,
			wantReason: "previous hash does not match",
		},
	}

	chains := []string{"org:intact"}
	for _, tt := range tests {
		chains = append(chains, tt.chain)
	}
	ids := map[string][]string{} // chain → ids in seq order, from seq 1
	for _, chain := range chains {
		for i := range 5 {
			e := mustAppend(t, log, event(chain, "user:idp|alice", "member.set", fmt.Sprintf("document:%d", i)))
			ids[chain] = append(ids[chain], e.ID)
		}
	}
	wantVerified(t, log)

	conn := connectReplica(t, dbURL)
	for _, tt := range tests {
		for _, stmt := range tt.sql {
			args := make([]any, 0, 4)
			for _, id := range ids[tt.chain][1:] {
				args = append(args, id)
			}
			if _, err := conn.Exec(testContext(t), fmt.Sprintf(stmt, args...)); err != nil {
				t.Fatalf("%s: tamper: %v", tt.chain, err)
			}
		}
	}

	report, err := audit.Verify(testContext(t), log)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.chain, "org:"), func(t *testing.T) {
			var brk *audit.Break
			for i := range report.Breaks {
				if report.Breaks[i].Chain == tt.chain {
					brk = &report.Breaks[i]
				}
			}
			if brk == nil {
				t.Fatalf("no break reported for %s; breaks: %v", tt.chain, report.Breaks)
			}
			wantID := ""
			if tt.wantEntry > 0 {
				wantID = ids[tt.chain][tt.wantEntry-1]
			}
			if brk.EntryID != wantID {
				t.Errorf("break entry id: got %q, want %q", brk.EntryID, wantID)
			}
			if brk.Seq != tt.wantSeq {
				t.Errorf("break seq: got %d, want %d", brk.Seq, tt.wantSeq)
			}
			if !strings.Contains(brk.Reason, tt.wantReason) {
				t.Errorf("break reason: got %q, want it to contain %q", brk.Reason, tt.wantReason)
			}
		})
	}
	if len(report.Breaks) != len(tests) {
		t.Errorf("verify: %d breaks, want %d (org:intact must have none): %v", len(report.Breaks), len(tests), report.Breaks)
	}
}

func TestPostgresTriggersRejectChanges(t *testing.T) {
	log, dbURL := openPostgres(t)
	for i := range 3 {
		mustAppend(t, log, event("org:acme", "user:idp|alice", "member.set", fmt.Sprintf("document:%d", i)))
	}

	conn := connect(t, dbURL)
	for _, tt := range []struct{ name, sql string }{
		{"update all", `UPDATE gatehouse.audit_entries SET reason = 'edited'`},
		{"update one", `UPDATE gatehouse.audit_entries SET reason = 'edited' WHERE seq = 2`},
		{"delete tail", `DELETE FROM gatehouse.audit_entries WHERE seq = 3`},
		{"delete all", `DELETE FROM gatehouse.audit_entries`},
		{"truncate", `TRUNCATE gatehouse.audit_entries`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := conn.Exec(testContext(t), tt.sql)
			if err == nil {
				t.Fatalf("%s: succeeded, want the append-only trigger to reject it", tt.sql)
			}
			if !audit.IsAppendOnlyViolation(err) {
				t.Errorf("%s: IsAppendOnlyViolation(%v) = false, want true", tt.sql, err)
			}
		})
	}

	var count int
	if err := conn.QueryRow(testContext(t), `SELECT count(*) FROM gatehouse.audit_entries`).Scan(&count); err != nil {
		t.Fatalf("count entries: %v", err)
	}
	if count != 3 {
		t.Errorf("after rejected changes: %d entries, want 3", count)
	}
	wantVerified(t, log)

	if audit.IsAppendOnlyViolation(errors.New("connection reset")) {
		t.Error("IsAppendOnlyViolation of a plain error: got true, want false")
	}
	_, err := conn.Exec(testContext(t), `SELECT * FROM gatehouse.no_such_table`)
	if audit.IsAppendOnlyViolation(err) {
		t.Errorf("IsAppendOnlyViolation(%v): got true, want false", err)
	}
}

// connect opens a connection of the test role to the database at dbURL.
func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx := testContext(t)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// connectReplica opens a connection that searches Gatehouse's schema and
// skips ordinary triggers (session_replication_role = replica), which only
// a superuser may set; the test role is one.
func connectReplica(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn := connect(t, dbURL)
	if _, err := conn.Exec(testContext(t), `SET search_path = `+store.SchemaName+`; SET session_replication_role = replica`); err != nil {
		t.Fatalf("bypass the audit triggers: %v", err)
	}
	return conn
}

// TestPagingWhileAppending follows the log the way a client tails
// GET /v1/audit: it pages with After while writers append, then reads to
// the end once they stop. Every event must be seen exactly once.
func TestPagingWhileAppending(t *testing.T) {
	forEachBackend(t, func(t *testing.T, log audit.Log) {
		const goroutines, entries = 8, 40
		var wg sync.WaitGroup
		var writing atomic.Bool
		writing.Store(true)
		errs := make(chan error, goroutines)
		for g := range goroutines {
			chain := []string{"org:acme", "org:globex"}[g%2]
			wg.Go(func() {
				for i := range entries {
					e := event(chain, "user:idp|alice", "member.set", fmt.Sprintf("document:%d-%d", g, i))
					if _, err := log.Append(context.Background(), e); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		go func() {
			wg.Wait()
			writing.Store(false)
		}()

		seen := map[string]int{}
		var after int64
		read := func() {
			page, err := log.List(testContext(t), audit.Filter{After: after, Limit: 7})
			if err != nil {
				t.Fatalf("list after %d: %v", after, err)
			}
			for _, e := range page {
				seen[e.ID]++
				after = e.Position
			}
		}
		for writing.Load() {
			read()
		}
		for range goroutines * entries {
			before := len(seen)
			read()
			if len(seen) == before {
				break
			}
		}
		close(errs)
		for err := range errs {
			t.Fatalf("append: %v", err)
		}

		missed := 0
		for _, e := range walkAll(t, log) {
			switch seen[e.ID] {
			case 0:
				missed++
			case 1:
			default:
				t.Errorf("event %s on %s seq %d seen %d times", e.ID, e.Chain, e.Seq, seen[e.ID])
			}
		}
		if missed > 0 {
			t.Errorf("paging with After missed %d of %d events appended while it read", missed, goroutines*entries)
		}
	})
}
