package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/testlog"
	"github.com/prometheus/client_golang/prometheus"
)

func TestDecisionLogWritesEachKeyOnce(t *testing.T) {
	var out testlog.Buffer
	logger := slog.New(slog.NewJSONHandler(&out, nil))
	registry := prometheus.NewRegistry()
	l := NewDecisionLog(logger, 1, 8, registry)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	l.Record(Decision{Time: time.Now(), RequestID: "req-1", Caller: "user:corp|alice", Subject: "user:corp|bob",
		Permission: "view", Resource: "document:d1", Allowed: true})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "\n") {
		if time.Now().After(deadline) {
			t.Fatal("no decision line after 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	line := strings.TrimSpace(out.String())

	// encoding/json keeps the last of two equal keys, so count them in
	// the text.
	if n := strings.Count(line, `"time":`); n != 1 {
		t.Errorf("line has %d time keys, want 1: %s", n, line)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(line), &fields); err != nil {
		t.Fatalf("line is not JSON: %v: %s", err, line)
	}
	want := map[string]any{"request_id": "req-1", "caller": "user:corp|alice", "subject": "user:corp|bob",
		"permission": "view", "resource": "document:d1", "allowed": true}
	for key, value := range want {
		if fields[key] != value {
			t.Errorf("%s = %v, want %v", key, fields[key], value)
		}
	}
	if _, ok := fields["decided_at"]; !ok {
		t.Errorf("line has no decided_at: %s", line)
	}
	if got := counterValue(t, registry, "gatehouse_decision_log_written_total"); got != 1 {
		t.Errorf("written count = %v, want 1", got)
	}
}

func TestDecisionLogSkipsAboveInfo(t *testing.T) {
	logger := slog.New(slog.NewJSONHandler(&testlog.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l := NewDecisionLog(logger, 1, 8, prometheus.NewRegistry())
	l.Record(Decision{Time: time.Now(), RequestID: "req-1", Permission: "view", Allowed: true})
	if n := len(l.queue); n != 0 {
		t.Errorf("queue contains %d decisions that a warn-level log would never write, want 0", n)
	}
}

// counterValue returns the value of the counter name in registry.
func counterValue(t *testing.T, registry *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, family := range families {
		if family.GetName() == name && len(family.GetMetric()) == 1 {
			return family.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}
