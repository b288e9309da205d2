package server

import (
	"log/slog"
	"os"
	"runtime/debug"
	"testing"
)

// unsetEnv unsets key for the test and restores it afterwards.
func unsetEnv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "") // restores the old value at the end
	if err := os.Unsetenv(key); err != nil {
		t.Fatal(err)
	}
}

func TestTuneRuntimeSetsTheGCTarget(t *testing.T) {
	before := debug.SetGCPercent(100)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(before)
		debug.SetMemoryLimit(limit)
	})
	unsetEnv(t, "GOGC")
	t.Setenv("GOMEMLIMIT", "off") // leave the memory limit alone

	TuneRuntime(slog.New(slog.DiscardHandler))
	if got := debug.SetGCPercent(100); got != DefaultGCPercent {
		t.Errorf("GC percent without GOGC = %d, want %d", got, DefaultGCPercent)
	}

	t.Setenv("GOGC", "100")
	TuneRuntime(slog.New(slog.DiscardHandler))
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent with GOGC=100 = %d, want it left at 100", got)
	}
}
