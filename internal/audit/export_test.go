package audit

import "time"

// SetClock replaces the clock that stamps appended entries of a *Memory or
// *Postgres log, so that tests can append entries at chosen times. Call it
// before the log is in concurrent use.
func SetClock(log Log, now func() time.Time) {
	switch l := log.(type) {
	case *Memory:
		l.mu.Lock()
		l.now = now
		l.mu.Unlock()
	case *Postgres:
		l.now = now
	default:
		panic("audit.SetClock: unsupported log type")
	}
}
