package engine

// The tests in this file attack coalesced, the shared state read. A caller
// must never receive a read that started before it called, whatever other
// callers do.

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rvWrites models the writes that have returned. Its read returns the
// number of writes that had returned when the read started, and fails
// every failEvery-th read.
type rvWrites struct {
	returned  atomic.Int64
	reads     atomic.Int64
	failEvery int64

	mu     sync.Mutex
	starts []time.Time
}

var errRVRead = errors.New("read failed")

func (r *rvWrites) read(ctx context.Context) (snapshot, error) {
	seen := r.returned.Load()
	r.mu.Lock()
	r.starts = append(r.starts, time.Now())
	r.mu.Unlock()
	n := r.reads.Add(1)
	time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	if r.failEvery > 0 && n%r.failEvery == 0 {
		return nil, errRVRead
	}
	return wholeOnly(strconv.FormatInt(seen, 10)), nil
}

// TestAttackCoalescedSeesReturnedWrites has each caller finish a
// write, then read the state, with a third of the callers giving up at a
// random moment and some reads failing. Every successful read must reflect
// the caller's own write and every write that returned before it called.
func TestAttackCoalescedSeesReturnedWrites(t *testing.T) {
	reader := &rvWrites{failEvery: 7}
	c := &coalesced{reader: reader}
	var wg sync.WaitGroup
	var ok, cancelled, failed atomic.Int64
	for g := range 24 {
		wg.Go(func() {
			for i := range 150 {
				mine := reader.returned.Add(1) // this caller's write returns
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				switch (g + i) % 3 {
				case 1:
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(rand.IntN(800))*time.Microsecond)
				case 2:
					ctx, cancel = context.WithCancel(context.Background())
					if i%2 == 0 {
						cancel()
					}
				}
				got, err := c.read(ctx)
				cancel()
				switch {
				case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
					cancelled.Add(1)
					continue
				case errors.Is(err, errRVRead):
					failed.Add(1)
					continue
				case err != nil:
					t.Errorf("read: %v", err)
					return
				}
				ok.Add(1)
				seen, _ := strconv.ParseInt(got.whole(), 10, 64)
				if seen < mine {
					t.Errorf("caller %d, call %d: read saw %d writes, but write %d had returned before the call", g, i, seen, mine)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d reads for %d successful, %d given-up and %d failed calls", reader.reads.Load(), ok.Load(), cancelled.Load(), failed.Load())
	if ok.Load() == 0 || cancelled.Load() == 0 || failed.Load() == 0 {
		t.Error("the test did not exercise successes, cancellations and failures")
	}

	// The reader goroutine stops once no caller waits.
	deadline := time.Now().Add(time.Second)
	for {
		c.mu.Lock()
		running, next := c.running, c.next
		c.mu.Unlock()
		if !running && next == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reader goroutine still runs (next pending: %v) with no caller", next != nil)
		}
		time.Sleep(time.Millisecond)
	}
	// TestCoalescedKeepsSharedReadsApart covers the spacing of reads.
}

// gateReader blocks each read until released, and numbers the reads.
type gateReader struct {
	started chan int
	release chan struct{}
	n       atomic.Int64
}

func (r *gateReader) read(ctx context.Context) (snapshot, error) {
	n := int(r.n.Add(1))
	r.started <- n
	select {
	case <-r.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return wholeOnly(strconv.Itoa(n)), nil
}

// TestAttackCoalescedSkipsRunningRead starts a read, then calls while
// it runs: the second caller must get a read that started after its call,
// even when it arrives during the wait between reads, and even when the
// first caller gave up.
func TestAttackCoalescedSkipsRunningRead(t *testing.T) {
	r := &gateReader{started: make(chan int, 8), release: make(chan struct{})}
	c := &coalesced{reader: r}
	firstCtx, cancelFirst := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := c.read(firstCtx)
		first <- err
	}()
	if n := <-r.started; n != 1 {
		t.Fatalf("first read is %d", n)
	}
	cancelFirst() // the first caller gives up, and its read goes on
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v, want cancelled", err)
	}

	second := make(chan snapshot, 1)
	go func() {
		s, err := c.read(context.Background())
		if err != nil {
			t.Errorf("second caller: %v", err)
		}
		second <- s
	}()
	time.Sleep(5 * time.Millisecond) // the second caller is waiting
	r.release <- struct{}{}          // the first read ends
	if n := <-r.started; n != 2 {
		t.Fatalf("the read after the first is %d", n)
	}
	// A third caller arrives while read 2 runs, and a fourth after it ends,
	// during the wait before the next read.
	third := make(chan snapshot, 1)
	go func() {
		s, _ := c.read(context.Background())
		third <- s
	}()
	time.Sleep(5 * time.Millisecond)
	r.release <- struct{}{}
	if s := <-second; s.whole() != "2" {
		t.Errorf("second caller got read %s, want 2", s.whole())
	}
	fourth := make(chan snapshot, 1)
	go func() {
		s, _ := c.read(context.Background())
		fourth <- s
	}()
	if n := <-r.started; n != 3 {
		t.Fatalf("the read after the second is %d", n)
	}
	r.release <- struct{}{}
	if s := <-third; s.whole() != "3" {
		t.Errorf("third caller got read %s, want 3", s.whole())
	}
	// The fourth caller joins read 3 if it called before read 3 started,
	// and else gets read 4: either is right, and neither may hang.
	for {
		select {
		case s := <-fourth:
			if s.whole() != "3" && s.whole() != "4" {
				t.Errorf("fourth caller got read %s, want 3 or 4", s.whole())
			}
			return
		case <-r.started:
			r.release <- struct{}{}
		case <-time.After(5 * time.Second):
			t.Fatal("the fourth caller waits for ever")
		}
	}
}
