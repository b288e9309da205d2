package server

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"runtime/metrics"
	"time"
)

// DefaultGCStart is the default share for StartEarlyCollections: 0, off,
// so that Go's pacer alone decides when to collect.
//
// Go's pacer starts a collection as late as it expects the marking to end
// at the goal, from 70% of the way on, and often later. When the marking
// falls behind that estimate, the runtime makes allocating goroutines mark
// in its place ("assists"), and after the marking they sweep the pages
// they allocate from. Those goroutines are the ones serving requests. A
// collection started by runtime.GC leaves the marking more room, and its
// caller sweeps the whole heap.
//
// Measured with gatehouse-bench on two cores, a start at 0.6 helped one
// workload and hurt another, so it is not the default
// (docs/benchmarks.md). On 1M relationships on PostgreSQL at 70% of peak
// load, assists fell from 11 and 26 ms a collection to 0 to 5 ms. In three
// runs each, the cold p99 fell from 35.9 to 61.7 ms to 17.9 to 24.7 ms,
// and the peak throughput by about 3%. On the memory datastore at 100k
// relationships, where the heap holds every relationship and checks
// allocate far more, collecting more often cost about a third of the
// throughput of both Gatehouse and raw SpiceDB.
const DefaultGCStart = 0.0

// gcPollInterval is how often the early collector reads the heap's size.
// At the benchmark's 165 MB a second, the heap grows by under 2 MB in
// that time.
const gcPollInterval = 10 * time.Millisecond

// ValidateGCStart reports whether start is a valid share for
// StartEarlyCollections: 0, which leaves collections to Go's pacer, or
// more than 0 and less than 1.
func ValidateGCStart(start float64) error {
	if math.IsNaN(start) || start < 0 || start >= 1 {
		return fmt.Errorf("gc start %v: use 0 (off) or a share from above 0 to below 1, such as 0.6", start)
	}
	return nil
}

// StartEarlyCollections starts a goroutine that starts a garbage
// collection once the heap has grown by the share start of the way from
// the live heap, as the last collection measured it, to the collector's
// goal. It stops when ctx ends. A start of 0 starts nothing.
//
// The goal is Go's own, so GOGC and GOMEMLIMIT keep their meaning: the
// heap still never grows past it, and collections come sooner. With
// GOGC=off and no memory limit there is no goal, and nothing starts.
func StartEarlyCollections(ctx context.Context, start float64, logger *slog.Logger) error {
	if err := ValidateGCStart(start); err != nil {
		return err
	}
	if start == 0 {
		return nil
	}
	go collectEarly(ctx, start, gcPollInterval)
	logger.Debug("early garbage collections started", "gc_start", start)
	return nil
}

// collectEarly reads the heap's size every interval until ctx ends, and
// collects once it passes the share start of the way to the goal.
func collectEarly(ctx context.Context, start float64, interval time.Duration) {
	samples := []metrics.Sample{
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	everyTick(ctx, interval, func() {
		metrics.Read(samples)
		goal, live, heap := samples[0].Value.Uint64(), samples[1].Value.Uint64(), samples[2].Value.Uint64()
		if goal > live && float64(heap) >= float64(live)+start*float64(goal-live) {
			// runtime.GC returns once the collection and its sweep are
			// done, so the next read gets the new live heap and goal.
			runtime.GC()
		}
	})
}
