package engine

// The tests in this file attack the PostgreSQL state reads, which return the
// previous grouped read while the summary of the rows is unchanged. A write
// that has returned must change the state of its org and subject in the
// next read, whatever commits or stays open meanwhile.

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/datastore/options"
	"github.com/authzed/spicedb/pkg/tuple"
	"google.golang.org/protobuf/types/known/structpb"
)

// saTx runs one SpiceDB write transaction recorded under org and subject.
// It calls hold, if not nil, after the write and before the commit.
func saTx(ctx context.Context, ds datastore.Datastore, org, subject, rel string, hold func()) error {
	fields := map[string]*structpb.Value{}
	if org != "" {
		fields[metadataOrg] = structpb.NewStringValue(org)
	}
	if subject != "" {
		fields[metadataSubject] = structpb.NewStringValue(subject)
	}
	_, err := ds.ReadWriteTx(ctx, func(ctx context.Context, rwt datastore.ReadWriteTransaction) error {
		if err := rwt.WriteRelationships(ctx, []tuple.RelationshipUpdate{{Operation: tuple.UpdateOperationTouch, Relationship: tuple.MustParse(rel)}}); err != nil {
			return err
		}
		if hold != nil {
			hold()
		}
		return nil
	}, options.WithMetadata(&structpb.Struct{Fields: fields}))
	return err
}

func saRead(t *testing.T, p *pgTransactions) snapshot {
	t.Helper()
	s, err := p.read(t.Context())
	if err != nil {
		t.Fatalf("read state: %v", err)
	}
	return s
}

const (
	saAlice = "user:dev|alice"
	saBob   = "user:dev|bob"
)

// TestAttackPGStateConcurrentWrites reads the state in a loop while
// writers commit under alice, bob and no one subject, and checks that
// each write that returned changed the next read's state of its subject.
func TestAttackPGStateConcurrentWrites(t *testing.T) {
	ds, p, _ := openPGState(t)
	var mu sync.Mutex // serializes the reads, as coalesced does in the engine
	read := func() snapshot {
		mu.Lock()
		defer mu.Unlock()
		return saRead(t, p)
	}
	subjects := []string{saAlice, saBob, ""}
	var wg sync.WaitGroup
	for w, subject := range subjects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				before := read()
				rel := "org:acme#member@user:dev|w" + string(rune('a'+w))
				if err := saTx(t.Context(), ds, "acme", subject, rel, nil); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				after := read()
				for _, s := range []string{saAlice, saBob} {
					if (subject == "" || subject == s) && after.subject("acme", s) == before.subject("acme", s) {
						t.Errorf("write %d under %q: state of %s unchanged: %s", i, subject, s, after.subject("acme", s))
					}
				}
				if after.org("acme") == before.org("acme") {
					t.Errorf("write %d under %q: org state unchanged", i, subject)
				}
			}
		}()
	}
	wg.Wait()
}

// TestAttackPGStateOpenTransaction holds a write under bob open while
// writes of others commit above it and enough rows pile up to move the
// horizon. Once it commits, bob's state must change and alice's must not.
func TestAttackPGStateOpenTransaction(t *testing.T) {
	ds, p, pool := openPGState(t)
	if err := saTx(t.Context(), ds, "acme", saAlice, "org:acme#owner@user:dev|alice", nil); err != nil {
		t.Fatal(err)
	}
	holding, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	done := make(chan error, 1)
	go func() {
		done <- saTx(context.Background(), ds, "acme", saBob, "org:acme#member@user:dev|bob", func() {
			close(holding)
			<-release
		})
	}()
	<-holding

	// Writes of others commit with higher xids, and enough rows of no org
	// pile up above the horizon to move it.
	for i := range 3 {
		if err := saTx(t.Context(), ds, "acme", "user:dev|x"+string(rune('0'+i)), "org:acme#member@user:dev|x"+string(rune('0'+i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	for range maxTransactionsAboveHorizon + 1 {
		if _, err := pool.Exec(t.Context(), `INSERT INTO relation_tuple_transaction DEFAULT VALUES`); err != nil {
			t.Fatalf("add a row: %v", err)
		}
	}
	first := saRead(t, p)
	horizonBefore := p.horizon.Load().xid
	// The open transaction keeps the horizon from passing it.
	again := saRead(t, p)
	t.Logf("horizon %s, then %s", horizonBefore, p.horizon.Load().xid)
	if again.subject("acme", saBob) != saRead(t, p).subject("acme", saBob) {
		t.Error("bob's state changed without a commit")
	}

	releaseOnce.Do(func() { close(release) })
	if err := <-done; err != nil {
		t.Fatalf("held write: %v", err)
	}
	after := saRead(t, p)
	if after.subject("acme", saBob) == again.subject("acme", saBob) || after.subject("acme", saBob) == first.subject("acme", saBob) {
		t.Errorf("bob's write committed, his state did not change: %s", after.subject("acme", saBob))
	}
	if after.org("acme") == again.org("acme") {
		t.Error("bob's write committed, the org's state did not change")
	}
	// The horizon may have moved meanwhile; states keep their names.
	if after.subject("acme", saAlice) != again.subject("acme", saAlice) {
		t.Error("bob's write changed alice's state")
	}
}

// TestAttackPGStateHorizonMove moves the horizon with rows of no org, then
// commits a write under bob. The read after the move must not return the
// grouped read of the old horizon, and bob's state must change.
func TestAttackPGStateHorizonMove(t *testing.T) {
	ds, p, pool := openPGState(t)
	before := saRead(t, p)
	for range maxTransactionsAboveHorizon + 1 {
		if _, err := pool.Exec(t.Context(), `INSERT INTO relation_tuple_transaction DEFAULT VALUES`); err != nil {
			t.Fatalf("add a row: %v", err)
		}
	}
	oldHorizon := p.horizon.Load().xid
	moved := saRead(t, p) // reads the new rows, then moves the horizon
	if p.horizon.Load().xid == oldHorizon {
		t.Fatalf("the horizon stayed at %s after %d rows", oldHorizon, maxTransactionsAboveHorizon+1)
	}
	if err := saTx(t.Context(), ds, "acme", saBob, "org:acme#member@user:dev|bob", nil); err != nil {
		t.Fatal(err)
	}
	after := saRead(t, p)
	for _, s := range []snapshot{before, moved} {
		if after.subject("acme", saBob) == s.subject("acme", saBob) {
			t.Errorf("bob's state after his write equals an earlier one: %s", after.subject("acme", saBob))
		}
	}
	again := saRead(t, p)
	if again.subject("acme", saBob) != after.subject("acme", saBob) {
		t.Errorf("bob's state changed without a write: %s, then %s", after.subject("acme", saBob), again.subject("acme", saBob))
	}
}

// TestPGStateSurvivesHorizonMove moves the horizon past writes of two
// principals, of an org and of another org. Every state must read the same
// after each move, and a later write must change its own states only.
func TestPGStateSurvivesHorizonMove(t *testing.T) {
	ds, p, _ := openPGState(t)
	for _, w := range []struct{ org, subject, rel string }{
		{"acme", saAlice, "org:acme#owner@user:dev|alice"},
		{"acme", saBob, "org:acme#member@user:dev|bob"},
		{"acme", "", "workspace:acme-ws#org@org:acme"},
		{"globex", "", "workspace:globex-ws#org@org:globex"},
		{"", "", "workspace:stray#org@org:acme"},
	} {
		if err := saTx(t.Context(), ds, w.org, w.subject, w.rel, nil); err != nil {
			t.Fatal(err)
		}
	}
	states := func(s snapshot) map[string]string {
		base, _, _ := s.principals("acme")
		return map[string]string{
			"whole": s.whole(), "global": s.global(), "acme": s.org("acme"), "globex": s.org("globex"),
			"alice": s.subject("acme", saAlice), "bob": s.subject("acme", saBob), "acme base": base,
		}
	}
	move := func() {
		t.Helper()
		before := p.horizon.Load()
		if err := p.moveHorizon(t.Context()); err != nil {
			t.Fatalf("move the horizon: %v", err)
		}
		if p.horizon.Load().xid == before.xid {
			t.Fatalf("the horizon stayed at %s", before.xid)
		}
	}

	first := states(saRead(t, p))
	move()
	if moved := states(saRead(t, p)); !maps.Equal(moved, first) {
		t.Errorf("states changed when the horizon moved:\nbefore %v\nafter  %v", first, moved)
	}

	if err := saTx(t.Context(), ds, "acme", saBob, "org:acme#admin@user:dev|bob", nil); err != nil {
		t.Fatal(err)
	}
	second := states(saRead(t, p))
	for _, name := range []string{"whole", "acme", "bob"} {
		if second[name] == first[name] {
			t.Errorf("bob's write left the %s state as it was: %s", name, first[name])
		}
	}
	for _, name := range []string{"global", "globex", "alice", "acme base"} {
		if second[name] != first[name] {
			t.Errorf("bob's write changed the %s state: %s, then %s", name, first[name], second[name])
		}
	}
	move()
	if moved := states(saRead(t, p)); !maps.Equal(moved, second) {
		t.Errorf("states changed when the horizon moved again:\nbefore %v\nafter  %v", second, moved)
	}
}

// TestPGStateAfterIdleGC leaves the horizon unread for longer than
// maxHorizonIdle, as a process with no checks would, and lets SpiceDB's
// garbage collection delete the rows of a write above it. The next read
// must not return the state from before that write.
func TestPGStateAfterIdleGC(t *testing.T) {
	ds, p, _ := openPGState(t)
	before := saRead(t, p)
	if err := saTx(t.Context(), ds, "acme", saAlice, "org:acme#member@user:dev|carol", nil); err != nil {
		t.Fatal(err)
	}
	// A later write, so that the collector's watermark lies above the
	// first one.
	if err := saTx(t.Context(), ds, "other", "", "org:other#member@user:dev|dave", nil); err != nil {
		t.Fatal(err)
	}
	written := saRead(t, p)
	if written.org("acme") == before.org("acme") {
		t.Fatalf("the write did not change acme's state: %s", before.org("acme"))
	}

	idle := *p.horizon.Load()
	idle.read = time.Now().Add(-2 * MaxHorizonAge)
	p.horizon.Store(&idle)
	gcds := datastore.UnwrapAs[datastore.GarbageCollectableDatastore](ds)
	if gcds == nil {
		t.Fatal("the datastore has no garbage collector")
	}
	gc, err := gcds.BuildGarbageCollector(t.Context())
	if err != nil {
		t.Fatalf("build the garbage collector: %v", err)
	}
	defer gc.Close()
	watermark, err := gc.TxIDBefore(t.Context(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("read the garbage collection watermark: %v", err)
	}
	deleted, err := gc.DeleteBeforeTx(t.Context(), watermark)
	if err != nil {
		t.Fatalf("collect garbage: %v", err)
	}
	if deleted.Transactions == 0 {
		t.Skip("a transaction elsewhere in the cluster held the collector back")
	}

	after := saRead(t, p)
	if got := after.org("acme"); got == before.org("acme") {
		t.Errorf("acme's state is back to its value before the write: %s", got)
	}
	if got := after.subject("acme", saAlice); got == before.subject("acme", saAlice) {
		t.Errorf("alice's state is back to its value before her write: %s", got)
	}
}
