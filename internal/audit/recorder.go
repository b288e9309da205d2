package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrAlreadySettled means an outcome for that event exists already, so a
// second one was not appended.
var ErrAlreadySettled = errors.New("audit event already has an outcome")

// ErrUnavailable means the audit log could not record an event, so the
// change it describes must not be made.
var ErrUnavailable = errors.New("audit log unavailable")

// Recorder records changes in a Log. It is safe for concurrent use.
type Recorder struct {
	log    Log
	logger *slog.Logger
}

// NewRecorder returns a Recorder on log. A nil logger means slog.Default().
func NewRecorder(log Log, logger *slog.Logger) *Recorder {
	if logger == nil {
		logger = slog.Default()
	}
	return &Recorder{log: log, logger: logger}
}

// Log returns the underlying log.
func (r *Recorder) Log() Log { return r.log }

// Change is a recorded intent whose outcome is still to be recorded.
type Change struct {
	r     *Recorder
	event Entry
}

// Begin records the event e before the change it describes. When Begin
// fails, the caller must not make the change: an unrecorded change is what
// the audit log exists to prevent. The error wraps ErrUnavailable.
func (r *Recorder) Begin(ctx context.Context, e Entry) (*Change, error) {
	e.Kind = KindEvent
	stored, err := r.log.Append(ctx, e)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return &Change{r: r, event: stored}, nil
}

// EventID returns the id of the recorded event.
func (c *Change) EventID() string { return c.event.ID }

// Applied records that the change was made, at the snapshot that token
// names. A failure here is logged, not returned: the change is made and its
// event exists, and Reconcile settles the outcome later.
func (c *Change) Applied(ctx context.Context, token string) {
	c.settle(ctx, OutcomeApplied, token)
}

// Failed records that the change was not made.
func (c *Change) Failed(ctx context.Context) {
	c.settle(ctx, OutcomeFailed, "")
}

func (c *Change) settle(ctx context.Context, outcome, token string) {
	// The outcome must be written even if the request was cancelled after
	// the change was made.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()

	_, err := c.r.log.Append(ctx, Entry{
		Chain: c.event.Chain, Kind: KindOutcome, Actor: c.event.Actor,
		EventID: c.event.ID, Outcome: outcome, ConsistencyToken: token,
		RequestID: c.event.RequestID,
	})
	if err != nil && !errors.Is(err, ErrAlreadySettled) {
		c.r.logger.Error("record audit outcome; the reconciler will settle it",
			"event_id", c.event.ID, "outcome", outcome, "error", err)
	}
}

// StateChecker reports whether the change that event e describes is in
// place now. It returns ErrUnknownState for a change it cannot judge.
type StateChecker func(ctx context.Context, e Entry) (bool, error)

// ErrUnknownState is returned by a StateChecker for an event whose effect
// the current state does not show.
var ErrUnknownState = errors.New("state of change unknown")

// Reconcile settles every event older than grace that has no outcome,
// because the process stopped between the change and its outcome, by
// comparing the current state with the event's intent. It returns how many
// events it settled.
func (r *Recorder) Reconcile(ctx context.Context, grace time.Duration, inPlace StateChecker) (int, error) {
	pending, err := r.log.Unsettled(ctx, time.Now().Add(-grace))
	if err != nil {
		return 0, err
	}
	settled := 0
	for _, e := range pending {
		applied, err := inPlace(ctx, e)
		outcome := OutcomeReconciledAbsent
		switch {
		case errors.Is(err, ErrUnknownState):
			outcome = OutcomeReconciledUnknown
		case err != nil:
			return settled, fmt.Errorf("check state of audit event %s: %w", e.ID, err)
		case applied:
			outcome = OutcomeReconciledApplied
		}
		_, err = r.log.Append(ctx, Entry{Chain: e.Chain, Kind: KindOutcome, EventID: e.ID, Outcome: outcome, Actor: Actor{Principal: "gatehouse"}})
		if errors.Is(err, ErrAlreadySettled) {
			continue
		}
		if err != nil {
			return settled, err
		}
		r.logger.Warn("settled audit event without outcome", "event_id", e.ID, "action", e.Action, "outcome", outcome)
		settled++
	}
	return settled, nil
}
