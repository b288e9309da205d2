package grants

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// schedulerLockID is the transaction-level advisory lock that lets one
// instance at a time run the scheduler.
const schedulerLockID = 0x6772616e // "gran"

// Postgres is a Store on the grants table of Gatehouse's schema.
type Postgres struct {
	pool *pgxpool.Pool
}

var _ Store = (*Postgres)(nil)

// NewPostgres returns a Store on pool, whose search path names Gatehouse's
// schema.
func NewPostgres(pool *pgxpool.Pool) *Postgres { return &Postgres{pool: pool} }

const grantColumns = `id, resource, subject, role, org, not_before, expires_at, grantor, state, break_glass, reason, created_at`

func (p *Postgres) Insert(ctx context.Context, g Grant) error {
	_, err := p.pool.Exec(ctx, `INSERT INTO grants (`+grantColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		g.ID, g.Resource.String(), g.Subject.String(), g.Role, g.Org.String(), g.NotBefore, g.ExpiresAt,
		g.Grantor, string(g.State), g.BreakGlass, g.Reason, g.CreatedAt)
	if err != nil {
		return fmt.Errorf("insert grant: %w", err)
	}
	return nil
}

func (p *Postgres) Delete(ctx context.Context, id string) error {
	if _, err := p.pool.Exec(ctx, `DELETE FROM grants WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete grant: %w", err)
	}
	return nil
}

func (p *Postgres) Get(ctx context.Context, id string) (Grant, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+grantColumns+` FROM grants WHERE id = $1`, id)
	if err != nil {
		return Grant{}, fmt.Errorf("read grant: %w", err)
	}
	grants, err := scanGrants(rows)
	if err != nil {
		return Grant{}, err
	}
	if len(grants) == 0 {
		return Grant{}, errNoGrant
	}
	return grants[0], nil
}

func (p *Postgres) List(ctx context.Context, f Filter) ([]Grant, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
	}
	add("id > ?", f.After)
	if f.Resource != "" {
		add("resource = ?", f.Resource)
	}
	if f.Subject != "" {
		add("subject = ?", f.Subject)
	}
	if f.Party != "" {
		args = append(args, f.Party)
		where = append(where, fmt.Sprintf("(subject = $%d OR grantor = $%d)", len(args), len(args)))
	}
	if f.State != "" {
		add("state = ?", string(f.State))
	}
	if f.BreakGlass {
		where = append(where, "break_glass")
	}
	args = append(args, f.Limit)
	query := `SELECT ` + grantColumns + ` FROM grants WHERE ` + strings.Join(where, " AND ") +
		fmt.Sprintf(` ORDER BY id LIMIT $%d`, len(args))
	rows, err := p.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	return scanGrants(rows)
}

func (p *Postgres) Transition(ctx context.Context, id string, from []State, to State) (bool, error) {
	states := make([]string, len(from))
	for i, s := range from {
		states[i] = string(s)
	}
	tag, err := p.pool.Exec(ctx, `UPDATE grants SET state = $2, updated_at = now() WHERE id = $1 AND state = ANY($3)`, id, string(to), states)
	if err != nil {
		return false, fmt.Errorf("update grant state: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

func (p *Postgres) Due(ctx context.Context, now, endBy time.Time, limit int) (starts, ends []Grant, err error) {
	rows, err := p.pool.Query(ctx, `SELECT `+grantColumns+` FROM grants WHERE state = 'scheduled' AND not_before <= $1 ORDER BY not_before LIMIT $2`, now, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("read due grants: %w", err)
	}
	if starts, err = scanGrants(rows); err != nil {
		return nil, nil, err
	}
	rows, err = p.pool.Query(ctx, `SELECT `+grantColumns+` FROM grants WHERE state = 'active' AND expires_at <= $1 ORDER BY expires_at LIMIT $2`, endBy, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("read ended grants: %w", err)
	}
	if ends, err = scanGrants(rows); err != nil {
		return nil, nil, err
	}
	return starts, ends, nil
}

func (p *Postgres) Next(ctx context.Context, lead time.Duration) (time.Time, bool, error) {
	var next *time.Time
	err := p.pool.QueryRow(ctx, `SELECT least(
		(SELECT min(not_before) FROM grants WHERE state = 'scheduled'),
		(SELECT min(expires_at) FROM grants WHERE state = 'active') - $1::interval)`, lead.String()).Scan(&next)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("read next grant change: %w", err)
	}
	if next == nil {
		return time.Time{}, false, nil
	}
	return *next, true, nil
}

// Exclusively runs fn while holding a transaction-level advisory lock,
// which the server releases when the transaction ends or the connection
// drops, so a crashed instance never keeps it. fn's own statements do not
// run in that transaction.
func (p *Postgres) Exclusively(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("begin scheduler lock: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, schedulerLockID).Scan(&locked); err != nil {
		return false, fmt.Errorf("take scheduler lock: %w", err)
	}
	if !locked {
		return false, nil
	}
	return true, fn(ctx)
}

func scanGrants(rows pgx.Rows) ([]Grant, error) {
	defer rows.Close()
	var out []Grant
	for rows.Next() {
		var g Grant
		var resource, subject, org, state string
		if err := rows.Scan(&g.ID, &resource, &subject, &g.Role, &org, &g.NotBefore, &g.ExpiresAt,
			&g.Grantor, &state, &g.BreakGlass, &g.Reason, &g.CreatedAt); err != nil {
			return nil, fmt.Errorf("read grant: %w", err)
		}
		g.State = State(state)
		var err error
		if g.Resource, err = object.ParseResource(resource); err != nil {
			return nil, fmt.Errorf("grant %s: resource %q: %w", g.ID, resource, err)
		}
		if g.Subject, err = object.ParseSubject(subject); err != nil {
			return nil, fmt.Errorf("grant %s: subject %q: %w", g.ID, subject, err)
		}
		if g.Org, err = object.ParseResource(org); err != nil {
			return nil, fmt.Errorf("grant %s: org %q: %w", g.ID, org, err)
		}
		g.NotBefore, g.ExpiresAt, g.CreatedAt = g.NotBefore.UTC(), g.ExpiresAt.UTC(), g.CreatedAt.UTC()
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read grants: %w", err)
	}
	return out, nil
}
