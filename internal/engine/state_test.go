package engine

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// countingReader returns the number of reads started so far, after a
// short delay, so that callers overlap.
type countingReader struct{ started atomic.Int64 }

func (r *countingReader) read(ctx context.Context) (snapshot, error) {
	n := r.started.Add(1)
	time.Sleep(2 * time.Millisecond)
	return wholeOnly(strconv.FormatInt(n, 10)), nil
}

func TestCoalescedNeverServesOlderRead(t *testing.T) {
	reader := &countingReader{}
	c := &coalesced{reader: reader}
	var wg sync.WaitGroup
	var calls atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				before := reader.started.Load()
				got, err := c.read(context.Background())
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				n, _ := strconv.ParseInt(got.whole(), 10, 64)
				if n <= before {
					t.Errorf("got read %d, which started before the call (%d reads had started)", n, before)
				}
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	if reads := reader.started.Load(); reads >= calls.Load() {
		t.Errorf("%d reads for %d calls, want fewer reads than calls", reads, calls.Load())
	}
}

func TestCoalescedCallerCancel(t *testing.T) {
	c := &coalesced{reader: &countingReader{}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.read(ctx); err == nil {
		t.Error("read with a cancelled context returned no error")
	}
	if _, err := c.read(context.Background()); err != nil {
		t.Errorf("read after a cancelled caller: %v", err)
	}
}

func TestCoalescedObservesEachRead(t *testing.T) {
	reader := &countingReader{}
	registry := prometheus.NewRegistry()
	durations, err := stateReadHistogram(registry)
	if err != nil {
		t.Fatal(err)
	}
	c := &coalesced{reader: reader, durations: durations}
	for range 3 {
		if _, err := c.read(context.Background()); err != nil {
			t.Fatalf("read: %v", err)
		}
	}

	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 1 {
		t.Fatalf("got %d metric families, want 1", len(families))
	}
	h := families[0].GetMetric()[0].GetHistogram()
	if got, want := h.GetSampleCount(), uint64(reader.started.Load()); got != want {
		t.Errorf("observed %d reads, want %d", got, want)
	}
	// Each read sleeps 2ms, so the sum cannot be smaller.
	if least := 3 * 0.002; h.GetSampleSum() < least {
		t.Errorf("observed %.4fs in all, want at least %.4fs", h.GetSampleSum(), least)
	}
	if _, err := stateReadHistogram(registry); err != nil {
		t.Errorf("second registration: %v", err)
	}
}
