package main

import (
	"testing"
	"time"
)

func TestCheckFlagsRejects(t *testing.T) {
	t.Setenv(databaseURLEnv, "")
	valid := func() (int, int, int, int, int, time.Duration, time.Duration, time.Duration, time.Duration, float64, []string, []string) {
		return 16, 4, 4, 100000, 2000, 10 * time.Second, 2 * time.Second, time.Minute, 500 * time.Millisecond, 0.7, []string{"10k"}, []string{"memory"}
	}
	if msg := checkFlags(valid()); msg != "" {
		t.Fatalf("default flags rejected: %s", msg)
	}
	for name, change := range map[string]func(w, lw, bw, q, o *int, d, wu, pt, ci *time.Duration, f *float64, sizes, stores *[]string){
		"zero workers":        func(w, _, _, _, _ *int, _, _, _, _ *time.Duration, _ *float64, _, _ *[]string) { *w = 0 },
		"one query":           func(_, _, _, q, _ *int, _, _, _, _ *time.Duration, _ *float64, _, _ *[]string) { *q = 1 },
		"negative sample":     func(_, _, _, _, o *int, _, _, _, _ *time.Duration, _ *float64, _, _ *[]string) { *o = -1 },
		"negative duration":   func(_, _, _, _, _ *int, d, _, _, _ *time.Duration, _ *float64, _, _ *[]string) { *d = -time.Second },
		"negative warmup":     func(_, _, _, _, _ *int, _, wu, _, _ *time.Duration, _ *float64, _, _ *[]string) { *wu = -time.Second },
		"zero change pause":   func(_, _, _, _, _ *int, _, _, _, ci *time.Duration, _ *float64, _, _ *[]string) { *ci = 0 },
		"open loop above one": func(_, _, _, _, _ *int, _, _, _, _ *time.Duration, f *float64, _, _ *[]string) { *f = 1.5 },
		"no size":             func(_, _, _, _, _ *int, _, _, _, _ *time.Duration, _ *float64, s, _ *[]string) { *s = nil },
		"no datastore":        func(_, _, _, _, _ *int, _, _, _, _ *time.Duration, _ *float64, _, s *[]string) { *s = nil },
		"unknown datastore":   func(_, _, _, _, _ *int, _, _, _, _ *time.Duration, _ *float64, _, s *[]string) { *s = []string{"mem"} },
		"postgres without URL": func(_, _, _, _, _ *int, _, _, _, _ *time.Duration, _ *float64, _, s *[]string) {
			*s = []string{"postgres"}
		},
	} {
		w, lw, bw, q, o, d, wu, pt, ci, f, sizes, stores := valid()
		change(&w, &lw, &bw, &q, &o, &d, &wu, &pt, &ci, &f, &sizes, &stores)
		if msg := checkFlags(w, lw, bw, q, o, d, wu, pt, ci, f, sizes, stores); msg == "" {
			t.Errorf("%s: accepted", name)
		}
	}
}
