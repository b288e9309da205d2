package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is a Log in the audit_entries and audit_heads tables of
// Gatehouse's schema (see internal/store). The pool's search_path must
// name that schema.
type Postgres struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

var _ Log = (*Postgres)(nil)

// NewPostgres returns a Log on pool.
func NewPostgres(pool *pgxpool.Pool) *Postgres {
	return &Postgres{pool: pool, now: time.Now}
}

const entryColumns = `id, chain, seq, time, kind, actor_principal, actor_issuer, actor_token_id,
	on_behalf_of, action, resource, subject, before, after, reason, client_ip, user_agent,
	request_id, break_glass, consistency_token, event_id, outcome, prev_hash, hash`

// selectColumns are the columns scanEntry reads: the inserted ones and the
// position the table assigns.
const selectColumns = entryColumns + `, position`

// appendLockID is the transaction-level advisory lock that serializes all
// appends, so that entries commit in the order of their position.
const appendLockID = 0x61756474 // "audt"

// Append serializes all appends on one advisory lock: audit entries are
// written once per change, far less often than checks, and a single order
// lets readers page by position without missing late commits.
func (p *Postgres) Append(ctx context.Context, e Entry) (Entry, error) {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, appendLockID); err != nil {
			return err
		}
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, 0, '') ON CONFLICT DO NOTHING`, e.Chain); err != nil {
			return err
		}
		var head Head
		if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_heads WHERE chain = $1 FOR UPDATE`, e.Chain).Scan(&head.Seq, &head.Hash); err != nil {
			return err
		}
		// An event and its outcome share a chain, so the lock above also
		// serializes this test with any other outcome of the same event.
		if e.Kind == KindOutcome {
			var settled bool
			err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit_entries WHERE kind = 'outcome' AND event_id = $1)`, e.EventID).Scan(&settled)
			if err != nil {
				return err
			}
			if settled {
				return ErrAlreadySettled
			}
		}

		e.ID = id.String()
		e.Seq = head.Seq + 1
		e.Time = p.now().UTC().Truncate(time.Microsecond)
		e.PrevHash = head.Hash
		e.Hash = ComputeHash(e)

		before, after, err := marshalStates(e)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `INSERT INTO audit_entries (`+entryColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)
			RETURNING position`,
			e.ID, e.Chain, e.Seq, e.Time, e.Kind, e.Actor.Principal, e.Actor.Issuer, e.Actor.TokenID,
			e.OnBehalfOf, e.Action, e.Resource, e.Subject, before, after, e.Reason, e.ClientIP, e.UserAgent,
			e.RequestID, e.BreakGlass, e.ConsistencyToken, e.EventID, e.Outcome, e.PrevHash, e.Hash).Scan(&e.Position)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE audit_heads SET seq = $2, hash = $3 WHERE chain = $1`, e.Chain, e.Seq, e.Hash)
		return err
	})
	if errors.Is(err, ErrAlreadySettled) {
		return Entry{}, err
	}
	if err != nil {
		return Entry{}, fmt.Errorf("append audit entry: %w", err)
	}
	return e, nil
}

func (p *Postgres) List(ctx context.Context, f Filter) ([]Event, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	where = append(where, "e.kind = 'event'", "coalesce(o.outcome, '') <> 'failed'")
	if f.Chains != nil {
		where = append(where, "e.chain = ANY("+arg(f.Chains)+")")
	}
	if f.Resource != "" {
		where = append(where, "e.resource = "+arg(f.Resource))
	}
	if f.Actor != "" {
		where = append(where, "e.actor_principal = "+arg(f.Actor))
	}
	if f.Action != "" {
		where = append(where, "e.action = "+arg(f.Action))
	}
	if !f.Since.IsZero() {
		where = append(where, "e.time >= "+arg(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "e.time < "+arg(f.Until))
	}
	if f.After > 0 {
		where = append(where, "e.position > "+arg(f.After))
	}
	limit := ""
	if f.Limit > 0 {
		limit = " LIMIT " + arg(f.Limit)
	}
	query := `SELECT ` + prefixed("e.", selectColumns) + `, coalesce(o.outcome, ''), coalesce(o.consistency_token, '')
		FROM audit_entries e
		LEFT JOIN audit_entries o ON o.kind = 'outcome' AND o.event_id = e.id
		WHERE ` + strings.Join(where, " AND ") + ` ORDER BY e.position` + limit

	rows, err := p.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var ev Event
		if err := scanEntry(rows, &ev.Entry, &ev.Outcome, &ev.Entry.ConsistencyToken); err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	return events, rows.Err()
}

func (p *Postgres) Walk(ctx context.Context, fn func(Entry) error) error {
	rows, err := p.pool.Query(ctx, `SELECT `+selectColumns+` FROM audit_entries ORDER BY chain, seq`)
	if err != nil {
		return fmt.Errorf("read audit entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		if err := scanEntry(rows, &e); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (p *Postgres) Unsettled(ctx context.Context, before time.Time) ([]Entry, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+prefixed("e.", selectColumns)+`
		FROM audit_entries e
		WHERE e.kind = 'event' AND e.time < $1
		AND NOT EXISTS (SELECT 1 FROM audit_entries o WHERE o.kind = 'outcome' AND o.event_id = e.id)
		ORDER BY e.position`, before)
	if err != nil {
		return nil, fmt.Errorf("read unsettled audit events: %w", err)
	}
	defer rows.Close()
	var entries []Entry
	for rows.Next() {
		var e Entry
		if err := scanEntry(rows, &e); err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	return entries, rows.Err()
}

func (p *Postgres) Heads(ctx context.Context) (map[string]Head, error) {
	rows, err := p.pool.Query(ctx, `SELECT chain, seq, hash FROM audit_heads WHERE seq > 0`)
	if err != nil {
		return nil, fmt.Errorf("read audit heads: %w", err)
	}
	defer rows.Close()
	heads := map[string]Head{}
	for rows.Next() {
		var chain string
		var h Head
		if err := rows.Scan(&chain, &h.Seq, &h.Hash); err != nil {
			return nil, err
		}
		heads[chain] = h
	}
	return heads, rows.Err()
}

func scanEntry(rows pgx.Rows, e *Entry, extra ...any) error {
	var before, after []byte
	dest := []any{
		&e.ID, &e.Chain, &e.Seq, &e.Time, &e.Kind, &e.Actor.Principal, &e.Actor.Issuer, &e.Actor.TokenID,
		&e.OnBehalfOf, &e.Action, &e.Resource, &e.Subject, &before, &after, &e.Reason, &e.ClientIP, &e.UserAgent,
		&e.RequestID, &e.BreakGlass, &e.ConsistencyToken, &e.EventID, &e.Outcome, &e.PrevHash, &e.Hash,
		&e.Position,
	}
	if err := rows.Scan(append(dest, extra...)...); err != nil {
		return fmt.Errorf("scan audit entry: %w", err)
	}
	e.Time = e.Time.UTC()
	if err := unmarshalState(before, &e.Before); err != nil {
		return fmt.Errorf("audit entry %s: before: %w", e.ID, err)
	}
	if err := unmarshalState(after, &e.After); err != nil {
		return fmt.Errorf("audit entry %s: after: %w", e.ID, err)
	}
	return nil
}

func marshalStates(e Entry) (before, after []byte, err error) {
	if e.Before != nil {
		if before, err = json.Marshal(e.Before); err != nil {
			return nil, nil, err
		}
	}
	if e.After != nil {
		if after, err = json.Marshal(e.After); err != nil {
			return nil, nil, err
		}
	}
	return before, after, nil
}

func unmarshalState(data []byte, dst *map[string]string) error {
	if data == nil {
		return nil
	}
	return json.Unmarshal(data, dst)
}

func prefixed(prefix, columns string) string {
	parts := strings.Split(columns, ",")
	for i, p := range parts {
		parts[i] = prefix + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// appendOnlyViolation is the SQLSTATE that the audit table's triggers raise.
const appendOnlyViolation = "GHA01"

// IsAppendOnlyViolation reports whether err is the error the audit tables'
// triggers raise on an update, delete or truncate.
func IsAppendOnlyViolation(err error) bool {
	var pgErr interface{ SQLState() string }
	return errors.As(err, &pgErr) && pgErr.SQLState() == appendOnlyViolation
}
