package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/jackc/pgx/v5/pgxpool"
)

// headRevision reads the state of an in-memory datastore: its head
// revision, which only SpiceDB's own writes move.
type headRevision struct{ ds datastore.Datastore }

func (h headRevision) state(ctx context.Context) (string, error) {
	rev, err := h.ds.HeadRevision(ctx)
	if err != nil {
		return "", err
	}
	if rev.Revision == nil {
		return "", errors.New("datastore has no revision")
	}
	return rev.Revision.String(), nil
}

// pgTransactions reads the state of SpiceDB's PostgreSQL datastore from
// relation_tuple_transaction, the table that gets one row in every SpiceDB
// write transaction. The head revision would not do: it is a PostgreSQL
// snapshot, which moves with every write transaction in the whole cluster,
// Gatehouse's own audit rows included.
//
// The state is the count, lowest and highest xid of the rows at or above a
// horizon. The horizon is the xmin of an earlier snapshot, so every
// transaction below it had finished when it was taken. A transaction that
// commits later adds a row above the horizon, and so a new count, even when
// it commits after a transaction with a higher xid.
//
// NOTE: this reads a table of SpiceDB's schema, as migrated by v1.56.2;
// TestCheckCacheIgnoresOtherWrites fails if a SpiceDB upgrade changes it.
// A transaction left open anywhere in the cluster holds the horizon back,
// so every read then counts more rows: slower, still correct.
type pgTransactions struct {
	pool    *pgxpool.Pool
	horizon atomic.Pointer[string] // an xid8, as text
}

const (
	queryHorizon      = `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`
	queryTransactions = `SELECT count(*), coalesce(min(xid)::text, ''), coalesce(max(xid)::text, '')
		FROM relation_tuple_transaction WHERE xid >= $1::text::xid8`

	// maxTransactionsAboveHorizon is how many rows a state read counts
	// before the horizon moves up. Moving it changes every state, so it
	// happens only after that many writes, which change it anyway.
	maxTransactionsAboveHorizon = 1000
)

func newPGTransactions(ctx context.Context, pool *pgxpool.Pool) (*pgTransactions, error) {
	p := &pgTransactions{pool: pool}
	if err := p.moveHorizon(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pgTransactions) moveHorizon(ctx context.Context) error {
	var horizon string
	if err := p.pool.QueryRow(ctx, queryHorizon).Scan(&horizon); err != nil {
		return fmt.Errorf("read transaction horizon: %w", err)
	}
	p.horizon.Store(&horizon)
	return nil
}

func (p *pgTransactions) state(ctx context.Context) (string, error) {
	horizon := *p.horizon.Load()
	var count int64
	var lowest, highest string
	if err := p.pool.QueryRow(ctx, queryTransactions, horizon).Scan(&count, &lowest, &highest); err != nil {
		return "", fmt.Errorf("read transactions: %w", err)
	}
	if count > maxTransactionsAboveHorizon {
		// The state just read stays valid; only the next reads change.
		if err := p.moveHorizon(ctx); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%s/%d/%s/%s", horizon, count, lowest, highest), nil
}

// coalesced shares state reads between concurrent callers without ever
// handing a caller a read that started before it asked. A caller joins the
// next read; one read runs at a time, and when it ends, the next one starts
// for everyone who arrived meanwhile. SpiceDB's own deduplication lets a
// caller join a read already running, which can predate a write that has
// returned, so it is not used here.
type coalesced struct {
	reader stateReader

	mu      sync.Mutex
	next    *stateCall // the read that starts after the running one
	running bool
}

// stateCall is one shared read.
type stateCall struct {
	done  chan struct{}
	state string
	err   error
}

// readTimeout bounds one shared read, which outlives any one caller.
const readTimeout = 10 * time.Second

func (c *coalesced) state(ctx context.Context) (string, error) {
	c.mu.Lock()
	if c.next == nil {
		c.next = &stateCall{done: make(chan struct{})}
	}
	call := c.next
	if !c.running {
		c.running = true
		c.next = nil
		go c.run(call)
	}
	c.mu.Unlock()

	select {
	case <-call.done:
		return call.state, call.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// run performs call, then each read that callers joined meanwhile.
func (c *coalesced) run(call *stateCall) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		call.state, call.err = c.reader.state(ctx)
		cancel()
		close(call.done)

		c.mu.Lock()
		call = c.next
		c.next = nil
		if call == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}
