package loadtest

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-authz/gatehouse/internal/grants"
)

// runRepeatedChecks runs single checks on both systems over a small working
// set of questions, with no writes, so that caches keyed by revision stay
// valid: the steady state of read-mostly traffic, where runChecks measures
// questions that are all new. It first waits until the writes of the
// earlier scenarios have stopped, and records whether any write committed
// while it ran.
func (r *run) runRepeatedChecks(ctx context.Context) error {
	before, err := r.waitForQuiet(ctx)
	if err != nil {
		return err
	}
	var xidBefore int64
	if r.databaseURL != "" {
		if xidBefore, err = r.nextTransactionID(ctx); err != nil {
			return err
		}
	}

	r.closedLoop(ctx, scenarioRepeated, "", systemSpiceDB, "checks/s", r.cfg.Workers, r.rawRepeatedCheck)
	r.closedLoop(ctx, scenarioRepeated, "", systemGatehouse, "checks/s", r.cfg.Workers, r.gatehouseRepeatedCheck)

	after, err := r.writeState(ctx)
	if err != nil {
		return err
	}
	if after != before {
		r.report.WritesDuringRepeated = true
		r.logger.Warn("relationships were written during the scenario without writes", "scenario", scenarioRepeated)
	}
	if r.databaseURL != "" {
		xidAfter, err := r.nextTransactionID(ctx)
		if err != nil {
			return err
		}
		r.report.ClusterTransactionsDuringRepeated = xidAfter - xidBefore
		if r.report.ClusterTransactionsDuringRepeated > 0 {
			r.logger.Warn("transactions wrote to the PostgreSQL cluster during the scenario without writes",
				"scenario", scenarioRepeated, "transaction_ids", r.report.ClusterTransactionsDuringRepeated)
		}
	}
	return nil
}

// quietPeriod is how long no relationship write may commit before the
// scenario without writes starts. The churn loops finish their changes when
// they stop, but Gatehouse's grant scheduler ends grants on its own, and it
// pauses up to grants.Tick between two rounds, also after a failed one.
// Three ticks leave room for a slow round that writes late.
const quietPeriod = 3 * grants.Tick

// maxQuietWait bounds waitForQuiet. Past it, the scenario runs anyway and
// the report notes that writes went on.
const maxQuietWait = time.Minute

// waitForQuiet waits until no relationship write has committed for
// quietPeriod, at most maxQuietWait, and returns the write state it ended
// on.
func (r *run) waitForQuiet(ctx context.Context) (string, error) {
	start := time.Now()
	state, err := r.writeState(ctx)
	if err != nil {
		return "", err
	}
	changed := start
	for time.Since(changed) < quietPeriod {
		if time.Since(start) >= maxQuietWait {
			r.logger.Warn("relationship writes went on after the writes stopped; running the scenario without writes anyway",
				"waited", time.Since(start).Round(time.Millisecond))
			r.report.Notes = append(r.report.Notes, fmt.Sprintf("Relationship writes went on for %s after the access changes stopped, "+
				"so %q started while something still wrote.", maxQuietWait, scenarioRepeated))
			return state, nil
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return "", ctx.Err()
		}
		now, err := r.writeState(ctx)
		if err != nil {
			return "", err
		}
		if now != state {
			state, changed = now, time.Now()
		}
	}
	r.logger.Info("no relationship writes", "for", quietPeriod, "waited", time.Since(start).Round(time.Millisecond))
	return state, nil
}

// writeState returns a key that changes whenever a relationship write
// commits in the run's datastore. On PostgreSQL it counts SpiceDB's write
// transactions only, not the writes to Gatehouse's own tables.
func (r *run) writeState(ctx context.Context) (string, error) {
	if r.databaseURL == "" {
		rev, err := r.servers.command(commandHead)
		if err != nil {
			return "", fmt.Errorf("read head revision: %w", err)
		}
		return rev, nil
	}

	// NOTE: SpiceDB v1.56.2's PostgreSQL datastore adds one row to
	// relation_tuple_transaction per write transaction, and its head
	// revision, a snapshot, moves with every transaction of the cluster.
	// Gatehouse's engine reads the same table to key its result cache.
	conn, err := r.postgresConn(ctx)
	if err != nil {
		return "", err
	}
	var count int64
	var maxXID string
	err = conn.QueryRow(ctx, `SELECT count(*), coalesce(max(xid)::text, '') FROM relation_tuple_transaction`).Scan(&count, &maxXID)
	if err != nil {
		return "", fmt.Errorf("count SpiceDB write transactions: %w", err)
	}
	return fmt.Sprintf("%d/%s", count, maxXID), nil
}

// nextTransactionID returns the PostgreSQL cluster's next transaction id,
// which moves on with every transaction that writes to any database of the
// cluster. SpiceDB v1.56.2's revisions on PostgreSQL are snapshots that
// include it.
func (r *run) nextTransactionID(ctx context.Context) (int64, error) {
	conn, err := r.postgresConn(ctx)
	if err != nil {
		return 0, err
	}
	var xid int64
	if err := conn.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&xid); err != nil {
		return 0, fmt.Errorf("read the next transaction id: %w", err)
	}
	return xid, nil
}

// postgresConn returns the run's connection to its database, connecting on
// first use.
func (r *run) postgresConn(ctx context.Context) (*pgx.Conn, error) {
	if r.stateConn == nil {
		conn, err := pgx.Connect(ctx, r.databaseURL)
		if err != nil {
			return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
		}
		r.stateConn = conn
	}
	return r.stateConn, nil
}
