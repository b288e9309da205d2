package loadtest

import (
	"context"
	"math"
	"math/rand/v2"
)

// Zipf parameters of the skewed check scenarios: question k of the set comes
// up with a probability proportional to (zipfV + k)^-zipfS. Over 20,000
// questions, the 500 most frequent then make up about three quarters of
// the requests, and most of the rest are asked rarely.
const (
	zipfS = 1.1
	zipfV = 1.0

	// zipfStream keeps the workers' random streams apart from the other
	// streams drawn from the same seed.
	zipfStream = 0x7a697066 << 32
)

// maxSkewedQuestions bounds the questions that the skewed scenarios draw
// from: the first of the query set. Their share of repeats then stays the
// same when -queries grows to keep the cold scenarios cold.
const maxSkewedQuestions = 20_000

func skewedQuestionCount(queries int) int { return min(queries, maxSkewedQuestions) }

// skewedPicker picks question indexes with a Zipf distribution. Each worker
// has its own generator, seeded from the seed and the worker index, so a
// run draws the same sequence per worker every time and the workers share
// no lock. A worker index must be in use by one request at a time, as
// closedLoop and openLoop guarantee.
type skewedPicker struct {
	zipfs []*rand.Zipf
}

func newSkewedPicker(questions, workers int, seed int64) *skewedPicker {
	p := &skewedPicker{}
	for w := range workers {
		rng := rand.New(rand.NewPCG(uint64(seed), zipfStream+uint64(w)))
		p.zipfs = append(p.zipfs, rand.NewZipf(rng, zipfS, zipfV, uint64(questions-1)))
	}
	return p
}

func (p *skewedPicker) next(worker int) int { return int(p.zipfs[worker].Uint64()) }

// zipfShare returns the share of the requests that the top most frequent of
// n questions receive under the skewed scenarios' distribution.
func zipfShare(n, top int) float64 {
	var head, all float64
	for k := range n {
		p := math.Pow(zipfV+float64(k), -zipfS)
		all += p
		if k < top {
			head += p
		}
	}
	if all == 0 {
		return 0
	}
	return head / all
}

// runSkewedChecks runs single checks on questions picked with a Zipf
// distribution on both systems, then on Gatehouse in an open loop at
// OpenLoopFraction of its closed-loop peak, while access changes run in the
// background as in runChecks. It models read traffic where the same users
// open the same popular documents again and again, between the cold
// questions of runChecks and the small write-free working set of
// runRepeatedChecks.
func (r *run) runSkewedChecks(ctx context.Context) {
	stopChurn := r.startChurn(ctx, r.cfg.ChangeInterval)
	defer func() { r.report.Churn = r.report.Churn.add(stopChurn()) }()

	// Both systems draw the same sequence of questions per worker.
	questions, seed := skewedQuestionCount(len(r.checks.queries)), r.ds.Seed
	raw := newSkewedPicker(questions, r.cfg.Workers, seed)
	r.closedLoop(ctx, scenarioSkewed, "", systemSpiceDB, "checks/s", r.cfg.Workers, func(ctx context.Context, worker int) (int, int, error) {
		return r.rawCheckAt(ctx, raw.next(worker))
	})
	gh := newSkewedPicker(questions, r.cfg.Workers, seed)
	peak := r.closedLoop(ctx, scenarioSkewed, "", systemGatehouse, "checks/s", r.cfg.Workers, func(ctx context.Context, worker int) (int, int, error) {
		return r.gatehouseCheckAt(ctx, gh.next(worker))
	})

	if peak.Throughput <= 0 {
		return
	}
	maxOutstanding := 8 * r.cfg.Workers
	open := newSkewedPicker(questions, maxOutstanding, seed)
	r.report.SkewedOpenLoopRate = peak.Throughput * r.cfg.OpenLoopFraction
	r.logger.Info("scenario", "scenario", scenarioSkewedOpenLoop, "system", systemGatehouse, "rate", int(r.report.SkewedOpenLoopRate))
	stopProfile := r.cpuProfile("gatehouse-skewed-open-loop")()
	res := openLoop(ctx, r.logger, scenarioSkewedOpenLoop, systemGatehouse, r.report.SkewedOpenLoopRate, r.cfg.Warmup, r.cfg.Duration, maxOutstanding, r.servers,
		func(ctx context.Context, worker int) (int, int, error) {
			return r.gatehouseCheckAt(ctx, open.next(worker))
		})
	stopProfile()
	r.report.SkewedOpenLoop = &res
}
