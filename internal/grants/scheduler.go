package grants

import (
	"context"
	"errors"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authz"
)

// Tick is the longest the scheduler waits between two rounds. It also wakes
// at the next due not_before or expires_at, read after each round and after
// each grant created on this instance. So a grant normally starts and ends
// within a few milliseconds of its time, and at most one Tick late when it
// was created on another instance.
const Tick = time.Second

// batchSize bounds the grants one round starts and ends.
const batchSize = 100

// sweepEvery is the time between sweeps for active grants whose resource
// was deleted.
const sweepEvery = time.Minute

// Run starts and ends grants until ctx ends. With PostgreSQL, one instance
// at a time does the work; the others skip that round.
//
// Grants end ahead of expires_at, by the lead that package expiry keeps
// from how long recent ends took. SpiceDB's dispatch cache and Gatehouse's
// result cache both serve a result cached before expires_at until a write
// makes a new revision, and the write that ends a grant is such a write.
//
// NOTE: a scheduler later than the lead (a stopped instance, or one whose
// writes suddenly take longer than twice the slowest recent one) leaves a
// cached allow in place until its write commits. The relationship's own
// expiration still denies every check that misses the caches.
func (s *Service) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastSweep := s.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			// A new grant: only read when the next one is due.
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			wait := Tick
			if next, ok, err := s.store.Next(ctx, s.lead.Duration()); err == nil && ok {
				wait = min(max(next.Sub(s.now()), 0), Tick)
			}
			timer.Reset(wait)
			continue
		case <-timer.C:
		}

		sweep := s.now().Sub(lastSweep) >= sweepEvery
		if sweep {
			lastSweep = s.now()
		}
		roundStart := s.now()
		var full bool
		ran, err := s.store.Exclusively(ctx, func(ctx context.Context) error {
			var err error
			full, err = s.runOnce(ctx, sweep)
			return err
		})
		if err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "grant scheduler failed; retrying", "error", err)
		}

		switch {
		case full && err == nil:
			// More grants are due than one round takes.
			timer.Reset(0)
		case !ran || err != nil:
			timer.Reset(Tick)
		default:
			timer.Reset(s.untilNext(ctx, roundStart))
		}
	}
}

// untilNext returns how long to wait before the next round: until the next
// due grant, and at most Tick. A grant that was due when the last round
// began but is still pending (because its start or end failed) waits a
// Tick, so that a failing grant cannot make the scheduler spin.
func (s *Service) untilNext(ctx context.Context, roundStart time.Time) time.Duration {
	next, ok, err := s.store.Next(ctx, s.lead.Duration())
	if err != nil || !ok || !next.After(roundStart) {
		return Tick
	}
	return min(max(next.Sub(s.now()), 0), Tick)
}

// RunOnce starts the scheduled grants that are due, records the end of
// active grants past their end and, with sweep, revokes active grants whose
// resource no longer exists. It tries every grant and returns the errors
// joined. It does not take the scheduler lock.
func (s *Service) RunOnce(ctx context.Context, sweep bool) error {
	_, err := s.runOnce(ctx, sweep)
	return err
}

// runOnce is RunOnce that also reports whether it left due grants for the
// next round because it handled a full batch.
func (s *Service) runOnce(ctx context.Context, sweep bool) (full bool, err error) {
	now := s.now()
	starts, ends, err := s.store.Due(ctx, now, now.Add(s.lead.Duration()), batchSize)
	if err != nil {
		return false, err
	}
	var errs []error
	for _, g := range starts {
		errs = append(errs, s.start(ctx, g))
	}
	for _, g := range ends {
		errs = append(errs, s.expire(ctx, g))
	}
	if sweep {
		errs = append(errs, s.sweep(ctx))
	}
	return len(starts) == batchSize || len(ends) == batchSize, errors.Join(errs...)
}

// start writes a due grant's relationships and marks it active.
func (s *Service) start(ctx context.Context, g Grant) error {
	if !g.ExpiresAt.After(s.now()) {
		// The scheduler was down for the whole grant: it never starts.
		return s.finish(ctx, g, ActionExpire, StateExpired)
	}
	// Resource ids are free again once deleted: a resource created after
	// the grant is another resource, which the grant must never reach.
	created, err := s.authz.CreatedAt(ctx, g.Resource)
	if err != nil {
		return err
	}
	if created.IsZero() || created.After(g.CreatedAt) {
		s.logger.InfoContext(ctx, "grant revoked: its resource was deleted (and perhaps created again) before it started",
			"grant", g.ID, "resource", g.Resource.String())
		return s.finish(ctx, g, ActionRevoke, StateRevoked)
	}

	change, err := s.authz.Begin(ctx, scheduler, stateChange(g, ActionStart, StateScheduled, StateActive))
	if err != nil {
		return err
	}
	moved, err := s.store.Transition(ctx, g.ID, []State{StateScheduled}, StateActive)
	if err != nil || !moved {
		change.Failed(ctx)
		return err
	}

	token, err := s.apply(ctx, g, groupPrecondition(g))
	switch {
	case errors.Is(err, errPrecondition):
		change.Failed(ctx)
		g.State = StateActive
		s.logger.InfoContext(ctx, "grant revoked: its resource or group was deleted before it started", "grant", g.ID, "resource", g.Resource.String())
		_, err = s.end(ctx, scheduler, g, ActionRevoke, StateRevoked)
		return err
	case errors.Is(err, authz.ErrConflict):
		change.Failed(ctx)
		g.State = StateActive
		s.logger.InfoContext(ctx, "grant revoked: it would have made a group membership loop", "grant", g.ID, "resource", g.Resource.String(), "subject", g.Subject.String(), "error", err)
		_, err = s.end(ctx, scheduler, g, ActionRevoke, StateRevoked)
		return err
	case err != nil:
		change.Failed(ctx)
		if _, revertErr := s.store.Transition(context.WithoutCancel(ctx), g.ID, []State{StateActive}, StateScheduled); revertErr != nil {
			s.logger.ErrorContext(ctx, "return grant to scheduled after a failed start", "grant", g.ID, "error", revertErr)
		}
		return err
	}

	// A revocation between the state change and the write deleted nothing
	// yet, so delete what the write added.
	if now, err := s.store.Get(ctx, g.ID); err == nil && now.State != StateActive {
		if _, err := s.remove(ctx, g); err != nil {
			s.logger.ErrorContext(ctx, "delete relationships of a grant revoked while it started", "grant", g.ID, "error", err)
		}
	}
	change.Applied(ctx, token)
	s.logger.InfoContext(ctx, "grant started", "grant", g.ID, "resource", g.Resource.String(), "subject", g.Subject.String(), "role", g.Role)
	return nil
}

// expire records the end of an active grant past its end. SpiceDB stopped
// honouring it at ExpiresAt already; this raises the auth versions and
// deletes the expired relationships. A grant whose resource is gone is
// revoked instead.
func (s *Service) expire(ctx context.Context, g Grant) error {
	began := s.now()
	defer func() { s.lead.Observe(s.now().Sub(began)) }()
	exists, err := s.authz.Engine().Exists(ctx, g.Resource)
	if err != nil {
		return err
	}
	if !exists {
		_, err := s.end(ctx, scheduler, g, ActionRevoke, StateRevoked)
		if err == nil {
			s.logger.InfoContext(ctx, "grant revoked: its resource was deleted", "grant", g.ID, "resource", g.Resource.String())
		}
		return err
	}
	if _, err = s.end(ctx, scheduler, g, ActionExpire, StateExpired); err != nil {
		return err
	}
	s.logger.InfoContext(ctx, "grant expired", "grant", g.ID, "resource", g.Resource.String(), "subject", g.Subject.String(), "role", g.Role)
	return nil
}

// finish records that a scheduled grant ended without ever starting.
func (s *Service) finish(ctx context.Context, g Grant, action string, to State) error {
	change, err := s.authz.Begin(ctx, scheduler, stateChange(g, action, g.State, to))
	if err != nil {
		return err
	}
	moved, err := s.store.Transition(ctx, g.ID, []State{g.State}, to)
	if err != nil || !moved {
		change.Failed(ctx)
		return err
	}
	change.Applied(ctx, "")
	return nil
}

// sweep revokes active grants whose resource was deleted. Deleting a
// resource deletes its relationships, so access ended already; this
// records it.
func (s *Service) sweep(ctx context.Context) error {
	f := Filter{State: StateActive, Limit: 1000}
	for {
		page, err := s.store.List(ctx, f)
		if err != nil {
			return err
		}
		for _, g := range page {
			exists, err := s.authz.Engine().Exists(ctx, g.Resource)
			if err != nil {
				return err
			}
			if !exists {
				if _, err := s.end(ctx, scheduler, g, ActionRevoke, StateRevoked); err != nil {
					return err
				}
			}
			f.After = g.ID
		}
		if len(page) < f.Limit {
			return nil
		}
	}
}

func stateChange(g Grant, action string, from, to State) authz.Change {
	return authz.Change{
		Org: g.Org, Action: action, Resource: g.Resource, Subject: g.Subject,
		Before:     map[string]string{"grant": g.ID, "role": g.Role, "state": string(from)},
		After:      map[string]string{"grant": g.ID, "role": g.Role, "state": string(to)},
		BreakGlass: g.BreakGlass,
	}
}
