package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/schema"
)

// TestMain runs the servers instead of the tests when Run started this
// test binary as its server process.
func TestMain(m *testing.M) {
	if IsServerProcess() {
		os.Exit(ServeProcess())
	}
	os.Exit(m.Run())
}

func TestGenerateIsDeterministic(t *testing.T) {
	a, err := Generate(GenerateConfig{Relationships: 5000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(GenerateConfig{Relationships: 5000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Relationships, b.Relationships) {
		t.Error("two datasets of the same seed differ")
	}
	if !slices.Equal(a.Objects[typeDocument], b.Objects[typeDocument]) {
		t.Error("two datasets of the same seed list different documents")
	}

	c, err := Generate(GenerateConfig{Relationships: 5000, Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a.Relationships, c.Relationships) {
		t.Error("datasets of seeds 7 and 8 are equal")
	}

	oracle := NewOracle(a)
	q1, _, err := GenerateQueries(a, oracle, 500, 3)
	if err != nil {
		t.Fatal(err)
	}
	q2, _, err := GenerateQueries(a, oracle, 500, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(q1, q2) {
		t.Error("two query sets of the same seed differ")
	}
}

func TestGenerateMeetsSizeTargets(t *testing.T) {
	for _, size := range []int{3000, 10000, 100000} {
		ds, err := Generate(GenerateConfig{Relationships: size, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		got := len(ds.Relationships)
		if got < size*95/100 || got > size*105/100 {
			t.Errorf("size %d: %d relationships, want within 5%%", size, got)
		}
		if ds.Count(typeOrg) < 3 {
			t.Errorf("size %d: %d orgs, want at least 3 for cross-tenant queries", size, ds.Count(typeOrg))
		}
		for _, typ := range []string{typeWorkspace, typeProject, typeDocument, typeGroup, typeGrant, typeLink} {
			if ds.Count(typ) == 0 {
				t.Errorf("size %d: no %s", size, typ)
			}
		}
		if len(ds.Outsiders) == 0 {
			t.Errorf("size %d: no users outside every org", size)
		}

		oracle := NewOracle(ds)
		for _, u := range ds.LookupUsers {
			if u.Planted > u.Target {
				t.Errorf("size %d: %s planted to see %d documents, more than its target %d", size, u.User, u.Planted, u.Target)
			}
			if got := len(oracle.LookupDocuments("view", u.User)); got != u.Planted {
				t.Errorf("size %d: %s sees %d documents, planted %d", size, u.User, got, u.Planted)
			}
		}
		if small := ds.LookupUsers[0]; small.Planted != small.Target {
			t.Errorf("size %d: %s sees %d documents, want %d", size, small.User, small.Planted, small.Target)
		}
	}
}

func TestGenerateQueriesBalanced(t *testing.T) {
	ds, err := Generate(GenerateConfig{Relationships: 10000, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	queries, mix, err := GenerateQueries(ds, NewOracle(ds), 2000, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) != 2000 {
		t.Fatalf("got %d queries, want 2000", len(queries))
	}
	if mix.Allows != 1000 || mix.Denies != 1000 {
		t.Errorf("got %s, want 1000 allowed and 1000 denied", mix)
	}
	if mix.CrossTenantDenies < mix.Denies/5 {
		t.Errorf("got %d cross-tenant denies of %d, want at least a fifth", mix.CrossTenantDenies, mix.Denies)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"10k", 10000}, {"100K", 100000}, {"1m", 1000000}, {"2500", 2500},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "k", "-1k", "ten", "1g"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded, want an error", in)
		}
	}
}

// TestOracleMatchesSpiceDB loads a tiny dataset into SpiceDB and compares
// the oracle with it on every resource and permission. The users asked
// about are those of the resource's org, those outside every org, the
// lookup users and the first user of every other org.
func TestOracleMatchesSpiceDB(t *testing.T) {
	ctx := context.Background()
	ds, err := Generate(GenerateConfig{Relationships: 300, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{typeGrant, typeLink, typeGroup} {
		if ds.Count(typ) == 0 {
			t.Fatalf("the tiny dataset has no %s, so the test would not cover it: %s", typ, ds.Summary())
		}
	}
	raw := startRawOnMemory(t)
	if err := Load(ctx, raw.Client, ds); err != nil {
		t.Fatalf("load: %v", err)
	}

	oracle := NewOracle(ds)
	var queries []CheckQuery
	for _, typ := range []string{typeOrg, typeWorkspace, typeProject, typeDocument, typeGroup} {
		for _, id := range ds.Objects[typ] {
			resource := Object{Type: typ, ID: id}
			users := slices.Clone(ds.OrgUsers[ds.OrgOf[resource]])
			users = append(users, ds.Outsiders...)
			for _, u := range ds.LookupUsers {
				users = append(users, u.User)
			}
			for _, org := range ds.Objects[typeOrg] {
				users = append(users, ds.OrgUsers[org][0])
			}
			for _, permission := range []string{"view", "edit", "delete", "share", "manage", "create"} {
				for _, u := range users {
					queries = append(queries, CheckQuery{User: u, Permission: permission, Resource: resource, Expected: oracle.Check(resource, permission, u)})
				}
			}
		}
	}

	// Four clients at once, to keep the test short on two cores.
	const clients = 4
	results := make([][]string, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		part := queries[c*len(queries)/clients : (c+1)*len(queries)/clients]
		wg.Go(func() { results[c], errs[c] = CrossCheck(ctx, raw.Client, part) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	mismatches := slices.Concat(results...)
	for _, m := range mismatches[:min(len(mismatches), 20)] {
		t.Error(m)
	}
	if len(mismatches) > 0 {
		t.Fatalf("the oracle disagrees with SpiceDB on %d of %d checks", len(mismatches), len(queries))
	}
	t.Logf("the oracle agrees with SpiceDB on %d checks", len(queries))
}

// startRawOnMemory starts SpiceDB on a fresh in-memory datastore with
// Gatehouse's schema, through Gatehouse's engine, and a raw server on the
// same datastore.
func startRawOnMemory(t *testing.T) *RawSpiceDB {
	t.Helper()
	ctx := context.Background()
	eng, err := engine.New(ctx, engine.Config{Schema: schema.Text, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("start engine: %v", err)
	}
	t.Cleanup(func() { eng.Close() })
	raw, err := StartRawSpiceDB(ctx, eng.Datastore())
	if err != nil {
		t.Fatalf("start raw spicedb: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// TestRunTinyDataset runs every scenario on a tiny in-memory dataset for
// one second each and checks that no answer was wrong and that the report
// shows every scenario and the ratios. It asserts nothing about timing.
func TestRunTinyDataset(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every scenario for a second each")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	report, err := Run(ctx, Config{
		Sizes: []int{3000}, Datastores: []string{"memory"},
		Workers: 4, LookupWorkers: 2, Warmup: 100 * time.Millisecond, Duration: time.Second,
		Queries: 1000, ChangeInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := report.WrongAnswersOf(SystemGatehouse); n != 0 {
		t.Errorf("Gatehouse gave %d wrong answers, want 0", n)
	}
	// SpiceDB's server may miss a write that has just returned (its
	// head-revision reads are shared between concurrent requests), so its
	// wrong answers are reported, not failed on.
	if n := report.WrongAnswersOf(SystemSpiceDB); n != 0 {
		t.Logf("SpiceDB gave %d wrong answers", n)
	}
	run := report.Runs[0]
	if !run.DatastoreAlive {
		t.Error("Gatehouse stopped answering after the raw SpiceDB server stopped")
	}
	if run.Churn.Verifications == 0 {
		t.Error("no background access change was verified")
	}
	if run.OpenLoop == nil {
		t.Fatal("the open loop on cold questions did not run")
	}
	if run.SkewedOpenLoop == nil {
		t.Fatal("the open loop on skewed questions did not run")
	}
	for _, res := range append([]Result{*run.OpenLoop, *run.SkewedOpenLoop}, run.Results...) {
		if res.Errors != 0 {
			t.Errorf("%s on %s: %d errors", res.Scenario, res.System, res.Errors)
		}
		if res.Requests == 0 {
			t.Errorf("%s on %s: no request completed", res.Scenario, res.System)
		}
		if res.WrongAnswers != 0 {
			t.Errorf("%s on %s: %d wrong answers", res.Scenario, res.System, res.WrongAnswers)
		}
	}
	for _, system := range []string{systemSpiceDB, systemGatehouse} {
		if find(run, scenarioSkewed, system) == nil {
			t.Errorf("%s on %s did not run", scenarioSkewed, system)
		}
	}
	if run.WritesDuringRepeated {
		t.Errorf("a relationship write committed during %q", scenarioRepeated)
	}
	if run.OracleChecks == 0 || run.OracleLookups == 0 {
		t.Errorf("the oracle was cross-checked on %d checks and %d lookups, want some of each", run.OracleChecks, run.OracleLookups)
	}

	var md strings.Builder
	if err := report.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	text := md.String()
	for _, want := range []string{
		"| check | SpiceDB |", "| check | Gatehouse |", "| check, open loop | Gatehouse |",
		"| check, skewed questions, with writes | SpiceDB |", "| check, skewed questions, with writes | Gatehouse |",
		"| check, skewed questions, open loop | Gatehouse |",
		"| bulk check (100 per request) | Gatehouse |", "| bulk check (100 per request) | SpiceDB |",
		"lookup 10 documents, first page | Gatehouse |", "lookup 10 documents, all pages | Gatehouse |", "lookup 10 documents | SpiceDB |",
		"| create a document with an owner | Gatehouse |", "| create a document with an owner | SpiceDB |",
		"| change a member's role | Gatehouse |", "| change a member's role | SpiceDB |",
		"| token exchange | Gatehouse |",
		"Gatehouse check / SpiceDB check throughput: **", "Gatehouse bulk checks / SpiceDB check throughput: **",
		"Gatehouse check / SpiceDB check throughput on skewed questions with writes: **",
		"Open loop on skewed questions: Gatehouse checks offered at ",
		"| check, skewed | open-loop p99, cold | open-loop p99, skewed |",
		"lookups before the lookup scenarios.", "### Load times", "GOMAXPROCS", "GOGC " + report.Machine.GOGC + ", GOMEMLIMIT " + report.Machine.GOMEMLIMIT, "Over time: ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

// TestSkewedPickerIsReproducibleAndSkewed checks that each worker draws
// the same questions for the same seed, that workers draw different ones,
// and that the most frequent questions get about their share.
func TestSkewedPickerIsReproducibleAndSkewed(t *testing.T) {
	const questions, workers, draws = 20000, 4, 20000
	a := newSkewedPicker(questions, workers, 1)
	b := newSkewedPicker(questions, workers, 1)
	counts := make([]int, questions)
	sequences := make([][]int, workers)
	for w := range workers {
		for range draws {
			i := a.next(w)
			if i < 0 || i >= questions {
				t.Fatalf("worker %d drew question %d, outside [0, %d)", w, i, questions)
			}
			if j := b.next(w); j != i {
				t.Fatalf("worker %d of two pickers with the same seed drew %d and %d", w, i, j)
			}
			counts[i]++
			sequences[w] = append(sequences[w], i)
		}
	}
	if slices.Equal(sequences[0], sequences[1]) {
		t.Error("workers 0 and 1 drew the same sequence")
	}

	top := 0
	for _, n := range counts[:repeatedQuestions] {
		top += n
	}
	got, want := float64(top)/float64(workers*draws), zipfShare(questions, repeatedQuestions)
	if got < want-0.03 || got > want+0.03 {
		t.Errorf("the %d most frequent questions got %.3f of the draws, want %.3f ± 0.03", repeatedQuestions, got, want)
	}
	if want < 0.7 || want > 0.8 {
		t.Errorf("zipfShare(%d, %d) = %.3f, want about three quarters, as the comment on zipfS states", questions, repeatedQuestions, want)
	}
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestWindowStatsFindsBursts(t *testing.T) {
	ms := time.Millisecond
	var requests []timedLatency
	add := func(window int, latencies ...time.Duration) {
		for i, l := range latencies {
			requests = append(requests, timedLatency{due: time.Duration(window)*windowLength + time.Duration(i)*ms, latency: l})
		}
	}
	add(0, 1*ms, 1*ms, 1*ms, 1*ms)    // fast
	add(1, 20*ms, 1*ms, 20*ms, 20*ms) // a burst: most requests slow
	add(2, 1*ms, 30*ms, 1*ms, 1*ms)   // one slow request alone

	w := windowStats(requests, 10*ms)
	if w.Windows != 3 {
		t.Errorf("Windows = %d, want 3", w.Windows)
	}
	if w.SlowWindows != 1 {
		t.Errorf("SlowWindows = %d, want 1", w.SlowWindows)
	}
	if w.WorstMedian != 20*ms {
		t.Errorf("WorstMedian = %s, want 20ms", w.WorstMedian)
	}
	if w.SlowRequests != 4 {
		t.Errorf("SlowRequests = %d, want 4", w.SlowRequests)
	}
	if w.SlowRequestsInBursts != 3 {
		t.Errorf("SlowRequestsInBursts = %d, want 3", w.SlowRequestsInBursts)
	}
}

func TestServeRunsCommands(t *testing.T) {
	t.Setenv(serveEnv, "memory")
	inReader, inWriter := io.Pipe()
	outReader, outWriter := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- serve(inReader, outWriter, slog.New(slog.DiscardHandler))
		outWriter.Close()
	}()
	out := bufio.NewReader(outReader)

	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("read hello: %v", err)
	}
	var hello serveHello
	if err := json.Unmarshal([]byte(line), &hello); err != nil {
		t.Fatalf("hello %q: %v", line, err)
	}
	if !strings.HasPrefix(hello.Gatehouse, "http://127.0.0.1:") || !strings.HasPrefix(hello.SpiceDB, "127.0.0.1:") || hello.Key == "" {
		t.Errorf("hello = %+v, want loopback addresses and a key", hello)
	}

	profile := filepath.Join(t.TempDir(), "cpu.pprof")
	for _, tc := range []struct{ command, wantPrefix string }{
		{commandHead, "ok "},
		{commandFreeMemory, "ok"},
		{commandProfileStop, "error no profile is running"},
		{commandProfileStart + " " + profile, "ok"},
		{commandProfileStart + " " + profile, "error a profile is running"},
		{commandProfileStop, "ok"},
		{"bogus", `error unknown command "bogus"`},
		{commandStopSpiceDB, "ok"},
		{commandStopSpiceDB, "ok"},
	} {
		if _, err := io.WriteString(inWriter, tc.command+"\n"); err != nil {
			t.Fatalf("send %q: %v", tc.command, err)
		}
		reply, err := out.ReadString('\n')
		if err != nil {
			t.Fatalf("reply to %q: %v", tc.command, err)
		}
		if !strings.HasPrefix(reply, tc.wantPrefix) {
			t.Errorf("reply to %q = %q, want prefix %q", tc.command, reply, tc.wantPrefix)
		}
	}
	if info, err := os.Stat(profile); err != nil || info.Size() == 0 {
		t.Errorf("profile %s: %v, want a non-empty file", profile, err)
	}

	inWriter.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after its input closed: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not return within 1m of its input closing")
	}
}

func TestServeRejectsUnknownDatastore(t *testing.T) {
	t.Setenv(serveEnv, "bogus")
	err := serve(strings.NewReader(""), io.Discard, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "use memory or postgres") {
		t.Errorf("serve with %s=bogus: %v, want an error naming the datastores", serveEnv, err)
	}
}

func TestFormatWindowsWithoutBursts(t *testing.T) {
	got := formatWindows(WindowStats{Bound: 10 * time.Millisecond, Windows: 4, WorstMedian: 2 * time.Millisecond, SlowRequests: 3})
	want := "Over time: none of the 4 windows of 250 ms had a median over 10 ms (worst median 2.00 ms); 3 requests took longer."
	if got != want {
		t.Errorf("formatWindows = %q, want %q", got, want)
	}
}

// TestRunChecksOnly checks that -checks-only runs the check scenarios and
// nothing after them, and that the report notes it.
func TestRunChecksOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the check scenarios")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	report, err := Run(ctx, Config{
		Sizes: []int{2000}, Datastores: []string{"memory"}, ChecksOnly: true,
		Workers: 2, BulkWorkers: 1, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond,
		Queries: 500, ChangeInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	run := report.Runs[0]
	for _, system := range []string{systemSpiceDB, systemGatehouse} {
		for _, scenario := range []string{scenarioCheck, scenarioSkewed, scenarioBulk} {
			if find(run, scenario, system) == nil {
				t.Errorf("%s on %s did not run", scenario, system)
			}
		}
		if res := find(run, scenarioRepeated, system); res != nil {
			t.Errorf("%s ran on %s", scenarioRepeated, system)
		}
	}
	if len(run.Results) != 6 {
		t.Errorf("%d closed-loop results, want 6 (three check scenarios on two systems)", len(run.Results))
	}
	var md strings.Builder
	if err := report.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "-checks-only") {
		t.Error("the report does not say that only the checks ran")
	}
	// The lookups' cross-check fills the raw server's dispatch cache, in
	// the heap that Gatehouse's checks share, so it waits for the lookup
	// scenarios, which a checks-only run skips.
	if run.OracleChecks == 0 || run.OracleLookups != 0 {
		t.Errorf("the oracle was cross-checked on %d checks and %d lookups, want some checks and no lookup", run.OracleChecks, run.OracleLookups)
	}
}

func TestWrongAnswersBySystem(t *testing.T) {
	run := RunReport{
		Churn: ChurnStats{WrongGatehouse: 1, WrongSpiceDB: 2},
		Results: []Result{
			{System: systemGatehouse, WrongAnswers: 4},
			{System: systemSpiceDB, WrongAnswers: 8},
		},
		OpenLoop:       &Result{System: systemGatehouse, WrongAnswers: 16},
		SkewedOpenLoop: &Result{System: systemGatehouse, WrongAnswers: 32},
	}
	report := Report{Runs: []*RunReport{&run, &run}}
	if got := report.WrongAnswersOf(SystemGatehouse); got != 2*(1+4+16+32) {
		t.Errorf("Gatehouse: %d wrong answers, want %d", got, 2*(1+4+16+32))
	}
	if got := report.WrongAnswersOf(SystemSpiceDB); got != 2*(2+8) {
		t.Errorf("SpiceDB: %d wrong answers, want %d", got, 2*(2+8))
	}
	if got := report.WrongAnswers(); got != 2*63 {
		t.Errorf("total: %d wrong answers, want %d", got, 2*63)
	}
}

func TestReportNamesGeneratorCollections(t *testing.T) {
	run := RunReport{
		Size: 1000, Datastore: "memory",
		Results: []Result{
			{Scenario: scenarioCheck, System: systemGatehouse, Unit: "checks/s"},
			{Scenario: scenarioCheck, System: systemSpiceDB, Unit: "checks/s", GeneratorGCs: 2},
		},
		OpenLoop: &Result{Scenario: scenarioOpenLoop, System: systemGatehouse, Unit: "checks/s", GeneratorGCs: 1},
	}
	var b strings.Builder
	writeRun(&b, &run, Config{OpenLoopFraction: 0.7})
	want := fmt.Sprintf("collected its own garbage during %s, %s (2); %s, %s (1)", scenarioCheck, systemSpiceDB, scenarioOpenLoop, systemGatehouse)
	if !strings.Contains(b.String(), want) {
		t.Errorf("the report does not say %q:\n%s", want, b.String())
	}

	run.Results[1].GeneratorGCs, run.OpenLoop.GeneratorGCs = 0, 0
	b.Reset()
	writeRun(&b, &run, Config{OpenLoopFraction: 0.7})
	if strings.Contains(b.String(), "collected its own garbage") {
		t.Errorf("the report names collections that did not happen:\n%s", b.String())
	}
}

func TestGCHeadroomStaysBounded(t *testing.T) {
	h := gcHeadroom()
	if h < 2<<30 || h > 8<<30 {
		t.Errorf("gcHeadroom() = %d, want between 2 and 8 GiB", h)
	}
	if available, ok := memAvailable(); ok && available/3 >= 2<<30 && available/3 <= 8<<30 && h != available/3 {
		t.Errorf("gcHeadroom() = %d with %d bytes available, want a third of it", h, available)
	}
}

// TestRunCountsRepeatsPerDatastore runs one size on two datastores, each
// in its own server process. The second run's single checks must start
// from the first question again and count no repeat, although the first
// run went through every question.
func TestRunCountsRepeatsPerDatastore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the check scenarios twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	report, err := Run(ctx, Config{
		Sizes: []int{2000}, Datastores: []string{"memory", "memory"}, ChecksOnly: true,
		Workers: 1, BulkWorkers: 1, Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond,
		Queries: 500, ChangeInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(report.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(report.Runs))
	}
	first, second := find(report.Runs[0], scenarioCheck, systemGatehouse), find(report.Runs[1], scenarioCheck, systemGatehouse)
	if first == nil || second == nil {
		t.Fatal("the cold check scenario did not run on both datastores")
	}
	if first.Requests >= 500 {
		t.Skipf("the first run's single checks sent %d requests, all the questions, so repeats are expected", first.Requests)
	}
	if second.Repeats != 0 {
		t.Errorf("the second datastore's single checks counted %d repeats of questions sent to the first one's server", second.Repeats)
	}
}
