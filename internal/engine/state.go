package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
// above the first horizon, the epoch. A horizon is the xmin of an earlier
// snapshot, so every transaction below it had finished when it was taken.
// A transaction that commits later adds a row above the horizon, and so a
// new count, even when it commits after a transaction with a higher xid.
// Each read sums the rows above the current horizon; the rows between the
// epoch and it were summed once, when the horizon passed them. An org's state is the
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
	moving  sync.Mutex // held by moveHorizon

	// last is the previous read, which a read returns again when no row
	// has been added above the horizon since (see read).
	last atomic.Pointer[pgSnapshot]
}

// horizon is an xid8, as text, and when it was read. Every transaction
// below it had ended by then.
type horizon struct {
	xid  string
	read time.Time

	// epoch is the first horizon of this sequence, and below sums up the
	// rows from epoch up to xid, which never change (see moveHorizon).
	epoch string
	below *pgSums
}

const (
	queryHorizon = `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`

	// querySummary sums up every row above the horizon, without reading
	// their metadata.
	querySummary = `SELECT count(*), coalesce(min(xid)::text, '0'), coalesce(max(xid)::text, '0')
		FROM relation_tuple_transaction WHERE xid >= $1::text::xid8`

	// selectGroups sums up rows by the org and the subject that Gatehouse
	// recorded in the transaction's metadata, or '' for none.
	selectGroups = `SELECT coalesce(metadata->>'` + metadataOrg + `', ''), coalesce(metadata->>'` + metadataSubject + `', ''),
		count(*), min(xid)::text, max(xid)::text
		FROM relation_tuple_transaction WHERE xid >= $1::text::xid8`

	// queryTransactions groups the rows above the horizon.
	queryTransactions = selectGroups + ` GROUP BY 1, 2`

	// queryPassed groups the rows that a move of the horizon passes.
	queryPassed = selectGroups + ` AND xid < $2::text::xid8 GROUP BY 1, 2`

	// maxGroupsBelow bounds the sums kept below the horizon: orgs plus
	// the principals with writes of their own. Past it, the next move of
	// the horizon starts over and changes every state.
	maxGroupsBelow = 100_000

	// maxHorizonIdle is how old a horizon may be when a read starts. Reads
	// move it after MaxHorizonAge, so only a process with no state read for
	// longer finds it older. Rows above it were written after it was read,
	// apart from those of transactions then running, so they are younger
	// than the garbage collection window (at least MinGCWindow) and still
	// there. An older horizon starts over, which changes every state.
	maxHorizonIdle = MaxHorizonAge + MaxHorizonAge/2

	// maxTransactionsAboveHorizon is how many rows a state read counts
	// before the horizon moves up, which keeps the grouped query short.
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

// moveHorizon moves the horizon up to the oldest transaction still
// running. The rows it passes belonged to transactions that had all ended,
// so they never change: it adds them to the horizon's sums of the rows
// below it instead of dropping them, and states keep their names. Only
// once the sums below hold more than maxGroupsBelow groups does it start
// over from the new horizon, which changes every state.
func (p *pgTransactions) moveHorizon(ctx context.Context) error {
	return p.move(ctx, false)
}

// move moves the horizon, and starts over from the new one when
// startOver is set.
func (p *pgTransactions) move(ctx context.Context, startOver bool) error {
	p.moving.Lock()
	defer p.moving.Unlock()
	var xid string
	if err := p.pool.QueryRow(ctx, queryHorizon).Scan(&xid); err != nil {
		return fmt.Errorf("read transaction horizon: %w", err)
	}
	old := p.horizon.Load()
	if old == nil || startOver || old.below.groups() > maxGroupsBelow {
		p.horizon.Store(&horizon{xid: xid, read: time.Now(), epoch: xid, below: newPGSums()})
		return nil
	}
	if xid == old.xid {
		p.horizon.Store(&horizon{xid: xid, read: time.Now(), epoch: old.epoch, below: old.below})
		return nil
	}
	passed, err := p.sums(ctx, queryPassed, old.xid, xid)
	if err != nil {
		return err
	}
	below := old.below.clone()
	below.merge(passed)
	p.horizon.Store(&horizon{xid: xid, read: time.Now(), epoch: old.epoch, below: below})
	return nil
}

// read sums up the rows above the horizon. It first sums them all, which
// reads no metadata. Rows above the horizon are only ever added, so the
// same count means the same rows, and then it returns the previous read
// again. The grouped query, which reads the metadata of every row, runs
// only after a write.
func (p *pgTransactions) read(ctx context.Context) (snapshot, error) {
	h := p.horizon.Load()
	if time.Since(h.read) > maxHorizonIdle {
		// SpiceDB's garbage collection may have deleted rows above h by
		// now, and sums without them could equal an earlier state's.
		if err := p.move(ctx, true); err != nil {
			return nil, err
		}
		h = p.horizon.Load()
	}
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
	if last := p.last.Load(); last != nil && last.h == h && last.above.all == all {
		if err := p.maybeMoveHorizon(ctx, h, all); err != nil {
			return nil, err
		}
		return *last, nil
	}

	above, err := p.sums(ctx, queryTransactions, h.xid)
	if err != nil {
		return nil, err
	}
	s := pgSnapshot{h: h, above: above}
	p.last.Store(&s)
	if err := p.maybeMoveHorizon(ctx, h, above.all); err != nil {
		return nil, err
	}
	return s, nil
}

// sums runs query, one of the grouped queries, with args.
func (p *pgTransactions) sums(ctx context.Context, query string, args ...any) (*pgSums, error) {
	rows, err := p.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read transactions: %w", err)
	}
	defer rows.Close()
	s := newPGSums()
	for rows.Next() {
		var org, subject, lowest, highest string
		var t transactions
		if err := rows.Scan(&org, &subject, &t.count, &lowest, &highest); err != nil {
			return nil, fmt.Errorf("read transactions: %w", err)
		}
		if t.lowest, err = strconv.ParseUint(lowest, 10, 64); err != nil {
			return nil, fmt.Errorf("read transactions: xid %q: %w", lowest, err)
		}
		if t.highest, err = strconv.ParseUint(highest, 10, 64); err != nil {
			return nil, fmt.Errorf("read transactions: xid %q: %w", highest, err)
		}
		s.add(org, subject, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read transactions: %w", err)
	}
	return s, nil
}

// maybeMoveHorizon moves the horizon up once too many rows lie above h, or
// h is too old. The state just read stays valid, and so do the states of
// the next reads, unless the move starts over (see moveHorizon).
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

// pgSums sums up rows of relation_tuple_transaction by org and subject.
type pgSums struct {
	all   transactions
	noOrg transactions // the rows of no org
	orgs  map[string]*orgTransactions
}

// orgTransactions sums up the rows of one org: all of them, those of no
// one subject, and those of each subject.
type orgTransactions struct {
	all, wide transactions
	subjects  map[string]transactions
}

func newPGSums() *pgSums { return &pgSums{orgs: make(map[string]*orgTransactions)} }

// add counts t, the sum of the rows of org and subject.
func (s *pgSums) add(org, subject string, t transactions) {
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

// merge adds the sums of u, rows disjoint from those of s.
func (s *pgSums) merge(u *pgSums) {
	if u.noOrg.count > 0 {
		s.add("", "", u.noOrg)
	}
	for org, o := range u.orgs {
		if o.wide.count > 0 {
			s.add(org, "", o.wide)
		}
		for subject, t := range o.subjects {
			s.add(org, subject, t)
		}
	}
}

// clone returns a copy of s that shares nothing that merge changes.
func (s *pgSums) clone() *pgSums {
	c := &pgSums{all: s.all, noOrg: s.noOrg, orgs: make(map[string]*orgTransactions, len(s.orgs))}
	for org, o := range s.orgs {
		c.orgs[org] = &orgTransactions{all: o.all, wide: o.wide, subjects: maps.Clone(o.subjects)}
	}
	return c
}

// groups counts the orgs and subjects that s keeps sums of.
func (s *pgSums) groups() int {
	n := len(s.orgs)
	for _, o := range s.orgs {
		n += len(o.subjects)
	}
	return n
}

// noTransactions is the sums of an org with no rows. Nothing changes it.
var noTransactions orgTransactions

// org returns the sums of the org id, which callers must not change.
func (s *pgSums) org(id string) *orgTransactions {
	if o := s.orgs[id]; o != nil {
		return o
	}
	return &noTransactions
}

// pgSnapshot is one read of relation_tuple_transaction: the rows above its
// horizon, read now, and the rows below, summed up when the horizon moved.
// Together they are every row since the horizon's epoch, so a state names
// the epoch and the sums of both.
type pgSnapshot struct {
	h     *horizon
	above *pgSums
}

func (s pgSnapshot) prefix() string { return "pg/" + s.h.epoch + "/" }

func (s pgSnapshot) whole() string { return s.prefix() + s.h.below.all.add(s.above.all).String() }

func (s pgSnapshot) noOrg() transactions { return s.h.below.noOrg.add(s.above.noOrg) }

func (s pgSnapshot) global() string { return s.prefix() + s.noOrg().String() }

func (s pgSnapshot) org(id string) string {
	all := s.h.below.org(id).all.add(s.above.org(id).all)
	return s.prefix() + s.noOrg().String() + "/" + id + "/" + all.String()
}

func (s pgSnapshot) subject(org, subject string) string {
	base, own := s.base(org)
	return principalState(base, subject, own(subject))
}

func (s pgSnapshot) principals(org string) (string, func(string) string, bool) {
	base, own := s.base(org)
	return "base/" + base, func(subject string) string {
		return principalState(base, subject, own(subject))
	}, true
}

// base returns the state of org without the rows of any one subject, and
// a function that sums up the rows of each subject. A snapshot is not
// changed after its read, so callers may keep the function.
func (s pgSnapshot) base(org string) (string, func(subject string) transactions) {
	below, above := s.h.below.org(org), s.above.org(org)
	wide := below.wide.add(above.wide)
	return s.prefix() + s.noOrg().String() + "/" + org + "/" + wide.String(), func(subject string) transactions {
		return below.subjects[subject].add(above.subjects[subject])
	}
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
