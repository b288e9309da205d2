package links

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// PostgresStore is a Store in the links and link_redemptions tables of
// Gatehouse's schema.
type PostgresStore struct {
	pool *pgxpool.Pool
}

var _ Store = (*PostgresStore)(nil)

// NewPostgresStore returns a Store on pool.
func NewPostgresStore(pool *pgxpool.Pool) *PostgresStore { return &PostgresStore{pool: pool} }

// sweepLockID is the transaction-level advisory lock that lets one
// instance at a time run the link scheduler.
const sweepLockID = 0x6c696e6b // "link"

const linkColumns = `id, token_hash, resource, org, role, audience, expires_at, max_uses, uses, created_by, created_at, state`

func scanLink(row pgx.Row) (Link, error) {
	var l Link
	var resource, org string
	var maxUses *int32
	var uses int32
	err := row.Scan(&l.ID, &l.TokenHash, &resource, &org, &l.Role, &l.Audience, &l.ExpiresAt, &maxUses, &uses, &l.CreatedBy, &l.CreatedAt, &l.State)
	if errors.Is(err, pgx.ErrNoRows) {
		return Link{}, errNoLink
	}
	if err != nil {
		return Link{}, fmt.Errorf("read link: %w", err)
	}
	if l.Resource, err = object.ParseResource(resource); err != nil {
		return Link{}, fmt.Errorf("read link %q: %w", l.ID, err)
	}
	if l.Org, err = object.ParseResource(org); err != nil {
		return Link{}, fmt.Errorf("read link %q: %w", l.ID, err)
	}
	if maxUses != nil {
		l.MaxUses = int(*maxUses)
	}
	l.Uses = int(uses)
	return l, nil
}

func (p *PostgresStore) queryLinks(ctx context.Context, sql string, args ...any) ([]Link, error) {
	rows, err := p.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	defer rows.Close()
	var out []Link
	for rows.Next() {
		l, err := scanLink(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return out, nil
}

func (p *PostgresStore) Insert(ctx context.Context, l Link) error {
	var maxUses *int32
	if l.MaxUses > 0 {
		n := int32(l.MaxUses)
		maxUses = &n
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO links (`+linkColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		l.ID, l.TokenHash, l.Resource.String(), l.Org.String(), l.Role, l.Audience, l.ExpiresAt, maxUses, int32(l.Uses), l.CreatedBy, l.CreatedAt, l.State)
	if err != nil {
		return fmt.Errorf("insert link: %w", err)
	}
	return nil
}

func (p *PostgresStore) Get(ctx context.Context, id string) (Link, error) {
	return scanLink(p.pool.QueryRow(ctx, `SELECT `+linkColumns+` FROM links WHERE id = $1`, id))
}

func (p *PostgresStore) ByTokenHash(ctx context.Context, hash []byte) (Link, error) {
	return scanLink(p.pool.QueryRow(ctx, `SELECT `+linkColumns+` FROM links WHERE token_hash = $1`, hash))
}

func (p *PostgresStore) List(ctx context.Context, resource, after string, limit int) ([]Link, error) {
	return p.queryLinks(ctx, `SELECT `+linkColumns+` FROM links WHERE resource = $1 AND id > $2 ORDER BY id LIMIT $3`, resource, after, limit)
}

func (p *PostgresStore) ListActive(ctx context.Context, after string, limit int) ([]Link, error) {
	return p.queryLinks(ctx, `SELECT `+linkColumns+` FROM links WHERE state = 'active' AND id > $1 ORDER BY id LIMIT $2`, after, limit)
}

func (p *PostgresStore) Expired(ctx context.Context, now time.Time, limit int) ([]Link, error) {
	return p.queryLinks(ctx, `SELECT `+linkColumns+` FROM links WHERE state = 'active' AND expires_at <= $1 ORDER BY expires_at LIMIT $2`, now, limit)
}

func (p *PostgresStore) End(ctx context.Context, id, state string, at time.Time) (bool, error) {
	tag, err := p.pool.Exec(ctx, `UPDATE links SET state = $2, ended_at = $3 WHERE id = $1 AND state = 'active'`, id, state, at)
	if err != nil {
		return false, fmt.Errorf("end link %q: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Redeem counts the redemption with one conditional UPDATE, whose row lock
// serializes concurrent redemptions of the same link, so the count never
// passes max_uses.
func (p *PostgresStore) Redeem(ctx context.Context, id, principal string, at time.Time) (bool, error) {
	var counted bool
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO link_redemptions (link_id, principal, redeemed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, id, principal, at)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		tag, err = tx.Exec(ctx, `UPDATE links SET uses = uses + 1 WHERE id = $1 AND state = 'active' AND (max_uses IS NULL OR uses < max_uses)`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errUsedUp
		}
		counted = true
		return nil
	})
	if errors.Is(err, errUsedUp) {
		return false, errUsedUp
	}
	if err != nil {
		return false, fmt.Errorf("redeem link %q: %w", id, err)
	}
	if !counted {
		// A repeated redemption still fails on a link that ended since.
		l, err := p.Get(ctx, id)
		if err != nil {
			return false, err
		}
		if l.State != StateActive {
			return false, errUsedUp
		}
	}
	return counted, nil
}

func (p *PostgresStore) Redeemed(ctx context.Context, id, principal string) (bool, error) {
	var found bool
	err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM link_redemptions WHERE link_id = $1 AND principal = $2)`, id, principal).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("read redemption of link %q: %w", id, err)
	}
	return found, nil
}

func (p *PostgresStore) Unredeem(ctx context.Context, id, principal string) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM link_redemptions WHERE link_id = $1 AND principal = $2`, id, principal)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE links SET uses = uses - 1 WHERE id = $1 AND uses > 0`, id)
		return err
	})
}

func (p *PostgresStore) Redeemers(ctx context.Context, id string) ([]string, error) {
	rows, err := p.pool.Query(ctx, `SELECT principal FROM link_redemptions WHERE link_id = $1 ORDER BY principal`, id)
	if err != nil {
		return nil, fmt.Errorf("list redeemers of link %q: %w", id, err)
	}
	principals, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list redeemers of link %q: %w", id, err)
	}
	return principals, nil
}

// Exclusive holds a transaction-level advisory lock while fn runs, so the
// lock is released when the transaction ends, even if the process dies.
func (p *PostgresStore) Exclusive(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("begin link sweep: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, sweepLockID).Scan(&locked); err != nil {
		return false, fmt.Errorf("lock link sweep: %w", err)
	}
	if !locked {
		return false, nil
	}
	return true, fn(ctx)
}
