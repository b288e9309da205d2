// Command gatehouse-bench benchmarks Gatehouse against a stock SpiceDB
// server on the same data and prints a Markdown report. It exits with
// status 2 for invalid flags, and 1 when Gatehouse gave a wrong answer or
// the run could not be set up. SpiceDB's wrong answers are reported and
// logged as a warning only.
//
// PostgreSQL runs need GATEHOUSE_TEST_DATABASE_URL: a server on loopback
// and a role allowed to create databases (scripts/test-postgres.sh start
// prints one). The URL is read from the environment, not from a flag, so
// that its password stays out of the process list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/loadtest"
	"github.com/gatehouse-authz/gatehouse/internal/server"
)

// databaseURLEnv names the PostgreSQL server for the postgres datastore.
const databaseURLEnv = "GATEHOUSE_TEST_DATABASE_URL"

func main() {
	if loadtest.IsServerProcess() {
		os.Exit(loadtest.ServeProcess())
	}
	os.Exit(run())
}

func run() int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	sizes := flag.String("sizes", "10k,100k,1m", "dataset sizes in relationships, comma-separated (k = 1,000, m = 1,000,000)")
	datastores := flag.String("datastores", "memory,postgres", "datastores, comma-separated: memory, postgres (postgres needs "+databaseURLEnv+")")
	maxMemorySize := flag.String("max-memory-size", "100k", "largest size run on the memory datastore, whose queries scan whole relations (0: no limit)")
	workers := flag.Int("workers", 16, "concurrent clients of each closed-loop scenario")
	lookupWorkers := flag.Int("lookup-workers", 4, "concurrent clients of each lookup scenario")
	bulkWorkers := flag.Int("bulk-workers", 4, "concurrent clients of each bulk check scenario (100 checks per request)")
	duration := flag.Duration("duration", 10*time.Second, "measured time of each scenario")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured time before each scenario")
	pagingTimeout := flag.Duration("paging-timeout", 10*time.Minute, "longest time one pass through every page of a lookup may take")
	queries := flag.Int("queries", 100000, "number of distinct check queries, half allowed and half denied; the cold scenarios need more than they send, or the result cache answers repeats")
	openLoop := flag.Float64("open-loop-fraction", 0.7, "share of the measured peak check throughput offered in the open-loop scenario")
	changeInterval := flag.Duration("change-interval", 500*time.Millisecond, "pause between background access changes during the check scenarios")
	oracleSample := flag.Int("oracle-sample", 2000, "number of check queries, from the first, that SpiceDB answers before the runs to confirm the oracle")
	seed := flag.Int64("seed", 1, "seed of the dataset and the queries")
	label := flag.String("label", "", "what was measured, such as a commit, shown at the top of the report")
	out := flag.String("out", "", "file to write the Markdown report to, besides stdout")
	cpuProfile := flag.String("cpuprofile", "", "directory for CPU and allocation profiles of the server process during the check scenario of each system and during Gatehouse's open loops, per size and datastore")
	gatehouseLogs := flag.Bool("gatehouse-logs", false, "show Gatehouse's own warnings and errors on stderr")
	gcStart := flag.Float64("gc-start", server.DefaultGCStart, "share of the heap's growth after which the server process starts each garbage collection, as gatehouse serve --gc-start (0 leaves it to Go)")
	checksOnly := flag.Bool("checks-only", false, "run only the cold and skewed check scenarios (single, open loop and bulk), to compare changes to the check path")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "gatehouse-bench takes no arguments, only flags; got %q\n", flag.Args())
		return 2
	}

	if msg := checkFlags(*workers, *lookupWorkers, *bulkWorkers, *queries, *oracleSample, *duration, *warmup,
		*pagingTimeout, *changeInterval, *openLoop, splitList(*sizes), splitList(*datastores)); msg != "" {
		fmt.Fprintln(os.Stderr, "gatehouse-bench: "+msg)
		return 2
	}
	if err := server.ValidateGCStart(*gcStart); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-bench: -gc-start: "+err.Error())
		return 2
	}

	cfg := loadtest.Config{
		Datastores: splitList(*datastores), DatabaseURL: os.Getenv(databaseURLEnv),
		Workers: *workers, LookupWorkers: *lookupWorkers, BulkWorkers: *bulkWorkers, Warmup: *warmup, Duration: *duration,
		PagingTimeout: *pagingTimeout, Queries: *queries, OracleSample: *oracleSample, OpenLoopFraction: *openLoop,
		ChangeInterval: *changeInterval, Seed: *seed, Label: *label, CPUProfileDir: *cpuProfile, Logger: logger,
		GatehouseLogs: *gatehouseLogs, ChecksOnly: *checksOnly, GCStart: *gcStart,
	}
	if *maxMemorySize != "0" {
		n, err := loadtest.ParseSize(*maxMemorySize)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		cfg.MaxMemorySize = n
	}
	for _, s := range splitList(*sizes) {
		n, err := loadtest.ParseSize(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		cfg.Sizes = append(cfg.Sizes, n)
	}

	if *out != "" {
		cfg.AfterRun = func(partial *loadtest.Report) {
			if err := writeReport(partial, *out); err != nil {
				logger.Warn("write partial report", "path", *out, "error", err)
			}
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report, runErr := loadtest.Run(ctx, cfg)
	if runErr != nil {
		logger.Error("benchmark failed", "error", runErr)
	}

	if len(report.Runs) == 0 {
		// Nothing ran, so no report replaces the one at -out.
		return 1
	}
	var md strings.Builder
	if err := report.WriteMarkdown(&md); err != nil {
		logger.Error("write report", "error", err)
		return 1
	}
	fmt.Print(md.String())
	if *out != "" {
		if err := writeReport(report, *out); err != nil {
			logger.Error("write report", "path", *out, "error", err)
			return 1
		}
		logger.Info("report written", "path", *out)
	}

	switch {
	case runErr != nil:
		if errors.Is(runErr, loadtest.ErrOracleMismatch) {
			logger.Error("fix the oracle or the generator: SpiceDB is the reference for the generated data")
		}
		return 1
	case report.WrongAnswersOf(loadtest.SystemGatehouse) > 0:
		logger.Error("Gatehouse gave wrong answers", "count", report.WrongAnswersOf(loadtest.SystemGatehouse),
			"spicedb_count", report.WrongAnswersOf(loadtest.SystemSpiceDB))
		return 1
	case report.WrongAnswersOf(loadtest.SystemSpiceDB) > 0:
		// SpiceDB's server shares one head-revision read between
		// concurrent requests, so a check can miss a write that has just
		// returned. That is a finding about SpiceDB, not a failed run.
		logger.Warn("SpiceDB gave wrong answers; Gatehouse gave none", "count", report.WrongAnswersOf(loadtest.SystemSpiceDB))
	}
	return 0
}

// writeReport writes the report as Markdown to path, replacing the file.
func writeReport(report *loadtest.Report, path string) error {
	var md strings.Builder
	if err := report.WriteMarkdown(&md); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(md.String()), 0o644)
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// checkFlags returns what is wrong with the numeric and list flags, or ""
// when they are valid. Zero and negative values are rejected rather than
// replaced by defaults, so that a typo never starts a long run.
func checkFlags(workers, lookupWorkers, bulkWorkers, queries, oracleSample int, duration, warmup,
	pagingTimeout, changeInterval time.Duration, openLoop float64, sizes, datastores []string) string {
	switch {
	case workers <= 0 || lookupWorkers <= 0 || bulkWorkers <= 0:
		return "-workers, -lookup-workers and -bulk-workers must be at least 1"
	case queries < 2:
		return "-queries must be at least 2 (half allowed, half denied)"
	case oracleSample < 0:
		return "-oracle-sample must not be negative"
	case duration <= 0 || pagingTimeout <= 0 || changeInterval <= 0:
		return "-duration, -paging-timeout and -change-interval must be positive"
	case warmup < 0:
		return "-warmup must not be negative"
	case openLoop <= 0 || openLoop > 1:
		return "-open-loop-fraction must be above 0 and at most 1"
	case len(sizes) == 0:
		return "-sizes names no size"
	case len(datastores) == 0:
		return "-datastores names no datastore"
	}
	for _, d := range datastores {
		if d != "memory" && d != "postgres" {
			return fmt.Sprintf("unknown datastore %q in -datastores: use memory, postgres", d)
		}
		if d == "postgres" && os.Getenv(databaseURLEnv) == "" {
			return "-datastores postgres needs " + databaseURLEnv + " (scripts/test-postgres.sh start prints it)"
		}
	}
	return ""
}
