package links

import (
	"math"
	"sync"
	"time"
)

// maxLimiterClients bounds how many client addresses the limiter tracks;
// past it, the clients whose buckets are full again are forgotten.
const maxLimiterClients = 100000

// limiter is a token bucket per client address that unknown link tokens
// drain. It is safe for concurrent use.
type limiter struct {
	burst  float64
	refill time.Duration // time for one token to come back
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(burst int, refill time.Duration, now func() time.Time) *limiter {
	return &limiter{burst: float64(burst), refill: refill, now: now, buckets: map[string]*bucket{}}
}

// wait returns how long client must wait before its next lookup, or 0
// when it may look up a token now.
func (l *limiter) wait(client string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[client]
	if !ok {
		return 0
	}
	l.fill(b)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1 - b.tokens) * float64(l.refill)))
}

// miss takes one token from client's bucket.
func (l *limiter) miss(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[client]
	if !ok {
		if len(l.buckets) >= maxLimiterClients {
			l.forgetFull()
		}
		b = &bucket{tokens: l.burst, at: l.now()}
		l.buckets[client] = b
	}
	l.fill(b)
	b.tokens = max(b.tokens-1, 0)
}

func (l *limiter) fill(b *bucket) {
	now := l.now()
	elapsed := now.Sub(b.at)
	if elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+float64(elapsed)/float64(l.refill))
		b.at = now
	}
}

func (l *limiter) forgetFull() {
	for client, b := range l.buckets {
		l.fill(b)
		if b.tokens >= l.burst {
			delete(l.buckets, client)
		}
	}
}
