package authversion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Channel is the PostgreSQL NOTIFY channel on which every bump is announced.
const Channel = "gatehouse_auth_versions"

// Postgres is a Store in the auth_versions table of Gatehouse's schema.
// Reads are served from an in-process cache that LISTEN/NOTIFY keeps
// current across instances; while the listener is down, every read goes
// to the database.
type Postgres struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	hub    hub

	listening atomic.Bool
	mu        sync.RWMutex
	cache     map[string]int64
	epoch     uint64 // counts cache resets; guarded by mu
}

var _ Store = (*Postgres)(nil)

// NewPostgres returns a Store on pool. Call Run to keep its cache current;
// until then it reads the database every time.
func NewPostgres(pool *pgxpool.Pool, logger *slog.Logger) *Postgres {
	return &Postgres{pool: pool, logger: logger, cache: map[string]int64{}}
}

func (p *Postgres) Get(ctx context.Context, principal string) (int64, error) {
	if p.listening.Load() {
		p.mu.RLock()
		v, ok := p.cache[principal]
		p.mu.RUnlock()
		if ok {
			return v, nil
		}
	}

	return p.Latest(ctx, principal)
}

// Latest reads principal's version from the database, and caches it
// while the listener runs.
func (p *Postgres) Latest(ctx context.Context, principal string) (int64, error) {
	// A read that overlaps a cache reset may predate a change that the
	// reset's missed notifications carried: cache it only if no reset
	// happened since it began.
	p.mu.RLock()
	epoch := p.epoch
	p.mu.RUnlock()

	var v int64
	err := p.pool.QueryRow(ctx, `SELECT version FROM auth_versions WHERE principal = $1`, principal).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		v = Initial
	} else if err != nil {
		return 0, fmt.Errorf("read auth version: %w", err)
	}
	if p.listening.Load() {
		p.rememberSince(epoch, Change{Principal: principal, Version: v})
	}
	return v, nil
}

// remember stores c unless the cache already holds a newer version.
func (p *Postgres) remember(c Change) {
	p.mu.Lock()
	if c.Version > p.cache[c.Principal] {
		p.cache[c.Principal] = c.Version
	}
	p.mu.Unlock()
}

// rememberSince stores c like remember, unless the cache was reset after
// epoch.
func (p *Postgres) rememberSince(epoch uint64, c Change) {
	p.mu.Lock()
	if p.epoch == epoch && c.Version > p.cache[c.Principal] {
		p.cache[c.Principal] = c.Version
	}
	p.mu.Unlock()
}

// resetCache empties the cache and starts a new epoch.
func (p *Postgres) resetCache() {
	p.mu.Lock()
	p.cache = map[string]int64{}
	p.epoch++
	p.mu.Unlock()
}

// maxNotifyPayload keeps each NOTIFY payload under PostgreSQL's limit of
// 8000 bytes.
const maxNotifyPayload = 7000

func (p *Postgres) Bump(ctx context.Context, principals []string) ([]Change, error) {
	principals = dedupe(principals)
	if len(principals) == 0 {
		return nil, nil
	}
	var changes []Change
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		changes = changes[:0]
		rows, err := tx.Query(ctx, `
			INSERT INTO auth_versions (principal, version)
			SELECT unnest($1::text[]), 2
			ON CONFLICT (principal) DO UPDATE SET version = auth_versions.version + 1, updated_at = now()
			RETURNING principal, version`, principals)
		if err != nil {
			return err
		}
		for rows.Next() {
			var c Change
			if err := rows.Scan(&c.Principal, &c.Version); err != nil {
				return err
			}
			changes = append(changes, c)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// NOTIFY is delivered at commit, so listeners never see a bump
		// that did not happen.
		for _, batch := range batches(changes) {
			if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, batch); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bump auth versions: %w", err)
	}
	for _, c := range changes {
		p.remember(c)
	}
	return changes, nil
}

func batches(changes []Change) []string {
	var out []string
	var batch []Change
	size := 2
	for _, c := range changes {
		n := len(c.Principal) + 40
		if len(batch) > 0 && size+n > maxNotifyPayload {
			data, _ := json.Marshal(batch)
			out = append(out, string(data))
			batch, size = nil, 2
		}
		batch = append(batch, c)
		size += n
	}
	if len(batch) > 0 {
		data, _ := json.Marshal(batch)
		out = append(out, string(data))
	}
	return out
}

func (p *Postgres) Subscribe() (<-chan Change, func()) { return p.hub.subscribe() }

// Run listens for bumps from every instance until ctx ends, updating the
// cache and the subscribers. After a lost connection it clears the cache,
// because notifications may have been missed, and reconnects with backoff.
//
// Subscribers are reset too, whenever the listener goes down: changes made
// on other instances meanwhile never reach them, so they must read the
// versions they care about again.
func (p *Postgres) Run(ctx context.Context) {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	for ctx.Err() == nil {
		connected, err := p.listen(ctx)
		p.listening.Store(false)
		p.resetCache()
		p.hub.resetAll()
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = minBackoff
		}
		p.logger.Warn("auth version listener stopped; reading versions from the database until it reconnects", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// listen follows notifications until an error; connected reports whether
// it got as far as listening.
func (p *Postgres) listen(ctx context.Context) (connected bool, err error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return false, err
	}
	defer func() {
		// The connection returns to the pool: stop listening on it.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "UNLISTEN *")
	}()

	p.resetCache()
	p.listening.Store(true)
	p.logger.Debug("auth version listener connected")

	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		var changes []Change
		if err := json.Unmarshal([]byte(n.Payload), &changes); err != nil {
			p.logger.Warn("ignore malformed auth version notification", "error", err)
			continue
		}
		for _, c := range changes {
			p.remember(c)
		}
		p.hub.publish(changes)
	}
}

// Listening reports whether the cache is being kept current.
func (p *Postgres) Listening() bool { return p.listening.Load() }
