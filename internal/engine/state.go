package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// snapshot is one read of the datastore's state. Two snapshots have the
// same whole state only if no relationship write committed between their
// reads, and the same state for an org only if no write that may change
// that org's relationships committed between them.
//
// subject is the state of an org for one principal (a user or a service,
// as "type:id"): it leaves out the writes recorded under the org's other
// principals (see ForOrg), which change only their own check results. It
// names the principal, so that the states of two principals never look
// alike. An org's state read after a principal's state covers every write
// that the principal's state covers.
//
// global is the state of the writes of no org alone. Only such writes
// remove a resource's link to its parent (see ForOrg), so a resource found
// in an org stays there while that state lasts.
//
// principals returns the state of an org without the writes recorded under
// any one principal (the org's base), and a function that gives each
// principal's state as of this read. ok is false if the snapshot does not
// keep principals apart from the base.
type snapshot interface {
	whole() string
	org(id string) string
	subject(org, subject string) string
	global() string
	principals(org string) (base string, of func(subject string) string, ok bool)
}

// wholeOnly is a snapshot without per-org states: every org's state is the
// whole state.
type wholeOnly string

func (w wholeOnly) whole() string                 { return string(w) }
func (w wholeOnly) org(string) string             { return string(w) }
func (w wholeOnly) subject(string, string) string { return string(w) }
func (w wholeOnly) global() string                { return string(w) }
func (w wholeOnly) principals(string) (string, func(string) string, bool) {
	return "", nil, false
}

// headRevision reads the state of a datastore from its head revision, which
// every write moves. It serves datastores with writers that Gatehouse
// cannot observe, so it has no per-org states.
type headRevision struct{ ds datastore.Datastore }

func (h headRevision) read(ctx context.Context) (snapshot, error) {
	rev, err := readHead(ctx, h.ds)
	if err != nil {
		return nil, err
	}
	return wholeOnly(rev.String()), nil
}

func readHead(ctx context.Context, ds datastore.Datastore) (datastore.Revision, error) {
	rev, err := ds.HeadRevision(ctx)
	if err != nil {
		return nil, err
	}
	if rev.Revision == nil {
		return nil, errors.New("datastore has no revision")
	}
	return rev.Revision, nil
}

// counted reads the state of the in-memory datastore that an Engine owns.
// Every write to it goes through a countingDatastore. The whole state is
// the head revision, and an org's state counts the writes to it and the
// writes of no org.
type counted struct {
	ds     datastore.Datastore
	counts *writeCounts
}

func (c counted) read(ctx context.Context) (snapshot, error) {
	// The count comes first: every write it counts has committed, so the
	// head revision read next, and any revision pinned for it, contains
	// them all.
	global, _ := c.counts.of("")
	rev, err := readHead(ctx, c.ds)
	if err != nil {
		return nil, err
	}
	return countedSnapshot{head: rev.String(), noOrg: global, counts: c.counts}, nil
}

// countedSnapshot holds the count of writes of no org at its read, and
// reads an org's count when asked. A count read later is higher or equal,
// so an org's state is at least as fresh as the read.
type countedSnapshot struct {
	head   string
	noOrg  uint64 // writes of no org
	counts *writeCounts
}

func (s countedSnapshot) whole() string { return "head/" + s.head }

func (s countedSnapshot) global() string { return fmt.Sprintf("count/%d", s.noOrg) }

func (s countedSnapshot) org(id string) string {
	_, org := s.counts.of(id)
	return fmt.Sprintf("count/%d/%s/%d", s.noOrg, id, org)
}

func (s countedSnapshot) subject(org, subject string) string {
	wide, own := s.counts.ofSubject(org, subject)
	return fmt.Sprintf("count/%d/%s/%d/%s/%d", s.noOrg, org, wide, subject, own)
}

// principals reports no base: the counts are read when asked, not at the
// snapshot's read, so a principal's state as of this read is not known.
func (s countedSnapshot) principals(string) (string, func(string) string, bool) {
	return "", nil, false
}

// pgTransactions reads the state of SpiceDB's PostgreSQL datastore from
// relation_tuple_transaction, the table that gets one row in every SpiceDB
// write transaction. The head revision would not do: it is a PostgreSQL
// snapshot, which moves with every write transaction in the whole cluster,
// Gatehouse's own audit rows included.
//
// The whole state is the count, lowest and highest xid of the rows at or
// above a horizon. The horizon is the xmin of an earlier snapshot, so every
// transaction below it had finished when it was taken. A transaction that
// commits later adds a row above the horizon, and so a new count, even when
// it commits after a transaction with a higher xid. An org's state is the
// same sums over the rows whose metadata names that org and the rows that
// name none. An org's state for a subject leaves out the org's rows that
// name another subject. Gatehouse records the org of each write it makes
// (ForOrg). Every other write, such as one through another SpiceDB server
// on the same database, changes every org's state.
//
// NOTE: this reads a table of SpiceDB's schema, as migrated by v1.56.2;
// TestCheckCacheIgnoresOtherWrites fails if a SpiceDB upgrade changes it.
// A transaction left open anywhere in the cluster holds the horizon back,
// so every read then counts more rows: slower, still correct.
type pgTransactions struct {
	pool    *pgxpool.Pool
	horizon atomic.Pointer[horizon]

	// last is the previous read, which a read returns again when no row
	// has been added above the horizon since (see read).
	last atomic.Pointer[pgSnapshot]
}

// horizon is an xid8, as text, and when it was read.
type horizon struct {
	xid  string
	read time.Time
}

const (
	queryHorizon = `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`

	// querySummary sums up every row above the horizon, without reading
	// their metadata.
	querySummary = `SELECT count(*), coalesce(min(xid)::text, '0'), coalesce(max(xid)::text, '0')
		FROM relation_tuple_transaction WHERE xid >= $1::text::xid8`

	// queryTransactions groups the rows by the org and the subject that
	// Gatehouse recorded in the transaction's metadata, or '' for none.
	queryTransactions = `SELECT coalesce(metadata->>'` + metadataOrg + `', ''), coalesce(metadata->>'` + metadataSubject + `', ''),
		count(*), min(xid)::text, max(xid)::text
		FROM relation_tuple_transaction WHERE xid >= $1::text::xid8 GROUP BY 1, 2`

	// maxTransactionsAboveHorizon is how many rows a state read counts
	// before the horizon moves up. Moving it changes every state, so it
	// happens only after that many writes, which change it anyway.
	maxTransactionsAboveHorizon = 1000

	// MaxHorizonAge is how long the horizon stays where it is even without
	// writes. SpiceDB's garbage collection deletes rows of transactions
	// older than its window, and rows above the horizon must stay, or two
	// different sets of rows could sum up alike, so the garbage collection
	// window must be longer (see MinGCWindow).
	MaxHorizonAge = time.Hour
)

func newPGTransactions(ctx context.Context, pool *pgxpool.Pool) (*pgTransactions, error) {
	p := &pgTransactions{pool: pool}
	if err := p.moveHorizon(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pgTransactions) moveHorizon(ctx context.Context) error {
	var xid string
	if err := p.pool.QueryRow(ctx, queryHorizon).Scan(&xid); err != nil {
		return fmt.Errorf("read transaction horizon: %w", err)
	}
	p.horizon.Store(&horizon{xid: xid, read: time.Now()})
	return nil
}

// read sums up the rows above the horizon. It first sums them all, which
// reads no metadata. Rows above the horizon are only ever added, so the
// same count means the same rows, and then it returns the previous read
// again. The grouped query, which reads the metadata of every row, runs
// only after a write.
func (p *pgTransactions) read(ctx context.Context) (snapshot, error) {
	h := p.horizon.Load()
	var all transactions
	var lowest, highest string
	if err := p.pool.QueryRow(ctx, querySummary, h.xid).Scan(&all.count, &lowest, &highest); err != nil {
		return nil, fmt.Errorf("read transactions: %w", err)
	}
	var err error
	if all.lowest, err = strconv.ParseUint(lowest, 10, 64); err != nil {
		return nil, fmt.Errorf("read transactions: xid %q: %w", lowest, err)
	}
	if all.highest, err = strconv.ParseUint(highest, 10, 64); err != nil {
		return nil, fmt.Errorf("read transactions: xid %q: %w", highest, err)
	}
	if last := p.last.Load(); last != nil && last.horizon == h.xid && last.all == all {
		if err := p.maybeMoveHorizon(ctx, h, all); err != nil {
			return nil, err
		}
		return *last, nil
	}

	rows, err := p.pool.Query(ctx, queryTransactions, h.xid)
	if err != nil {
		return nil, fmt.Errorf("read transactions: %w", err)
	}
	s := pgSnapshot{horizon: h.xid, orgs: make(map[string]*orgTransactions)}
	for rows.Next() {
		var org, subject, lowest, highest string
		var t transactions
		if err := rows.Scan(&org, &subject, &t.count, &lowest, &highest); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read transactions: %w", err)
		}
		if t.lowest, err = strconv.ParseUint(lowest, 10, 64); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read transactions: xid %q: %w", lowest, err)
		}
		if t.highest, err = strconv.ParseUint(highest, 10, 64); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read transactions: xid %q: %w", highest, err)
		}
		s.add(org, subject, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read transactions: %w", err)
	}
	p.last.Store(&s)
	if err := p.maybeMoveHorizon(ctx, h, s.all); err != nil {
		return nil, err
	}
	return s, nil
}

// maybeMoveHorizon moves the horizon up once too many rows lie above h, or
// h is too old. The state just read stays valid; only the next reads
// change.
func (p *pgTransactions) maybeMoveHorizon(ctx context.Context, h *horizon, all transactions) error {
	if all.count > maxTransactionsAboveHorizon || time.Since(h.read) > MaxHorizonAge {
		return p.moveHorizon(ctx)
	}
	return nil
}

// transactions sums up some rows of relation_tuple_transaction: how many,
// and their lowest and highest xid.
type transactions struct {
	count           int64
	lowest, highest uint64
}

func (t transactions) add(u transactions) transactions {
	switch {
	case u.count == 0:
		return t
	case t.count == 0:
		return u
	}
	return transactions{count: t.count + u.count, lowest: min(t.lowest, u.lowest), highest: max(t.highest, u.highest)}
}

func (t transactions) String() string { return fmt.Sprintf("%d/%d/%d", t.count, t.lowest, t.highest) }

// pgSnapshot is one read of relation_tuple_transaction above the horizon.
type pgSnapshot struct {
	horizon string
	all     transactions
	noOrg   transactions // the rows of no org
	orgs    map[string]*orgTransactions
}

// orgTransactions sums up the rows of one org: all of them, those of no
// one subject, and those of each subject.
type orgTransactions struct {
	all, wide transactions
	subjects  map[string]transactions
}

// add counts t, the sum of the rows of org and subject.
func (s *pgSnapshot) add(org, subject string, t transactions) {
	s.all = s.all.add(t)
	if org == "" {
		s.noOrg = s.noOrg.add(t)
		return
	}
	o := s.orgs[org]
	if o == nil {
		o = &orgTransactions{subjects: make(map[string]transactions)}
		s.orgs[org] = o
	}
	o.all = o.all.add(t)
	if subject == "" {
		o.wide = o.wide.add(t)
	} else {
		o.subjects[subject] = o.subjects[subject].add(t)
	}
}

func (s pgSnapshot) whole() string { return "pg/" + s.horizon + "/" + s.all.String() }

func (s pgSnapshot) global() string { return "pg/" + s.horizon + "/" + s.noOrg.String() }

func (s pgSnapshot) org(id string) string {
	var all transactions
	if o := s.orgs[id]; o != nil {
		all = o.all
	}
	return "pg/" + s.horizon + "/" + s.noOrg.String() + "/" + id + "/" + all.String()
}

func (s pgSnapshot) subject(org, subject string) string {
	base, own := s.base(org)
	return principalState(base, subject, own[subject])
}

func (s pgSnapshot) principals(org string) (string, func(string) string, bool) {
	base, own := s.base(org)
	return "base/" + base, func(subject string) string {
		return principalState(base, subject, own[subject])
	}, true
}

// base returns the state of org without the rows of any one subject, and
// the rows of each subject. A snapshot is not changed after its read, so
// callers may keep the returned map.
func (s pgSnapshot) base(org string) (string, map[string]transactions) {
	var wide transactions
	var own map[string]transactions
	if o := s.orgs[org]; o != nil {
		wide, own = o.wide, o.subjects
	}
	return "pg/" + s.horizon + "/" + s.noOrg.String() + "/" + org + "/" + wide.String(), own
}

func principalState(base, subject string, own transactions) string {
	return base + "/" + subject + "/" + own.String()
}

// coalesced shares state reads between concurrent callers without ever
// handing a caller a read that started before it asked. A caller joins the
// next read; one read runs at a time, and when it ends, the next one starts
// at once for everyone who arrived meanwhile. SpiceDB's own deduplication
// lets a caller join a read already running, which can predate a write
// that has returned, so it is not used here.
//
// Reads are not spaced out. A wait of 1 ms between reads shared by several
// callers lowered the cost per check under load, but it added up to that
// much to every cached check. It cut the peak throughput of cached checks
// on PostgreSQL at 1M relationships by about a third, below raw SpiceDB's
// on repeated questions (docs/benchmarks.md).
type coalesced struct {
	reader stateReader

	// durations, when not nil, observes how long each successful read
	// took. Every check and lookup with a result cache waits for one read
	// that starts after it arrived, so a slow read delays them all.
	durations prometheus.Observer

	mu      sync.Mutex
	next    *stateCall // the read that new callers join, not yet started
	running bool
}

// stateCall is one shared read.
type stateCall struct {
	done  chan struct{}
	state snapshot
	err   error
}

// readTimeout bounds one shared read, which outlives any one caller.
const readTimeout = 10 * time.Second

func (c *coalesced) read(ctx context.Context) (snapshot, error) {
	c.mu.Lock()
	if c.next == nil {
		c.next = &stateCall{done: make(chan struct{})}
	}
	call := c.next
	if !c.running {
		c.running = true
		go c.run()
	}
	c.mu.Unlock()

	select {
	case <-call.done:
		return call.state, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run performs the next read while callers wait for one. It takes the
// read from next only when the read starts, so that callers who arrive
// during a read join the one after it.
func (c *coalesced) run() {
	for {
		c.mu.Lock()
		call := c.next
		c.next = nil
		if call == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		start := time.Now()
		call.state, call.err = c.reader.read(ctx)
		if c.durations != nil && call.err == nil {
			c.durations.Observe(time.Since(start).Seconds())
		}
		cancel()
		close(call.done)
	}
}

// stateReadHistogram returns the histogram of state read durations,
// registered with registry once.
func stateReadHistogram(registry prometheus.Registerer) (prometheus.Histogram, error) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "gatehouse_state_read_duration_seconds",
		Help:    "Duration of the successful reads of the datastore state that every cached check and lookup waits for (PostgreSQL only).",
		Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1},
	})
	if err := registry.Register(h); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			return nil, fmt.Errorf("register metric gatehouse_state_read_duration_seconds: %w", err)
		}
		return already.ExistingCollector.(prometheus.Histogram), nil
	}
	return h, nil
}
