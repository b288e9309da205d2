package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatehouse-authz/gatehouse/internal/config"
)

func TestServeConfigKeepsTheDecisionLogRate(t *testing.T) {
	opts := serveOptions{httpAddr: "127.0.0.1:0", datastore: "memory", sampleRate: 0.25}
	cfg := opts.serverConfig(&config.File{}, slog.New(slog.DiscardHandler))
	if cfg.DecisionLogSampleRate != 0.25 {
		t.Errorf("DecisionLogSampleRate = %v, want 0.25 from --decision-log-sample-rate", cfg.DecisionLogSampleRate)
	}
	if cfg.HTTPAddr != opts.httpAddr || cfg.Datastore != opts.datastore {
		t.Errorf("config = %+v, want the address and datastore of the flags", cfg)
	}
}

func TestServeRejectsBadFlagValues(t *testing.T) {
	cases := map[string][]string{
		"--gc-start":                 {"0.01", "0.9", "1", "1.5", "-0.1", "NaN", "Inf"},
		"--decision-log-sample-rate": {"-0.1", "1.5", "NaN", "Inf"},
	}
	for flag, values := range cases {
		for _, value := range values {
			cmd := newRootCommand()
			cmd.SetArgs([]string{"serve", flag, value, "--http-addr", "127.0.0.1:0"})
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // a serve that got past the check stops at once
			err := cmd.ExecuteContext(ctx)
			if err == nil || !strings.Contains(err.Error(), flag) {
				t.Errorf("serve %s %s: error %v, want one that names the flag", flag, value, err)
			}
		}
	}
}
