package grants

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// errNoGrant is the error a Store returns for an unknown id.
var errNoGrant = errors.New("no such grant")

// Filter selects grants for List. Zero fields match everything.
type Filter struct {
	Resource string
	Subject  string

	// Party matches grants whose subject or grantor is this principal.
	Party string

	State      State
	BreakGlass bool

	// After is the id of the last grant of the previous page.
	After string
	Limit int
}

func (f Filter) matches(g Grant) bool {
	switch {
	case f.Resource != "" && g.Resource.String() != f.Resource,
		f.Subject != "" && g.Subject.String() != f.Subject,
		f.Party != "" && g.Subject.String() != f.Party && g.Grantor != f.Party,
		f.State != "" && g.State != f.State,
		f.BreakGlass && !g.BreakGlass,
		f.After != "" && g.ID <= f.After:
		return false
	}
	return true
}

// Store keeps grants. Implementations are safe for concurrent use.
type Store interface {
	// Insert adds g, whose id is new.
	Insert(ctx context.Context, g Grant) error

	// Delete removes the grant id, after a creation that failed.
	Delete(ctx context.Context, id string) error

	// Get returns the grant id, or errNoGrant.
	Get(ctx context.Context, id string) (Grant, error)

	// List returns up to f.Limit grants that f matches, ordered by id.
	List(ctx context.Context, f Filter) ([]Grant, error)

	// Transition sets the state of grant id to "to" when it is one of
	// "from", and reports whether it did.
	Transition(ctx context.Context, id string, from []State, to State) (bool, error)

	// Due returns up to limit scheduled grants whose NotBefore is at or
	// before now, and up to limit active grants whose ExpiresAt is.
	//
	// Starts are scheduled grants with NotBefore at or before now; ends are
	// active grants with ExpiresAt at or before endBy.
	Due(ctx context.Context, now, endBy time.Time, limit int) (starts, ends []Grant, err error)

	// Next returns the earliest NotBefore of a scheduled grant and
	// ExpiresAt minus lead of an active grant, and false when there is
	// none.
	Next(ctx context.Context, lead time.Duration) (time.Time, bool, error)

	// Exclusively runs fn unless another instance runs it at the moment,
	// and reports whether fn ran.
	Exclusively(ctx context.Context, fn func(ctx context.Context) error) (bool, error)
}

// Memory is a Store that loses everything when the process exits.
type Memory struct {
	mu     sync.Mutex
	grants map[string]Grant
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store.
func NewMemory() *Memory { return &Memory{grants: map[string]Grant{}} }

func (m *Memory) Insert(ctx context.Context, g Grant) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.grants[g.ID]; ok {
		return errors.New("grant id " + g.ID + " exists already")
	}
	m.grants[g.ID] = g
	return nil
}

func (m *Memory) Delete(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.grants, id)
	return nil
}

func (m *Memory) Get(ctx context.Context, id string) (Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.grants[id]
	if !ok {
		return Grant{}, errNoGrant
	}
	return g, nil
}

func (m *Memory) List(ctx context.Context, f Filter) ([]Grant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Grant
	for _, g := range m.grants {
		if f.matches(g) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b Grant) int { return strings.Compare(a.ID, b.ID) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (m *Memory) Transition(ctx context.Context, id string, from []State, to State) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.grants[id]
	if !ok || !slices.Contains(from, g.State) {
		return false, nil
	}
	g.State = to
	m.grants[id] = g
	return true, nil
}

func (m *Memory) Due(ctx context.Context, now, endBy time.Time, limit int) (starts, ends []Grant, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, g := range m.grants {
		switch {
		case g.State == StateScheduled && !g.NotBefore.After(now) && len(starts) < limit:
			starts = append(starts, g)
		case g.State == StateActive && !g.ExpiresAt.After(endBy) && len(ends) < limit:
			ends = append(ends, g)
		}
	}
	return starts, ends, nil
}

func (m *Memory) Next(ctx context.Context, lead time.Duration) (time.Time, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var next time.Time
	for _, g := range m.grants {
		var due time.Time
		switch g.State {
		case StateScheduled:
			due = g.NotBefore
		case StateActive:
			due = g.ExpiresAt.Add(-lead)
		default:
			continue
		}
		if next.IsZero() || due.Before(next) {
			next = due
		}
	}
	return next, !next.IsZero(), nil
}

// Exclusively runs fn: a memory store serves one process only.
func (m *Memory) Exclusively(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	return true, fn(ctx)
}
