package server

import (
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
)

// DefaultGCPercent is the garbage collector's target that TuneRuntime sets
// when GOGC is not set: the heap may grow to five times its live size
// between collections, where Go's default is twice.
//
// While the collector marks the heap, it takes a quarter of the CPU and
// makes allocating goroutines help it, and a server near its peak then
// queues requests. Measured with gatehouse-bench on 1M relationships on
// two cores, each collection made a burst of checks over 10 ms, and at
// Go's default these bursts set the p99 (docs/benchmarks.md). Collecting
// a quarter as often costs memory: a live heap of 100 to 280 MB, as in
// later runs, grows to 500 MB to 1.4 GB. Set GOGC, or GOMEMLIMIT, to choose otherwise.
const DefaultGCPercent = 400

// memoryLimitRatio is the share of a container's memory limit that
// TuneRuntime gives the Go heap, leaving the rest to stacks and to memory
// outside the heap.
const memoryLimitRatio = 0.9

// TuneRuntime sets the process up for serving, and logs what it set.
//
// It sets the garbage collector's target to DefaultGCPercent unless GOGC
// is set. Unless GOMEMLIMIT is set, it sets a soft memory limit of 90% of
// the container's (cgroup) memory limit, when there is one, so that the
// larger heap makes the collector run sooner instead of running out of
// memory. It also installs OpenTelemetry's no-op tracer provider, because
// Gatehouse exports no traces and without a provider every span that
// SpiceDB starts is still allocated.
func TuneRuntime(logger *slog.Logger) {
	otel.SetTracerProvider(noop.NewTracerProvider())
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(DefaultGCPercent)
		logger.Debug("garbage collector target set", "gc_percent", DefaultGCPercent)
	}
	limit, err := memlimit.SetGoMemLimitWithOpts(
		memlimit.WithRatio(memoryLimitRatio),
		memlimit.WithProvider(memlimit.FromCgroup),
	)
	switch {
	case err != nil:
		logger.Warn("could not read the container's memory limit; the Go heap has none", "error", err)
	case limit > 0:
		logger.Info("Go memory limit set from the container's", "bytes", limit)
	}
}
