package httpapi

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Decision is one check decision as the decision log records it.
type Decision struct {
	Time       time.Time
	RequestID  string
	Caller     string
	Subject    string
	Permission string
	Resource   string
	Allowed    bool
}

// DecisionLog records a sample of check decisions without slowing checks
// down: Record only offers the decision to a bounded buffer, and a
// background writer logs it. Decisions that find the buffer full are
// dropped and counted. It is safe for concurrent use.
type DecisionLog struct {
	rate    float64
	queue   chan Decision
	logger  *slog.Logger
	dropped prometheus.Counter
	logged  prometheus.Counter
}

// NewDecisionLog returns a log that keeps the share rate (0 to 1) of
// decisions, buffering up to buffer of them, and registers its counters
// with reg. Call Run to start writing.
func NewDecisionLog(logger *slog.Logger, rate float64, buffer int, reg prometheus.Registerer) *DecisionLog {
	d := &DecisionLog{
		rate:   rate,
		queue:  make(chan Decision, buffer),
		logger: logger,
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_decision_log_dropped_total",
			Help: "Sampled check decisions dropped because the decision log's buffer was full.",
		}),
		logged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_decision_log_written_total",
			Help: "Check decisions written to the decision log.",
		}),
	}
	reg.MustRegister(d.dropped, d.logged)
	return d
}

// Record offers d to the log. It never blocks.
func (l *DecisionLog) Record(d Decision) {
	if l == nil || l.rate <= 0 || (l.rate < 1 && rand.Float64() >= l.rate) {
		return
	}
	// Decisions are logged at info; a logger set to a higher level would
	// drop them, and the written count would count lines never written.
	if !l.logger.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	select {
	case l.queue <- d:
	default:
		l.dropped.Inc()
	}
}

// Run writes queued decisions until ctx ends.
func (l *DecisionLog) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-l.queue:
			l.logger.Info("decision",
				"decided_at", d.Time, "request_id", d.RequestID, "caller", d.Caller,
				"subject", d.Subject, "permission", d.Permission, "resource", d.Resource, "allowed", d.Allowed)
			l.logged.Inc()
		}
	}
}
