package server

import (
	"context"
	"fmt"
	"log/slog"
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

// The shares that StartEarlyCollections accepts, besides 0. Below
// minGCStart it would collect at almost every read. Above maxGCStart it
// would come close to Go's own trigger, which is never below 45/64 (about
// 0.70) of the way, so it could fire while Go's collection runs.
const (
	minGCStart = 0.1
	maxGCStart = 0.65

	// gcSkipShare is the share past which the collector starts no
	// collection, because Go's own may have started, and runtime.GC would
	// wait for it and then run a second one at once.
	gcSkipShare = 0.68
)

// ValidateGCStart reports whether start is a valid share for
// StartEarlyCollections: 0, which leaves collections to Go's pacer, or
// from minGCStart to maxGCStart.
func ValidateGCStart(start float64) error {
	if start != 0 && !(start >= minGCStart && start <= maxGCStart) {
		return fmt.Errorf("invalid gc start %v: use 0 (off) or a share from %v to %v, such as 0.6", start, minGCStart, maxGCStart)
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
// GOGC=off and no memory limit the goal is out of reach, and the
// goroutine never collects.
func StartEarlyCollections(ctx context.Context, start float64, logger *slog.Logger) error {
	if err := ValidateGCStart(start); err != nil {
		return err
	}
	if start == 0 {
		return nil
	}
	go collectEarly(ctx, start, gcPollInterval)
	logger.Info("early garbage collections started", "gc_start", start)
	return nil
}

// collectEarly reads the heap's growth every interval until ctx ends, and
// collects once it passes the share start of the way to the goal.
//
// The growth is what was allocated since the read that first found the
// last collection's count, the way Go's pacer counts it. The heap's size
// would not do: after a collection that Go started, it still holds the
// garbage that Go has not swept yet.
func collectEarly(ctx context.Context, start float64, interval time.Duration) {
	samples := []metrics.Sample{
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	read := func() (goal, live, allocated, cycles uint64) {
		metrics.Read(samples)
		return samples[0].Value.Uint64(), samples[1].Value.Uint64(), samples[2].Value.Uint64(), samples[3].Value.Uint64()
	}
	_, _, base, lastCycles := read()
	everyTick(ctx, interval, func() {
		goal, live, allocated, cycles := read()
		if cycles != lastCycles {
			// A collection ended since the last read: count from here.
			base, lastCycles = allocated, cycles
			return
		}
		if goal <= live {
			return
		}
		runway, grown := float64(goal-live), float64(allocated-base)
		if grown >= start*runway && grown < gcSkipShare*runway {
			// runtime.GC returns once the collection and its sweep are
			// done. The next read then finds the new count and starts over.
			runtime.GC()
		}
	})
}
