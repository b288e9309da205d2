// Package expiry decides how early Gatehouse ends access that expires.
//
// SpiceDB v1.56.2 caches check results by datastore revision, and so does
// Gatehouse's result cache. A relationship that reaches its expiration
// makes no new revision, so a result cached just before the end could be
// served after it. Gatehouse therefore deletes expiring relationships
// before their end, with a write, which makes a new revision. How early is
// the lead: long enough for that write to commit before the end, which
// takes longer when the datastore is busy.
package expiry

import (
	"sync"
	"time"
)

const (
	// MinLead is the lead when writes are fast.
	MinLead = 250 * time.Millisecond

	// MaxLead bounds the lead, so access never ends more than this early.
	MaxLead = 2 * time.Second
)

// Lead tracks how long the writes that end access take and returns the
// lead that lets the next one commit in time. The zero value is ready to
// use and safe for concurrent use.
type Lead struct {
	mu   sync.Mutex
	cost time.Duration // slowest recent end, decaying by one eighth per end
}

// Observe records how long one end took, from the start of its work until
// it returned.
func (l *Lead) Observe(took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cost = max(took, l.cost-l.cost/8)
}

// Duration returns how long before its end to start ending access: twice
// the slowest recent end plus MinLead, at most MaxLead.
func (l *Lead) Duration() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return min(MinLead+2*l.cost, MaxLead)
}
