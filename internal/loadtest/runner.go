package loadtest

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// operation runs one request for worker and returns how many operations it
// counted (checks in a bulk request, for example), how many of its answers
// were wrong, and any error.
type operation func(ctx context.Context, worker int) (ops, wrong int, err error)

// closedLoopConfig configures closedLoop.
type closedLoopConfig struct {
	Workers  int
	Warmup   time.Duration
	Duration time.Duration

	// MinRequests keeps the loop going after Duration until this many
	// requests have completed, but never past MaxDuration. Default: 0.
	MinRequests int64
	MaxDuration time.Duration

	// OnMeasure, when set, runs when the timed part starts, and its
	// returned function when it ends (for a CPU profile).
	OnMeasure func() func()

	// Memory measures the peak RSS of the servers. Default: nil, no
	// measurement.
	Memory memoryProbe
}

// memoryProbe measures the peak resident memory of the process that runs
// the servers.
type memoryProbe interface {
	// resetPeak collects the process's garbage, returns what memory it
	// can to the kernel, and resets its high-water mark. It reports
	// whether the reset worked.
	resetPeak() bool

	// peak returns the high-water mark since the last reset, in bytes;
	// 0 when unknown.
	peak() int64
}

// counters are the totals that workers share during one scenario.
type counters struct {
	ops, requests, wrong, errors atomic.Int64
	loggedError                  atomic.Bool
}

// record adds one request's outcome. It logs the scenario's first error
// only, so that a failing system does not flood the log.
func (c *counters) record(logger *slog.Logger, scenario, system string, ops, wrong int, err error) {
	c.requests.Add(1)
	c.ops.Add(int64(ops))
	c.wrong.Add(int64(wrong))
	if err != nil {
		c.errors.Add(1)
		if c.loggedError.CompareAndSwap(false, true) {
			logger.Warn("request failed; later failures of this scenario are only counted",
				"scenario", scenario, "system", system, "error", err)
		}
	}
}

// gcHeadroom is how much the load generator's heap may grow during one
// scenario before its garbage collector runs after all: a third of the
// memory available when the scenario starts, within [minGCHeadroom,
// maxGCHeadroom], so that longer scenarios need not collect.
func gcHeadroom() uint64 {
	const minGCHeadroom, maxGCHeadroom = 2 << 30, 8 << 30
	available, ok := memAvailable()
	if !ok {
		return minGCHeadroom
	}
	return min(max(available/3, minGCHeadroom), maxGCHeadroom)
}

// memAvailable returns the kernel's estimate of the memory available to
// new work, from /proc/meminfo on Linux.
func memAvailable() (uint64, bool) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(data)) {
		rest, found := strings.CutPrefix(line, "MemAvailable:")
		if !found {
			continue
		}
		kib, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, false
		}
		return kib << 10, true
	}
	return 0, false
}

// gcPause is the load generator's garbage collector turned off for one
// scenario.
type gcPause struct {
	percent int
	limit   int64
	numGC   uint32
}

// pauseGC collects the load generator's garbage and turns its collector
// off until resume, unless the heap grows by gcHeadroom first. The
// generator holds the dataset and the oracle, some hundreds of MiB at 1M
// relationships. Marking them takes the collector a good part of a second
// of CPU, which it would take from the servers on the same machine, in
// bursts that the open-loop scenarios would measure as the servers'
// latency. collections counts the collections that ran all the same.
func pauseGC() *gcPause {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	p := &gcPause{numGC: m.NumGC}
	p.percent = debug.SetGCPercent(-1)
	p.limit = debug.SetMemoryLimit(int64(min(m.HeapAlloc+gcHeadroom(), math.MaxInt64)))
	return p
}

// collections returns how many times the generator collected since
// pauseGC.
func (p *gcPause) collections() uint32 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.NumGC - p.numGC
}

// resume turns the collector back on and collects.
func (p *gcPause) resume() {
	debug.SetGCPercent(p.percent)
	debug.SetMemoryLimit(p.limit)
	runtime.GC()
}

// closedLoop runs op once alone, then from cfg.Workers workers, each
// starting its next request as soon as the last one returns: first for
// cfg.Warmup, whose requests count towards wrong answers and errors only,
// then for cfg.Duration. It measures the servers' peak RSS over all of it
// when cfg.Memory is set.
func closedLoop(ctx context.Context, logger *slog.Logger, scenario, system, unit string, cfg closedLoopConfig, op operation) Result {
	pause := pauseGC()
	defer pause.resume()
	// Return the memory that earlier scenarios left behind, so that the
	// peak reflects this scenario.
	rssKnown := cfg.Memory != nil && cfg.Memory.resetPeak()

	// The first request runs alone, so that its latency shows the cost
	// of a request that no cache helps with.
	began := time.Now()
	ops, wrong, err := op(ctx, 0)
	first := time.Since(began)
	var warm counters
	warm.record(logger, scenario, system, ops, wrong, err)
	if cfg.Warmup > 0 {
		deadline := time.Now().Add(cfg.Warmup)
		runWorkers(ctx, cfg.Workers, func(worker int) {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				ops, wrong, err := op(ctx, worker)
				warm.record(logger, scenario, system, ops, wrong, err)
			}
		})
	}

	var stop func()
	if cfg.OnMeasure != nil {
		stop = cfg.OnMeasure()
	}
	var timed counters
	perWorker := make([]latencies, cfg.Workers)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	hardDeadline := start.Add(max(cfg.MaxDuration, cfg.Duration))
	runWorkers(ctx, cfg.Workers, func(worker int) {
		for ctx.Err() == nil {
			now := time.Now()
			if now.After(hardDeadline) || (now.After(deadline) && timed.requests.Load() >= cfg.MinRequests) {
				return
			}
			began := time.Now()
			ops, wrong, err := op(ctx, worker)
			perWorker[worker] = append(perWorker[worker], time.Since(began))
			timed.record(logger, scenario, system, ops, wrong, err)
		}
	})
	elapsed := time.Since(start)
	if stop != nil {
		stop()
	}

	var all []time.Duration
	for _, l := range perWorker {
		all = append(all, l...)
	}
	r := Result{
		Scenario: scenario, System: system, Unit: unit,
		Throughput:   float64(timed.ops.Load()) / elapsed.Seconds(),
		Requests:     timed.requests.Load(),
		WrongAnswers: warm.wrong.Load() + timed.wrong.Load(),
		Errors:       warm.errors.Load() + timed.errors.Load(),
		First:        first,
	}
	r.P50, r.P95, r.P99 = percentiles(all)
	if rssKnown {
		r.PeakRSS = cfg.Memory.peak()
	}
	r.GeneratorGCs = pause.collections()
	return r
}

// openLoop starts requests at a fixed rate, whether or not earlier ones
// have returned, with at most maxOutstanding in flight: first for warmup,
// whose requests count towards wrong answers and errors only, then for
// duration. Each latency counts from the moment its request was due, so a
// request that waited for a free slot, or for a late dispatcher, is charged
// the wait. Each request gets a worker index below maxOutstanding that no
// other request in flight holds, as in closedLoop. memory, when not nil,
// measures the servers' peak RSS.
func openLoop(ctx context.Context, logger *slog.Logger, scenario, system string, rate float64, warmup, duration time.Duration, maxOutstanding int, memory memoryProbe, op operation) Result {
	pause := pauseGC()
	defer pause.resume()
	rssKnown := memory != nil && memory.resetPeak()
	var warm, timed counters
	var mu sync.Mutex
	var all []timedLatency
	// Free worker indexes. Taking one takes a slot.
	slots := make(chan int, maxOutstanding)
	for w := range maxOutstanding {
		slots <- w
	}
	var wg sync.WaitGroup

	start := time.Now()
	measured := start.Add(warmup)
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(measured) >= duration {
			break
		}
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		worker := <-slots
		wg.Go(func() {
			defer func() { slots <- worker }()
			ops, wrong, err := op(ctx, worker)
			latency := time.Since(due)
			if due.Before(measured) {
				warm.record(logger, scenario, system, ops, wrong, err)
				return
			}
			timed.record(logger, scenario, system, ops, wrong, err)
			mu.Lock()
			all = append(all, timedLatency{due: due.Sub(measured), latency: latency})
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(measured)

	r := Result{
		Scenario: scenario, System: system, Unit: "checks/s",
		Throughput:   float64(timed.ops.Load()) / elapsed.Seconds(),
		Requests:     timed.requests.Load(),
		WrongAnswers: warm.wrong.Load() + timed.wrong.Load(),
		Errors:       warm.errors.Load() + timed.errors.Load(),
	}
	latencies := make([]time.Duration, len(all))
	for i, t := range all {
		latencies[i] = t.latency
	}
	r.P50, r.P95, r.P99 = percentiles(latencies)
	r.Windows = windowStats(all, openLoopTarget)
	if rssKnown {
		r.PeakRSS = memory.peak()
	}
	r.GeneratorGCs = pause.collections()
	return r
}

func runWorkers(ctx context.Context, n int, work func(worker int)) {
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() { work(w) })
	}
	wg.Wait()
}
