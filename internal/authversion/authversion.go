// Package authversion keeps each principal's auth version: a counter,
// starting at 1, that rises whenever the principal's relationships change
// or its sessions are revoked. Gatehouse's own tokens carry the version they
// were minted at, so a token minted before a change stops working at once.
package authversion

import (
	"context"
	"sync"
)

// Initial is the version of a principal that never changed.
const Initial = 1

// Change is a principal's new version.
type Change struct {
	Principal string `json:"principal"`
	Version   int64  `json:"version"`
}

// Store keeps versions. Implementations are safe for concurrent use.
type Store interface {
	// Get returns principal's current version (Initial if it never rose).
	// It may come from a cache that lags the store by the time a change
	// takes to reach this instance.
	Get(ctx context.Context, principal string) (int64, error)

	// Latest returns principal's version as the store holds it now,
	// bypassing any cache.
	Latest(ctx context.Context, principal string) (int64, error)

	// Bump raises the version of every principal in principals by one and
	// returns the new versions. It is atomic: all rise or none.
	Bump(ctx context.Context, principals []string) ([]Change, error)

	// Subscribe returns a channel of changes made from now on and a
	// function that ends the subscription. A subscriber that falls more
	// than a buffer behind has its channel closed and must resubscribe.
	Subscribe() (<-chan Change, func())
}

// hub fans changes out to subscribers without ever blocking the sender.
type hub struct {
	mu   sync.Mutex
	subs map[chan Change]struct{}
}

const subscriberBuffer = 1024

func (h *hub) subscribe() (<-chan Change, func()) {
	ch := make(chan Change, subscriberBuffer)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan Change]struct{}{}
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()

	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			if _, ok := h.subs[ch]; ok {
				delete(h.subs, ch)
				close(ch)
			}
			h.mu.Unlock()
		})
	}
}

// resetAll closes every subscriber's channel, telling each that it may have
// missed changes and must read versions afresh.
func (h *hub) resetAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}

func (h *hub) publish(changes []Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		for _, c := range changes {
			select {
			case ch <- c:
			default:
				// Too slow: drop the subscriber rather than the change.
				delete(h.subs, ch)
				close(ch)
			}
			if _, ok := h.subs[ch]; !ok {
				break
			}
		}
	}
}

// Memory is a Store in memory, for --dev and tests.
type Memory struct {
	mu       sync.Mutex
	versions map[string]int64
	hub      hub
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{versions: map[string]int64{}} }

func (m *Memory) Get(ctx context.Context, principal string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.versions[principal]; ok {
		return v, nil
	}
	return Initial, nil
}

// Latest is Get: the memory store has no cache.
func (m *Memory) Latest(ctx context.Context, principal string) (int64, error) {
	return m.Get(ctx, principal)
}

// Bump publishes while it holds the lock, so that subscribers see each
// principal's versions in increasing order.
func (m *Memory) Bump(ctx context.Context, principals []string) ([]Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	changes := make([]Change, 0, len(principals))
	for _, p := range dedupe(principals) {
		v, ok := m.versions[p]
		if !ok {
			v = Initial
		}
		m.versions[p] = v + 1
		changes = append(changes, Change{Principal: p, Version: v + 1})
	}
	m.hub.publish(changes)
	return changes, nil
}

func (m *Memory) Subscribe() (<-chan Change, func()) { return m.hub.subscribe() }

func dedupe(principals []string) []string {
	seen := make(map[string]bool, len(principals))
	out := principals[:0:0]
	for _, p := range principals {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}
