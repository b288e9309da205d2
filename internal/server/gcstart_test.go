package server

import (
	"context"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// readGC returns the live heap and the heap goal in bytes, and the number
// of collections that the pacer and that runtime.GC started.
func readGC() (live, goal, automatic, forced uint64) {
	samples := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/gc/cycles/automatic:gc-cycles"},
		{Name: "/gc/cycles/forced:gc-cycles"},
	}
	metrics.Read(samples)
	return samples[0].Value.Uint64(), samples[1].Value.Uint64(), samples[2].Value.Uint64(), samples[3].Value.Uint64()
}

var sink []byte

// liveHeap sets GOGC to 400 for the test, and returns 32 MiB to keep
// live, which puts the heap goal far above Go's 4 MiB minimum. It
// collects before it returns.
func liveHeap(t *testing.T) [][]byte {
	t.Helper()
	before := debug.SetGCPercent(400)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	live := make([][]byte, 32)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	return live
}

// runCollector runs collectEarly with start, reading every millisecond,
// until the test ends.
func runCollector(t *testing.T, start float64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		collectEarly(ctx, start, time.Millisecond)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func TestEarlyCollectionsStartBeforeThePacer(t *testing.T) {
	live := liveHeap(t)
	marked, goal, automatic, forced := readGC()
	runway := goal - marked
	runCollector(t, 0.3)

	// Allocate garbage in steps of 1 MiB, slowly enough for the collector to
	// read the heap between steps, until a collection starts.
	var allocated uint64
	for allocated < 2*runway {
		for range 16 {
			sink = make([]byte, 64<<10)
		}
		allocated += 1 << 20
		time.Sleep(200 * time.Microsecond)
		if _, _, a, f := readGC(); a != automatic || f != forced {
			if a != automatic {
				t.Fatalf("the pacer collected first, after %d MiB of a %d MiB runway", allocated>>20, runway>>20)
			}
			// 0.3 of the runway, plus what the heap grew in the last reads.
			if limit := uint64(float64(runway)*0.3) + 8<<20; allocated > limit {
				t.Errorf("the early collection came after %d MiB, want at most %d MiB", allocated>>20, limit>>20)
			}
			runtime.KeepAlive(live)
			return
		}
	}
	t.Fatalf("no collection after %d MiB of a %d MiB runway", allocated>>20, runway>>20)
}

func TestEarlyCollectionsLeaveGoCollectionsAlone(t *testing.T) {
	live := liveHeap(t)
	_, _, automatic, forced := readGC()

	// At the skip share the collector may start nothing; every collection
	// here is Go's, and runtime.GC during one would add a second.
	runCollector(t, gcSkipShare)

	deadline := time.Now().Add(20 * time.Second)
	for {
		for range 16 {
			sink = make([]byte, 64<<10)
		}
		_, _, a, f := readGC()
		if f != forced {
			t.Fatalf("the early collector started a collection at its skip share (%d of Go's since the start)", a-automatic)
		}
		if a >= automatic+3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Go collected %d times in 20s, want 3", a-automatic)
		}
	}
	runtime.KeepAlive(live)
}

func TestEarlyCollectionsStopWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		collectEarly(ctx, 0.5, time.Millisecond)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the early collector still runs 5s after its context ended")
	}
}

func TestValidateGCStart(t *testing.T) {
	for _, ok := range []float64{0, DefaultGCStart, minGCStart, 0.6, maxGCStart} {
		if err := ValidateGCStart(ok); err != nil {
			t.Errorf("ValidateGCStart(%v) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []float64{-0.5, 0.01, 0.66, 0.99, 1, 2, math.NaN(), math.Inf(1)} {
		if err := ValidateGCStart(bad); err == nil {
			t.Errorf("ValidateGCStart(%v) = nil, want an error", bad)
		}
		if err := StartEarlyCollections(context.Background(), bad, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("StartEarlyCollections(%v) = nil, want an error", bad)
		}
	}
}

func TestValidateDecisionLogSampleRate(t *testing.T) {
	for _, ok := range []float64{0, 0.5, 1} {
		if err := ValidateDecisionLogSampleRate(ok); err != nil {
			t.Errorf("ValidateDecisionLogSampleRate(%v) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []float64{-0.1, 1.5, math.NaN(), math.Inf(1), math.Inf(-1)} {
		if err := ValidateDecisionLogSampleRate(bad); err == nil {
			t.Errorf("ValidateDecisionLogSampleRate(%v) = nil, want an error", bad)
		}
	}
}
