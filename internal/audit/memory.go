package audit

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Memory is a Log kept in memory, for --dev and tests. It has the same
// semantics as the PostgreSQL log and loses everything on exit.
type Memory struct {
	mu      sync.Mutex
	entries []Entry
	heads   map[string]Head
	now     func() time.Time
}

var _ Log = (*Memory)(nil)

// NewMemory returns an empty in-memory log.
func NewMemory() *Memory {
	return &Memory{heads: map[string]Head{}, now: time.Now}
}

func (m *Memory) Append(ctx context.Context, e Entry) (Entry, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Entry{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()

	if e.Kind == KindOutcome && slices.ContainsFunc(m.entries, func(o Entry) bool { return o.Kind == KindOutcome && o.EventID == e.EventID }) {
		return Entry{}, ErrAlreadySettled
	}
	head := m.heads[e.Chain]
	e.ID = id.String()
	e.Seq = head.Seq + 1
	e.Time = m.now().UTC().Truncate(time.Microsecond)
	e.PrevHash = head.Hash
	e.Hash = ComputeHash(e)
	e.Position = int64(len(m.entries)) + 1
	m.entries = append(m.entries, e)
	m.heads[e.Chain] = Head{Seq: e.Seq, Hash: e.Hash}
	return e, nil
}

func (m *Memory) List(ctx context.Context, f Filter) ([]Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()

	outcomes := map[string]Entry{}
	for _, e := range m.entries {
		if e.Kind == KindOutcome {
			outcomes[e.EventID] = e
		}
	}
	var events []Event
	for _, e := range m.entries {
		if e.Position <= f.After || e.Kind != KindEvent || !f.matches(e) {
			continue
		}
		outcome := outcomes[e.ID]
		if outcome.Outcome == OutcomeFailed {
			continue
		}
		e.ConsistencyToken = outcome.ConsistencyToken
		events = append(events, Event{Entry: e, Outcome: outcome.Outcome})
		if f.Limit > 0 && len(events) == f.Limit {
			break
		}
	}
	return events, nil
}

func (m *Memory) Walk(ctx context.Context, fn func(Entry) error) error {
	m.mu.Lock()
	entries := slices.Clone(m.entries)
	m.mu.Unlock()

	slices.SortStableFunc(entries, func(a, b Entry) int {
		if a.Chain != b.Chain {
			if a.Chain < b.Chain {
				return -1
			}
			return 1
		}
		return int(a.Seq - b.Seq)
	})
	for _, e := range entries {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (m *Memory) Unsettled(ctx context.Context, before time.Time) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()

	settled := map[string]bool{}
	for _, e := range m.entries {
		if e.Kind == KindOutcome {
			settled[e.EventID] = true
		}
	}
	var pending []Entry
	for _, e := range m.entries {
		if e.Kind == KindEvent && !settled[e.ID] && e.Time.Before(before) {
			pending = append(pending, e)
		}
	}
	return pending, nil
}

func (m *Memory) Heads(ctx context.Context) (map[string]Head, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	heads := make(map[string]Head, len(m.heads))
	for k, v := range m.heads {
		heads[k] = v
	}
	return heads, nil
}

// matches reports whether event entry e passes every filter but After and
// Limit.
func (f Filter) matches(e Entry) bool {
	switch {
	case f.Chains != nil && !slices.Contains(f.Chains, e.Chain):
		return false
	case f.Resource != "" && e.Resource != f.Resource:
		return false
	case f.Actor != "" && e.Actor.Principal != f.Actor:
		return false
	case f.Action != "" && e.Action != f.Action:
		return false
	case !f.Since.IsZero() && e.Time.Before(f.Since):
		return false
	case !f.Until.IsZero() && !e.Time.Before(f.Until):
		return false
	}
	return true
}
