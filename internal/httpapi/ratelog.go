package httpapi

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateLimitedLog logs at most burst lines per interval and folds the rest
// into a count that the next logged line reports, so that a flood of bad
// tokens cannot flood the log. It is safe for concurrent use.
type rateLimitedLog struct {
	logger   *slog.Logger
	interval time.Duration
	burst    int

	mu         sync.Mutex
	windowEnd  time.Time
	logged     int
	suppressed int
}

func newRateLimitedLog(logger *slog.Logger, burst int, interval time.Duration) *rateLimitedLog {
	return &rateLimitedLog{logger: logger, burst: burst, interval: interval}
}

// Info logs msg with args unless the limit is reached.
func (l *rateLimitedLog) Info(ctx context.Context, msg string, args ...any) {
	l.mu.Lock()
	now := time.Now()
	if now.After(l.windowEnd) {
		l.windowEnd = now.Add(l.interval)
		l.logged = 0
	}
	if l.logged >= l.burst {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.logged++
	suppressed := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()

	if suppressed > 0 {
		args = append(args, "suppressed_since_last", suppressed)
	}
	l.logger.InfoContext(ctx, msg, args...)
}
