package loadtest

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/server"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPUModel   string
	CPUs       int
	GOMAXPROCS int
	GoVersion  string
	OS, Arch   string

	// GOGC and GOMEMLIMIT are the garbage collector's settings from the
	// environment, which the server process inherits: "unset" when unset.
	GOGC, GOMEMLIMIT string
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, CPUModel: "unknown",
		GOGC: cmp.Or(os.Getenv("GOGC"), "unset"), GOMEMLIMIT: cmp.Or(os.Getenv("GOMEMLIMIT"), "unset")}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		scanner := bufio.NewScanner(f)
		for scanner.Scan() {
			if name, value, ok := strings.Cut(scanner.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
				m.CPUModel = strings.TrimSpace(value)
				break
			}
		}
	}
	return m
}

// ParseSize reads a dataset size such as "10k", "1m" or "2500".
func ParseSize(s string) (int, error) {
	text := strings.ToLower(strings.TrimSpace(s))
	multiplier := 1
	switch {
	case strings.HasSuffix(text, "k"):
		multiplier, text = 1000, strings.TrimSuffix(text, "k")
	case strings.HasSuffix(text, "m"):
		multiplier, text = 1000000, strings.TrimSuffix(text, "m")
	}
	n, err := strconv.Atoi(text)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q is not a positive number such as 10k, 100k or 1m", s)
	}
	return n * multiplier, nil
}

// formatSize is the inverse of ParseSize for round sizes.
func formatSize(n int) string {
	switch {
	case n%1000000 == 0:
		return strconv.Itoa(n/1000000) + "m"
	case n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// formatCount writes n with thousands separators, such as 100,000.
func formatCount(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// WriteMarkdown writes the report as Markdown.
func (r *Report) WriteMarkdown(w io.Writer) error {
	b := &strings.Builder{}
	cfg := r.Config
	fmt.Fprintf(b, "# Gatehouse and SpiceDB side by side\n\n")
	if cfg.Label != "" {
		fmt.Fprintf(b, "Measured: %s.\n\n", cfg.Label)
	}
	fmt.Fprintf(b, "Run on %s with `gatehouse-bench`: %d workers per closed-loop scenario (%d for lookups, %d for bulk checks), %s warm-up and %s measured per scenario, seed %d, %d distinct check queries.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), cfg.Workers, cfg.LookupWorkers, cfg.BulkWorkers, cfg.Warmup, cfg.Duration, cfg.Seed, cfg.Queries)
	b.WriteString("- Both systems run in one server process, a child of the benchmark (the same binary, started again). " +
		"The dataset, the oracle and the load generator stay in the parent, as callers would in a deployment. " +
		"The server process sets its garbage collector as `gatehouse serve` does: `GOGC` 400 unless the environment sets `GOGC`, " +
		"and a memory limit from the container's unless it sets `GOMEMLIMIT`. " +
		"The load generator collects its own garbage between scenarios and not during them, unless its heap grows by a third of the available memory (2 to 8 GiB), and the results name any scenario in which it did.\n")
	b.WriteString("- **SpiceDB** is a stock SpiceDB v1.56.2 server (`pkg/cmd/server`) in the server process, on the same datastore object as Gatehouse, " +
		"with a dispatch cache of the same size (64 MiB), called through authzed-go over gRPC on loopback TCP, fully consistent. " +
		"On PostgreSQL its connections prepare each query shape once, as Gatehouse opens them. " +
		"Stock SpiceDB has PostgreSQL plan every query again unless its URL sets `default_query_exec_mode`.\n")
	b.WriteString("- **Gatehouse** is called over HTTP on loopback by a service holding the `app` role on every org, with a Gatehouse token " +
		"from token exchange, so every request verifies the token and its auth version; every check is fully consistent. " +
		"A Gatehouse check also checks that the caller may ask (`inspect`), so it costs SpiceDB two checks.\n")
	b.WriteString("- **Peak RSS** is the high-water mark of the server process (both servers and their caches, without the load generator) " +
		"during the scenario, reset before each one after a forced garbage collection. It includes what earlier scenarios left in the caches, " +
		"so compare it within one run. The PostgreSQL server's own memory is not included.\n")
	b.WriteString("- **Wrong answers** are answers that differ from the oracle (a Go model of the schema), or from an access change " +
		"made just before; errors are counted apart.\n")
	b.WriteString("- Latencies are per request; for \"all pages\" per pass through every page. \"First request\" is the latency of a " +
		"scenario's first request, sent alone before the warm-up, when no cache holds its result yet. The open-loop scenarios send " +
		"requests at a fixed rate through the same warm-up before they measure, and count each latency from the moment its request was due.\n")
	fmt.Fprintf(b, "- The cold check scenarios (\"check\", the bulk checks and \"check, open loop\") cycle through the %d queries in a fixed shuffled order, "+
		"so a question repeats only after that many requests. The skewed ones pick each question from the first %d with a Zipf distribution "+
		"(s = %.1f, v = %.0f, one seeded generator per worker), so the %d most frequent questions make up %.0f%% of the requests. "+
		"Role changes and one-second temporary grants run through Gatehouse's API during both, every %s, and each write makes a new "+
		"datastore revision. SpiceDB's dispatch cache keys results by revision. Gatehouse's result cache keys a check by the state of "+
		"its resource's org for its subject, which writes to other orgs, and writes that name only other users, leave unchanged. "+
		"The changes name users that no check asks about, so that the expected answers stay valid; they clear no result that the "+
		"checks use, but each one moves the revision that its org's uncached checks are evaluated at. The repeated-questions scenario starts once no "+
		"relationship write has committed for %s. No writes run during it or the lookup scenarios.\n",
		cfg.Queries, skewedQuestionCount(cfg.Queries), zipfS, zipfV, repeatedQuestions, 100*zipfShare(skewedQuestionCount(cfg.Queries), repeatedQuestions), cfg.ChangeInterval, quietPeriod)
	fmt.Fprintf(b, "- Bulk checks run with %d workers (100 checks per request); the other closed-loop scenarios with %d.\n\n", cfg.BulkWorkers, cfg.Workers)

	for _, run := range r.Runs {
		writeRun(b, run, cfg)
	}
	writeSummary(b, r)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeRun(b *strings.Builder, run *RunReport, cfg Config) {
	fmt.Fprintf(b, "## %s relationships on %s\n\n", formatSize(run.Size), run.Datastore)
	fmt.Fprintf(b, "Dataset: %s.\n\n", run.Dataset)
	fmt.Fprintf(b, "Generated in %s, loaded in %s", run.GenerateTime.Round(time.Millisecond), run.LoadTime.Round(time.Millisecond))
	if run.AnalyzeTime > 0 {
		fmt.Fprintf(b, ", then `ANALYZE` in %s", run.AnalyzeTime.Round(time.Millisecond))
	}
	fmt.Fprintf(b, ". Check queries: %s. The oracle agreed with SpiceDB on %d sampled checks before the runs", run.Mix, run.OracleChecks)
	if run.OracleLookups > 0 {
		fmt.Fprintf(b, ", and on %d lookups before the lookup scenarios", run.OracleLookups)
	}
	b.WriteString(".\n\n")

	b.WriteString("| scenario | system | throughput | p50 | p95 | p99 | first request | peak RSS | wrong answers | errors |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	rows := append([]Result(nil), run.Results...)
	for _, open := range []*Result{run.OpenLoop, run.SkewedOpenLoop} {
		if open != nil {
			rows = append(rows, *open)
		}
	}
	for _, res := range rows {
		fmt.Fprintf(b, "| %s | %s | %s %s | %s | %s | %s | %s | %s | %d | %d |\n",
			res.Scenario, res.System, formatRate(res.Throughput), res.Unit,
			formatDuration(res.P50), formatDuration(res.P95), formatDuration(res.P99), formatDuration(res.First),
			formatBytes(res.PeakRSS), res.WrongAnswers, res.Errors)
	}
	b.WriteString("\n")

	raw, gh, bulk := find(run, scenarioCheck, systemSpiceDB), find(run, scenarioCheck, systemGatehouse), find(run, scenarioBulk, systemGatehouse)
	if raw != nil && gh != nil && bulk != nil && raw.Throughput > 0 {
		fmt.Fprintf(b, "- Gatehouse check / SpiceDB check throughput: **%.2f**\n", gh.Throughput/raw.Throughput)
		fmt.Fprintf(b, "- Gatehouse bulk checks / SpiceDB check throughput: **%.2f**\n", bulk.Throughput/raw.Throughput)
	}
	if ratio, ok := throughputRatio(run, scenarioRepeated); ok {
		fmt.Fprintf(b, "- Gatehouse check / SpiceDB check throughput on %d repeated questions with no writes: **%.2f**\n", repeatedQuestions, ratio)
	}
	if ratio, ok := throughputRatio(run, scenarioSkewed); ok {
		fmt.Fprintf(b, "- Gatehouse check / SpiceDB check throughput on skewed questions with writes: **%.2f**\n", ratio)
	}
	if run.OpenLoop != nil {
		fmt.Fprintf(b, "- Open loop: Gatehouse checks offered at %.0f/s (%.0f%% of the closed-loop peak): p99 **%s**, %d requests. %s\n",
			run.OpenLoopRate, 100*cfg.OpenLoopFraction, formatDuration(run.OpenLoop.P99), run.OpenLoop.Requests, formatWindows(run.OpenLoop.Windows))
	}
	if run.SkewedOpenLoop != nil {
		fmt.Fprintf(b, "- Open loop on skewed questions: Gatehouse checks offered at %.0f/s (%.0f%% of the skewed closed-loop peak): p99 **%s**, %d requests. %s\n",
			run.SkewedOpenLoopRate, 100*cfg.OpenLoopFraction, formatDuration(run.SkewedOpenLoop.P99), run.SkewedOpenLoop.Requests, formatWindows(run.SkewedOpenLoop.Windows))
	}
	var collected []string
	for _, res := range rows {
		if res.GeneratorGCs > 0 {
			collected = append(collected, fmt.Sprintf("%s, %s (%d)", res.Scenario, res.System, res.GeneratorGCs))
		}
	}
	if len(collected) > 0 {
		fmt.Fprintf(b, "- The load generator collected its own garbage during %s, so those latencies include its pauses.\n", strings.Join(collected, "; "))
	}
	if run.WritesDuringRepeated {
		fmt.Fprintf(b, "- A relationship write committed while %q ran, so the caches of both systems may have been emptied during it.\n", scenarioRepeated)
	}
	if n := run.ClusterTransactionsDuringRepeated; n > 0 {
		fmt.Fprintf(b, "- %d transaction ids were assigned in the PostgreSQL cluster while %q ran, by writes to any of its databases. "+
			"SpiceDB v1.56.2's revisions on PostgreSQL are snapshots of the whole cluster, so each such write gives fully consistent checks "+
			"a new revision, which SpiceDB's dispatch cache holds no results for.\n",
			n, scenarioRepeated)
	}
	c := run.Churn
	fmt.Fprintf(b, "- Access changes during the check scenarios: %d role changes and %d one-second grants through Gatehouse's API, "+
		"each verified in both systems (a grant only after its end, because Gatehouse may end it up to %s early). "+
		"Answers that matched: %d; wrong: Gatehouse %d, SpiceDB %d; errors %d.\n",
		c.RoleChanges, c.GrantsEnded, maxGrantLead, c.Verifications, c.WrongGatehouse, c.WrongSpiceDB, c.Errors)
	alive := "not checked, because the run ended early"
	if run.AliveChecked {
		alive = strconv.FormatBool(run.DatastoreAlive)
	}
	fmt.Fprintf(b, "- Gatehouse tokens rejected with 401 and exchanged again: %d. Gatehouse still answered after the SpiceDB server on its datastore stopped: %s.\n",
		run.TokenRejected, alive)
	if run.Datastore == server.DatastoreMemory {
		b.WriteString("- SpiceDB v1.56.2's memory datastore looks relationships up by resource type and relation only and filters " +
			"the rest one by one (`iteratorForFilter` in `internal/datastore/memdb/readonly.go`), so each query scans every " +
			"relationship of that type and relation, and the memory numbers fall with the dataset's size.\n")
	}
	for _, note := range run.Notes {
		fmt.Fprintf(b, "- %s\n", note)
	}
	for _, res := range rows {
		if res.Note != "" {
			fmt.Fprintf(b, "- %s (%s): %s\n", res.Scenario, res.System, res.Note)
		}
	}
	b.WriteString("\n")
}

func find(run *RunReport, scenario, system string) *Result {
	for i := range run.Results {
		if run.Results[i].Scenario == scenario && run.Results[i].System == system {
			return &run.Results[i]
		}
	}
	return nil
}

// throughputRatio returns Gatehouse's throughput over SpiceDB's in scenario
// of run, if both ran.
func throughputRatio(run *RunReport, scenario string) (float64, bool) {
	raw, gh := find(run, scenario, systemSpiceDB), find(run, scenario, systemGatehouse)
	if raw == nil || gh == nil || raw.Throughput == 0 {
		return 0, false
	}
	return gh.Throughput / raw.Throughput, true
}

func writeSummary(b *strings.Builder, r *Report) {
	b.WriteString("## Summary\n\n### Ratios\n\n")
	fmt.Fprintf(b, "The check columns give Gatehouse's throughput over SpiceDB's in the same scenario. "+
		"The bulk column gives Gatehouse's bulk checks over SpiceDB's single checks on cold questions. "+
		"The open-loop columns give Gatehouse's p99 at %.0f%% of its closed-loop peak on the same questions.\n\n", 100*r.Config.OpenLoopFraction)
	b.WriteString("| size | datastore | check, cold | bulk / SpiceDB check | check, repeated | check, skewed | open-loop p99, cold | open-loop p99, skewed |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, run := range r.Runs {
		raw, gh, bulk := find(run, scenarioCheck, systemSpiceDB), find(run, scenarioCheck, systemGatehouse), find(run, scenarioBulk, systemGatehouse)
		if raw == nil || gh == nil || bulk == nil || raw.Throughput == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %.2f | %.2f | %s | %s | %s | %s |\n", formatSize(run.Size), run.Datastore,
			gh.Throughput/raw.Throughput, bulk.Throughput/raw.Throughput,
			formatRatio(throughputRatio(run, scenarioRepeated)), formatRatio(throughputRatio(run, scenarioSkewed)),
			formatP99(run.OpenLoop), formatP99(run.SkewedOpenLoop))
	}

	writeTarget(b, r)
	writeGrowth(b, r)

	b.WriteString("\n### Load times\n\n| size | datastore | relationships | generate | load | ANALYZE |\n|---|---|---:|---:|---:|---:|\n")
	for _, run := range r.Runs {
		analyze := "–"
		if run.AnalyzeTime > 0 {
			analyze = run.AnalyzeTime.Round(time.Millisecond).String()
		}
		relationships, _, _ := strings.Cut(run.Dataset, " ")
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", formatSize(run.Size), run.Datastore, relationships,
			run.GenerateTime.Round(time.Millisecond), run.LoadTime.Round(time.Millisecond), analyze)
	}

	if len(r.Skipped) > 0 {
		b.WriteString("\n### Not run\n\n")
		for _, s := range r.Skipped {
			fmt.Fprintf(b, "- %s\n", s)
		}
	}

	m := r.Machine
	fmt.Fprintf(b, "\n### Machine\n\n%s, %d CPUs, GOMAXPROCS %d, GOGC %s, GOMEMLIMIT %s in the environment, %s %s/%s. The server process started its collections at %s. Other work may have run on the machine at the same time, so treat the numbers as rough.\n\n",
		m.CPUModel, m.CPUs, m.GOMAXPROCS, m.GOGC, m.GOMEMLIMIT, m.GoVersion, m.OS, m.Arch, describeGCStart(r.Config.GCStart))
	fmt.Fprintf(b, "Wrong answers in total: **%d** (Gatehouse %d, SpiceDB %d).\n",
		r.WrongAnswers(), r.WrongAnswersOf(systemGatehouse), r.WrongAnswersOf(systemSpiceDB))
}

// formatWindows describes how an open-loop run's slow requests were
// spread over time.
func formatWindows(w WindowStats) string {
	if w.Windows == 0 {
		return ""
	}
	window, bound := fmt.Sprintf("%d ms", windowLength.Milliseconds()), fmt.Sprintf("%d ms", w.Bound.Milliseconds())
	if w.SlowWindows == 0 {
		return fmt.Sprintf("Over time: none of the %d windows of %s had a median over %s (worst median %s); %d requests took longer.",
			w.Windows, window, bound, formatDuration(w.WorstMedian), w.SlowRequests)
	}
	share := 100 * float64(w.SlowRequestsInBursts) / float64(w.SlowRequests)
	return fmt.Sprintf("Over time: %d of %d windows of %s had a median over %s (worst median %s), and they held %.0f%% of the %d requests over %s.",
		w.SlowWindows, w.Windows, window, bound, formatDuration(w.WorstMedian), share, w.SlowRequests, bound)
}

// openLoopTarget is the p99 latency that Gatehouse's single checks should
// stay under at 70% of their peak throughput, on 1M relationships on
// PostgreSQL.
const openLoopTarget = 10 * time.Millisecond

func writeTarget(b *strings.Builder, r *Report) {
	fmt.Fprintf(b, "\nTarget: a p99 under %s for Gatehouse checks at 70%% of the peak on 1m relationships on PostgreSQL. ", formatDuration(openLoopTarget))
	if r.Config.OpenLoopFraction != 0.7 {
		fmt.Fprintf(b, "This run offered %.0f%% of the peak instead, so the target does not apply.\n", 100*r.Config.OpenLoopFraction)
		return
	}
	for _, run := range r.Runs {
		if run.Datastore != server.DatastorePostgres || run.Size < 1000000 || run.OpenLoop == nil {
			continue
		}
		verdict := "missed"
		if run.OpenLoop.P99 < openLoopTarget {
			verdict = "met"
		}
		fmt.Fprintf(b, "On %s relationships: p99 %s at %.0f checks/s offered, so the target was %s.", formatSize(run.Size), formatDuration(run.OpenLoop.P99), run.OpenLoopRate, verdict)
		if n := run.OpenLoop.Repeats; n > 0 {
			fmt.Fprintf(b, " But %d of its requests, warm-up included, repeated questions sent before, which the result cache may have answered, so this was not a cold measurement.", n)
		}
		b.WriteString("\n")
		return
	}
	b.WriteString("This run had no such size.\n")
}

// writeGrowth compares each scenario's throughput and p99 at the smallest
// and the largest size, per datastore.
func writeGrowth(b *strings.Builder, r *Report) {
	type key struct{ datastore, scenario, system string }
	first, last := map[key]Result{}, map[key]Result{}
	firstSize, lastSize := map[string]int{}, map[string]int{}
	var order []key
	for _, run := range r.Runs {
		if _, ok := firstSize[run.Datastore]; !ok {
			firstSize[run.Datastore] = run.Size
		}
		lastSize[run.Datastore] = run.Size
		for _, res := range run.Results {
			k := key{run.Datastore, res.growthKey(), res.System}
			if _, ok := first[k]; !ok {
				first[k] = res
				order = append(order, k)
			}
			last[k] = res
		}
	}
	b.WriteString("\n### Growth from the smallest to the largest size\n\n")
	written := false
	for _, k := range order {
		if firstSize[k.datastore] == lastSize[k.datastore] {
			continue
		}
		if !written {
			b.WriteString("| datastore | scenario | system | throughput (smallest → largest) | p99 (smallest → largest) |\n|---|---|---|---:|---:|\n")
			written = true
		}
		f, l := first[k], last[k]
		scenario := l.Scenario
		if f.Scenario != l.Scenario {
			scenario = f.Scenario + " → " + l.Scenario
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s → %s %s (%s) | %s → %s (%s) |\n", k.datastore, scenario, k.system,
			formatRate(f.Throughput), formatRate(l.Throughput), f.Unit, formatSize(firstSize[k.datastore])+" → "+formatSize(lastSize[k.datastore]),
			formatDuration(f.P99), formatDuration(l.P99), ratio(l.P99, f.P99))
	}
	if !written {
		b.WriteString("Only one size ran per datastore.\n")
	}
}

// formatRatio formats a ratio that throughputRatio returned, or a dash when
// it has none.
func formatRatio(ratio float64, ok bool) string {
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f", ratio)
}

// formatP99 formats the p99 latency of res, or a dash when it did not run.
func formatP99(res *Result) string {
	if res == nil {
		return "–"
	}
	return formatDuration(res.P99)
}

func ratio(a, b time.Duration) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("×%.2f", float64(a)/float64(b))
}

// describeGCStart returns the report's phrase for when the server process
// started its collections.
func describeGCStart(start float64) string {
	if start == 0 {
		return "Go's own trigger (-gc-start 0)"
	}
	return fmt.Sprintf("%v of the way from the live heap to Go's goal (-gc-start %v)", start, start)
}
