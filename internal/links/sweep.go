package links

import (
	"context"
	"errors"
	"time"
)

// sweepBatch bounds how many links one turn of the scheduler ends or
// inspects per kind.
const sweepBatch = 200

// expiryTick is how often Run looks for links near their end. Run ends
// them ahead of expires_at, by the lead that package expiry keeps from how
// long recent ends took. SpiceDB's dispatch cache and Gatehouse's result
// cache both serve a result cached before expires_at until a write makes a
// new revision, and ending a link is such a write. Anonymous checks compare
// expires_at with the clock themselves and end on time regardless.
//
// NOTE: a scheduler later than the lead (a stopped instance, or writes that
// suddenly take longer than twice the slowest recent one) leaves a cached
// allow in place until its write commits.
const expiryTick = 100 * time.Millisecond

// Run ends expired links every expiryTick, and looks for links whose
// resource was deleted every SweepInterval, until ctx ends. On PostgreSQL
// one instance at a time does the work; the others skip that turn.
func (s *Service) Run(ctx context.Context) {
	ticker := time.NewTicker(expiryTick)
	defer ticker.Stop()
	var after string
	lastOrphans := s.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		orphans := s.now().Sub(lastOrphans) >= s.interval
		if orphans {
			lastOrphans = s.now()
		}
		_, err := s.store.Exclusive(ctx, func(ctx context.Context) error {
			err := s.endExpired(ctx)
			if orphans {
				var orphanErr error
				after, orphanErr = s.endOrphans(ctx, after)
				err = errors.Join(err, orphanErr)
			}
			return err
		})
		if err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "share link scheduler failed; retrying", "error", err)
		}
	}
}

// Sweep ends expired links and then checks every active link for a
// deleted resource, at once, for tests and operators. Run does the same
// work in smaller steps. When another sweep holds the lock, Sweep waits
// for it until ctx ends.
func (s *Service) Sweep(ctx context.Context) error {
	for {
		ran, err := s.store.Exclusive(ctx, s.sweepAll)
		if ran || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Service) sweepAll(ctx context.Context) error {
	err := s.endExpired(ctx)
	after := ""
	for {
		var orphanErr error
		after, orphanErr = s.endOrphans(ctx, after)
		err = errors.Join(err, orphanErr)
		if after == "" || ctx.Err() != nil {
			return err
		}
	}
}

func (s *Service) endExpired(ctx context.Context) error {
	expired, err := s.store.Expired(ctx, s.now().Add(s.lead.Duration()), sweepBatch)
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range expired {
		began := s.now()
		errs = append(errs, s.end(ctx, l, StateExpired))
		s.lead.Observe(s.now().Sub(began))
	}
	return errors.Join(errs...)
}

func (s *Service) endOrphans(ctx context.Context, after string) (string, error) {
	page, err := s.store.ListActive(ctx, after, sweepBatch)
	if err != nil {
		return after, err
	}
	var errs []error
	for _, l := range page {
		_, err := s.noticeOrphan(ctx, l)
		errs = append(errs, err)
	}
	if len(page) < sweepBatch {
		return "", errors.Join(errs...)
	}
	return page[len(page)-1].ID, errors.Join(errs...)
}
