package links

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// Store errors that the Service branches on.
var (
	// errNoLink means no link matched.
	errNoLink = errors.New("no such link")

	// errUsedUp means the link's uses reached its maximum, or the link is
	// no longer active, so the redemption was not counted.
	errUsedUp = errors.New("link has no redemptions left")
)

// Store keeps link records and redemptions. Implementations are safe for
// concurrent use.
type Store interface {
	// Insert adds l.
	Insert(ctx context.Context, l Link) error

	// Get returns the link with id, or errNoLink.
	Get(ctx context.Context, id string) (Link, error)

	// ByTokenHash returns the link whose token has digest hash, or
	// errNoLink.
	ByTokenHash(ctx context.Context, hash []byte) (Link, error)

	// List returns up to limit links on resource with ids greater than
	// after, ordered by id.
	List(ctx context.Context, resource string, after string, limit int) ([]Link, error)

	// ListActive returns up to limit active links with ids greater than
	// after, ordered by id.
	ListActive(ctx context.Context, after string, limit int) ([]Link, error)

	// Expired returns up to limit active links whose end is at or before
	// now.
	Expired(ctx context.Context, now time.Time, limit int) ([]Link, error)

	// End moves an active link to state (StateRevoked or StateExpired)
	// and reports whether it was active.
	End(ctx context.Context, id, state string, at time.Time) (bool, error)

	// Redeem records principal's redemption of the active link id. It
	// returns counted false and no error when principal redeemed it before.
	// It returns errUsedUp when the link is not active or its uses reached
	// their maximum. Concurrent calls never count past the maximum.
	Redeem(ctx context.Context, id, principal string, at time.Time) (counted bool, err error)

	// Redeemed reports whether principal redeemed the link id.
	Redeemed(ctx context.Context, id, principal string) (bool, error)

	// Unredeem undoes a redemption that Redeem counted.
	Unredeem(ctx context.Context, id, principal string) error

	// Redeemers returns the principals who redeemed the link id.
	Redeemers(ctx context.Context, id string) ([]string, error)

	// Exclusive runs fn unless another instance is running an Exclusive
	// fn on the same database, and reports whether fn ran.
	Exclusive(ctx context.Context, fn func(ctx context.Context) error) (bool, error)
}

// MemoryStore is a Store in process memory, for --dev and tests. It loses
// everything when the process exits.
type MemoryStore struct {
	mu        sync.Mutex
	links     map[string]*Link
	redeemers map[string][]string
	sweep     sync.Mutex
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{links: map[string]*Link{}, redeemers: map[string][]string{}}
}

func (m *MemoryStore) Insert(ctx context.Context, l Link) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, other := range m.links {
		if other.ID == l.ID || bytes.Equal(other.TokenHash, l.TokenHash) {
			return errors.New("insert link: duplicate id or token")
		}
	}
	m.links[l.ID] = &l
	return nil
}

func (m *MemoryStore) Get(ctx context.Context, id string) (Link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.links[id]
	if !ok {
		return Link{}, errNoLink
	}
	return *l, nil
}

func (m *MemoryStore) ByTokenHash(ctx context.Context, hash []byte) (Link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.links {
		if bytes.Equal(l.TokenHash, hash) {
			return *l, nil
		}
	}
	return Link{}, errNoLink
}

func (m *MemoryStore) List(ctx context.Context, resource, after string, limit int) ([]Link, error) {
	return m.filter(after, limit, func(l *Link) bool { return l.Resource.String() == resource }), nil
}

func (m *MemoryStore) ListActive(ctx context.Context, after string, limit int) ([]Link, error) {
	return m.filter(after, limit, func(l *Link) bool { return l.State == StateActive }), nil
}

func (m *MemoryStore) Expired(ctx context.Context, now time.Time, limit int) ([]Link, error) {
	return m.filter("", limit, func(l *Link) bool {
		return l.State == StateActive && l.ExpiresAt != nil && !l.ExpiresAt.After(now)
	}), nil
}

func (m *MemoryStore) filter(after string, limit int, keep func(*Link) bool) []Link {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Link
	for _, l := range m.links {
		if l.ID > after && keep(l) {
			out = append(out, *l)
		}
	}
	slices.SortFunc(out, func(a, b Link) int { return strings.Compare(a.ID, b.ID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func (m *MemoryStore) End(ctx context.Context, id, state string, at time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.links[id]
	if !ok || l.State != StateActive {
		return false, nil
	}
	l.State = state
	return true, nil
}

func (m *MemoryStore) Redeem(ctx context.Context, id, principal string, at time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.links[id]
	if !ok || l.State != StateActive {
		return false, errUsedUp
	}
	if slices.Contains(m.redeemers[id], principal) {
		return false, nil
	}
	if l.MaxUses > 0 && l.Uses >= l.MaxUses {
		return false, errUsedUp
	}
	l.Uses++
	m.redeemers[id] = append(m.redeemers[id], principal)
	return true, nil
}

func (m *MemoryStore) Redeemed(ctx context.Context, id, principal string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Contains(m.redeemers[id], principal), nil
}

func (m *MemoryStore) Unredeem(ctx context.Context, id, principal string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.Index(m.redeemers[id], principal)
	if i < 0 {
		return nil
	}
	m.redeemers[id] = slices.Delete(m.redeemers[id], i, i+1)
	if l, ok := m.links[id]; ok && l.Uses > 0 {
		l.Uses--
	}
	return nil
}

func (m *MemoryStore) Redeemers(ctx context.Context, id string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.redeemers[id]), nil
}

func (m *MemoryStore) Exclusive(ctx context.Context, fn func(ctx context.Context) error) (bool, error) {
	if !m.sweep.TryLock() {
		return false, nil
	}
	defer m.sweep.Unlock()
	return true, fn(ctx)
}
