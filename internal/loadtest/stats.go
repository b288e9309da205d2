package loadtest

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Result is the outcome of one scenario on one system.
type Result struct {
	Scenario string
	System   string

	// Unit names what Throughput counts, such as "checks/s".
	Unit       string
	Throughput float64

	// P50, P95 and P99 are latencies of single requests (of a whole pass
	// for the paging scenario). First is the latency of the scenario's
	// first request, before the warm-up filled any cache.
	P50, P95, P99 time.Duration
	First         time.Duration

	Requests     int64
	WrongAnswers int64
	Errors       int64

	// Repeats counts the requests of a cold Gatehouse scenario, warm-up
	// included, whose question a cold scenario had already sent at this
	// size. The result cache may have served them.
	Repeats int64

	// PeakRSS is the high-water mark of the server process's resident
	// memory during the scenario, in bytes; 0 when unknown.
	PeakRSS int64

	// Windows summarizes an open-loop run's latency over time. Zero for
	// closed loops.
	Windows WindowStats

	// GeneratorGCs counts the load generator's own garbage collections
	// during the scenario, which its latencies then include (see
	// pauseGC).
	GeneratorGCs uint32

	// Note is a short remark shown below the table, such as why a
	// scenario ran short.
	Note string

	// sameAs names the scenario across sizes where its name differs, as
	// lookup scenarios name their result count; empty means Scenario.
	sameAs string
}

func (r Result) growthKey() string {
	if r.sameAs != "" {
		return r.sameAs
	}
	return r.Scenario
}

// latencies collects request durations; it is not safe for concurrent
// use, so each worker keeps its own.
type latencies []time.Duration

// percentiles returns the 50th, 95th and 99th percentiles of all, by the
// nearest-rank method. It sorts all.
func percentiles(all []time.Duration) (p50, p95, p99 time.Duration) {
	if len(all) == 0 {
		return 0, 0, 0
	}
	slices.Sort(all)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(all))+0.999999) - 1
		return all[min(max(i, 0), len(all)-1)]
	}
	return rank(0.50), rank(0.95), rank(0.99)
}

// resetPeakRSS resets the resident memory high-water mark (VmHWM) of
// process pid, so that the next readPeakRSS covers only what follows. It
// reports whether the kernel allowed it.
func resetPeakRSS(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// readPeakRSS returns the VmHWM of process pid from /proc/PID/status in
// bytes, or 0 where it cannot be read.
func readPeakRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		value, ok := strings.CutPrefix(scanner.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// formatDuration prints a latency with three significant digits in a
// fitting unit.
func formatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

func formatBytes(n int64) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func formatRate(r float64) string {
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	case r >= 1:
		return fmt.Sprintf("%.1f", r)
	default:
		return fmt.Sprintf("%.3f", r)
	}
}

// windowLength is the span of the windows that WindowStats divides an
// open-loop run into, by the time each request was due.
const windowLength = 250 * time.Millisecond

// WindowStats is a summary of whether an open-loop run's slow requests
// were spread out or came in bursts. It counts the windows whose median
// latency exceeded a bound, and how many of all the requests over the
// bound fell into them.
type WindowStats struct {
	Bound time.Duration

	Windows     int // windows with at least one request
	SlowWindows int // windows whose median latency exceeded Bound
	WorstMedian time.Duration

	SlowRequests         int // requests over Bound
	SlowRequestsInBursts int // of those, the ones in slow windows
}

// timedLatency is the latency of one request and when it was due, from
// the start of the measured part of the run.
type timedLatency struct {
	due, latency time.Duration
}

// windowStats divides the requests into windows of windowLength by due
// time and summarizes them against bound.
func windowStats(requests []timedLatency, bound time.Duration) WindowStats {
	byWindow := map[int64][]time.Duration{}
	for _, r := range requests {
		i := int64(r.due / windowLength)
		byWindow[i] = append(byWindow[i], r.latency)
	}
	w := WindowStats{Bound: bound, Windows: len(byWindow)}
	for _, latencies := range byWindow {
		slices.Sort(latencies)
		median := latencies[len(latencies)/2]
		w.WorstMedian = max(w.WorstMedian, median)
		slow := 0
		for _, l := range latencies {
			if l > bound {
				slow++
			}
		}
		w.SlowRequests += slow
		if median > bound {
			w.SlowWindows++
			w.SlowRequestsInBursts += slow
		}
	}
	return w
}
