package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-authz/gatehouse/internal/server"
)

// Config configures Run. Zero fields take the defaults given per field.
type Config struct {
	// Sizes are the dataset sizes, in relationships. Required.
	Sizes []int

	// Datastores are "memory" and/or "postgres". Required.
	Datastores []string

	// MaxMemorySize is the largest size run on the memory datastore, whose
	// every query scans all relationships of one type and relation, so
	// that larger sizes would take hours. Zero or less means no limit.
	MaxMemorySize int

	// DatabaseURL names a PostgreSQL server and a role allowed to create
	// databases; each size gets a fresh database there, dropped at the
	// end. Required for "postgres". It is never logged or reported.
	DatabaseURL string

	// Workers is the number of concurrent clients of the closed-loop
	// scenarios. Default: 16.
	Workers int

	// LookupWorkers and BulkWorkers are the numbers of concurrent
	// clients of the lookup and bulk check scenarios, whose requests are
	// far heavier. Default: 4 each.
	LookupWorkers int
	BulkWorkers   int

	// Warmup runs before each scenario, and Duration is how long each
	// scenario is measured. Defaults: 2s and 10s.
	Warmup   time.Duration
	Duration time.Duration

	// PagingTimeout bounds one pass through every page of a lookup.
	// Default: 10m.
	PagingTimeout time.Duration

	// Queries is the number of distinct check queries. Default: 100000.
	Queries int

	// OracleSample is the number of check queries, from the first, that
	// SpiceDB evaluates before the runs to confirm the oracle. Default:
	// 2000. A value above Queries means all of them.
	OracleSample int

	// OpenLoopFraction is the share of the measured peak throughput at
	// which the open-loop check scenario offers load. Default: 0.7.
	OpenLoopFraction float64

	// ChangeInterval is the pause between two background access changes
	// (and between two temporary grants). Default: 500ms.
	ChangeInterval time.Duration

	// ChecksOnly runs the cold and skewed check scenarios alone (single
	// checks, their open loops and bulk checks), to compare changes to the
	// check path in less time. Default: false, every scenario.
	ChecksOnly bool

	// Seed makes the dataset and the queries reproducible. Default: 1.
	Seed int64

	// Label names what was measured in the report's first line, such as a
	// commit. Default: none.
	Label string

	// CPUProfileDir, when set, receives a CPU profile of the single-check
	// scenario of each system, for each size and datastore.
	CPUProfileDir string

	// Logger receives the benchmark's progress. Default: slog.Default().
	Logger *slog.Logger

	// GatehouseLogs sends Gatehouse's own warnings and errors to the
	// standard error. Default: false, they are discarded.
	GatehouseLogs bool

	// GCStart is the server process's share of the heap's growth after
	// which it starts each garbage collection, as gatehouse serve
	// --gc-start. Default: 0, which leaves collections to Go's pacer, as
	// serve does by default.
	GCStart float64

	// AfterRun, when set, is called with the report so far after each
	// size and datastore, so that a long benchmark keeps its partial
	// results. Default: nil.
	AfterRun func(*Report)
}

func (c Config) withDefaults() Config {
	if c.Workers <= 0 {
		c.Workers = 16
	}
	if c.LookupWorkers <= 0 {
		c.LookupWorkers = 4
	}
	if c.BulkWorkers <= 0 {
		c.BulkWorkers = 4
	}
	if c.Warmup <= 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.PagingTimeout <= 0 {
		c.PagingTimeout = 10 * time.Minute
	}
	if c.OracleSample <= 0 {
		c.OracleSample = 2000
	}
	if c.Queries <= 0 {
		c.Queries = 100000
	}
	if c.OpenLoopFraction <= 0 {
		c.OpenLoopFraction = 0.7
	}
	if c.ChangeInterval <= 0 {
		c.ChangeInterval = 500 * time.Millisecond
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Report is the outcome of Run.
type Report struct {
	Config  Config
	Machine Machine
	Runs    []*RunReport
	Started time.Time

	// Skipped lists the sizes and datastores that did not run, and why.
	Skipped []string
}

// RunReport is the outcome for one size on one datastore.
type RunReport struct {
	Size      int
	Datastore string

	Dataset        string
	LookupUsers    []LookupUser
	GenerateTime   time.Duration
	LoadTime       time.Duration
	AnalyzeTime    time.Duration
	Mix            QueryMix
	OracleChecks   int
	OracleLookups  int
	Results        []Result
	OpenLoop       *Result
	OpenLoopRate   float64
	Churn          ChurnStats
	TokenRejected  int64
	DatastoreAlive bool
	AliveChecked   bool // whether DatastoreAlive was measured
	Notes          []string

	// SkewedOpenLoop is the open-loop run on skewed questions, offered at
	// SkewedOpenLoopRate checks/s.
	SkewedOpenLoop     *Result
	SkewedOpenLoopRate float64

	// WritesDuringRepeated reports whether a relationship write committed
	// while the repeated-questions scenario ran, which should have none.
	WritesDuringRepeated bool

	// ClusterTransactionsDuringRepeated counts the transaction ids that
	// writes anywhere in the PostgreSQL cluster took while the
	// repeated-questions scenario ran. Always 0 on the memory datastore.
	ClusterTransactionsDuringRepeated int64
}

// WrongAnswers returns every wrong answer of the run, the background
// access changes included.
func (r *RunReport) WrongAnswers() int64 {
	return r.WrongAnswersOf(systemGatehouse) + r.WrongAnswersOf(systemSpiceDB)
}

// WrongAnswersOf returns the wrong answers of one system ("Gatehouse" or
// "SpiceDB") in the run, the background access changes included.
func (r *RunReport) WrongAnswersOf(system string) int64 {
	var n int64
	switch system {
	case systemGatehouse:
		n = r.Churn.WrongGatehouse
	case systemSpiceDB:
		n = r.Churn.WrongSpiceDB
	}
	for _, res := range r.Results {
		if res.System == system {
			n += res.WrongAnswers
		}
	}
	for _, open := range []*Result{r.OpenLoop, r.SkewedOpenLoop} {
		if open != nil && open.System == system {
			n += open.WrongAnswers
		}
	}
	return n
}

// SystemGatehouse and SystemSpiceDB name the two systems in results, as
// WrongAnswersOf takes them.
const (
	SystemGatehouse = systemGatehouse
	SystemSpiceDB   = systemSpiceDB
)

// WrongAnswers returns the wrong answers of every run.
func (r *Report) WrongAnswers() int64 {
	return r.WrongAnswersOf(systemGatehouse) + r.WrongAnswersOf(systemSpiceDB)
}

// WrongAnswersOf returns the wrong answers of one system in every run.
func (r *Report) WrongAnswersOf(system string) int64 {
	var n int64
	for _, run := range r.Runs {
		n += run.WrongAnswersOf(system)
	}
	return n
}

// ErrOracleMismatch means the oracle and SpiceDB disagree on the generated
// data before any load ran: a bug in the oracle or the generator, not in
// the systems under test.
var ErrOracleMismatch = errors.New("the oracle disagrees with SpiceDB")

// Run generates each dataset, runs every scenario on every datastore and
// returns the report. It stops at the first failure to set up a run, and
// returns the report so far with the error. ctx ends the benchmark early.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	report := &Report{Config: cfg, Machine: describeMachine(), Started: time.Now()}
	for _, d := range cfg.Datastores {
		if d != server.DatastoreMemory && d != server.DatastorePostgres {
			return report, fmt.Errorf("unknown datastore %q: use memory or postgres", d)
		}
		if d == server.DatastorePostgres && cfg.DatabaseURL == "" {
			return report, errors.New("the postgres datastore needs a database URL (GATEHOUSE_TEST_DATABASE_URL)")
		}
	}
	if cfg.CPUProfileDir != "" {
		if err := os.MkdirAll(cfg.CPUProfileDir, 0o755); err != nil {
			return report, fmt.Errorf("create profile directory: %w", err)
		}
	}

	for _, size := range cfg.Sizes {
		start := time.Now()
		ds, err := Generate(GenerateConfig{Relationships: size, Seed: cfg.Seed})
		if err != nil {
			return report, err
		}
		oracle := NewOracle(ds)
		queries, mix, err := GenerateQueries(ds, oracle, cfg.Queries, cfg.Seed)
		if err != nil {
			return report, err
		}
		lookups := map[string][]string{}
		for _, u := range ds.LookupUsers {
			lookups[u.User] = oracle.LookupDocuments("view", u.User)
		}
		generated := time.Since(start)
		cfg.Logger.Info("dataset generated", "size", size, "summary", ds.Summary(), "queries", mix.String(), "took", generated.Round(time.Millisecond))

		for _, datastore := range cfg.Datastores {
			if ctx.Err() != nil {
				return report, ctx.Err()
			}
			if datastore == server.DatastoreMemory && cfg.MaxMemorySize > 0 && size > cfg.MaxMemorySize {
				report.Skipped = append(report.Skipped, fmt.Sprintf("%s relationships on memory: larger than the memory limit of %s relationships (flag -max-memory-size)",
					formatSize(size), formatSize(cfg.MaxMemorySize)))
				cfg.Logger.Info("skipped: the memory datastore scans every relationship of a type and relation per query", "size", size, "max_memory_size", cfg.MaxMemorySize)
				continue
			}
			// Each datastore runs in its own server process with empty
			// caches, so it starts the questions from the first and counts
			// its own repeats.
			checks, err := newCheckSet(queries)
			if err != nil {
				return report, err
			}
			r := &run{
				cfg: cfg, logger: cfg.Logger.With("size", size, "datastore", datastore),
				ds: ds, oracle: oracle, checks: checks, lookupExpected: lookups,
				report: &RunReport{Size: size, Datastore: datastore, Dataset: ds.Summary(), LookupUsers: ds.LookupUsers, GenerateTime: generated, Mix: mix},
			}
			report.Runs = append(report.Runs, r.report)
			err = r.execute(ctx)
			if cfg.AfterRun != nil {
				cfg.AfterRun(report)
			}
			if err != nil {
				return report, fmt.Errorf("%s relationships on %s: %w", formatSize(size), datastore, err)
			}
		}
	}
	return report, nil
}

// run is one size on one datastore: the servers, the dataset and what
// the scenarios share.
type run struct {
	cfg    Config
	logger *slog.Logger

	ds             *Dataset
	oracle         *Oracle
	checks         *checkSet
	lookupExpected map[string][]string

	servers     *serverProcess
	gh          *gatehouse
	raw         *RawSpiceDB
	app, admin  *tokenSource
	report      *RunReport
	databaseURL string // empty on the memory datastore

	// stateConn reads SpiceDB's write transactions and the cluster's
	// transaction ids on PostgreSQL. Nil until postgresConn connects it.
	stateConn *pgx.Conn
}

// execute starts Gatehouse and the raw SpiceDB server on one datastore,
// loads the dataset, cross-checks the oracle and runs every scenario.
func (r *run) execute(ctx context.Context) (err error) {
	databaseURL := ""
	if r.report.Datastore == server.DatastorePostgres {
		var name string
		var drop func(context.Context) error
		databaseURL, name, drop, err = createDatabase(ctx, r.cfg.DatabaseURL, "gatehouse_bench_"+formatSize(r.report.Size))
		if err != nil {
			return err
		}
		r.databaseURL = databaseURL
		r.logger.Info("database created", "database", name)
		defer func() {
			if dropErr := drop(context.WithoutCancel(ctx)); dropErr != nil {
				r.logger.Warn("drop benchmark database", "database", name, "error", dropErr)
			}
		}()
		defer func() {
			if r.stateConn != nil {
				r.stateConn.Close(context.WithoutCancel(ctx))
			}
		}()
	}

	r.servers, err = startServerProcess(ctx, r.report.Datastore, databaseURL, r.cfg.GatehouseLogs, r.cfg.GCStart)
	if err != nil {
		return err
	}
	defer func() {
		if closeErr := r.servers.Close(); closeErr != nil {
			r.logger.Warn("stop the server process", "error", closeErr)
		}
	}()
	r.gh = newGatehouseClient(r.servers.hello.Gatehouse, 4*r.cfg.Workers)
	defer r.gh.Close()
	r.raw, err = ConnectRawSpiceDB(ctx, r.servers.hello.SpiceDB, r.servers.hello.Key)
	if err != nil {
		return err
	}
	rawOpen := true
	defer func() {
		if rawOpen {
			r.raw.Close()
		}
	}()

	if err := r.load(ctx, databaseURL); err != nil {
		return err
	}
	if err := r.crossCheckOracle(ctx); err != nil {
		return err
	}
	if r.app, err = newTokenSource(ctx, r.gh, typeService+":"+r.ds.App); err != nil {
		return err
	}
	if r.admin, err = newTokenSource(ctx, r.gh, typeUser+":"+r.ds.Admin); err != nil {
		return err
	}

	// A benchmark interrupted by its caller stops between scenario groups,
	// so that what ran stays in the report and nothing after it pretends
	// to have run.
	steps := []func(context.Context) error{
		func(ctx context.Context) error { r.runChecks(ctx); return nil },
		func(ctx context.Context) error { r.runSkewedChecks(ctx); return nil },
		r.runRepeatedChecks,
		func(ctx context.Context) error {
			if err := r.crossCheckLookups(ctx); err != nil {
				return err
			}
			r.runLookups(ctx)
			return nil
		},
		r.runWrites,
		r.runExchange,
	}
	if r.cfg.ChecksOnly {
		steps = steps[:2]
		r.report.Notes = append(r.report.Notes, "Run with -checks-only: the repeated checks, lookups, writes and token exchange did not run.")
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			r.report.Notes = append(r.report.Notes, "The run was interrupted; the scenarios after the last row did not run.")
			return fmt.Errorf("interrupted: %w", err)
		}
		if err := step(ctx); err != nil {
			return err
		}
	}
	r.report.TokenRejected = r.app.rejected.Load() + r.admin.rejected.Load()

	// Stopping the raw server must leave the shared datastore open for
	// Gatehouse.
	rawOpen = false
	if err := r.raw.Close(); err != nil {
		r.logger.Warn("close the raw spicedb client", "error", err)
	}
	if _, err := r.servers.command(commandStopSpiceDB); err != nil {
		return err
	}
	r.report.DatastoreAlive, r.report.AliveChecked = r.gatehouseResponds(ctx), true
	if !r.report.DatastoreAlive {
		return errors.New("gatehouse checks failed after the raw SpiceDB server stopped, so stopping it closed the shared datastore")
	}
	return nil
}

// load imports the dataset through the raw server and, on PostgreSQL,
// refreshes the planner's statistics.
func (r *run) load(ctx context.Context, databaseURL string) error {
	start := time.Now()
	if err := Load(ctx, r.raw.Client, r.ds); err != nil {
		return err
	}
	r.report.LoadTime = time.Since(start)
	r.logger.Info("dataset loaded", "relationships", len(r.ds.Relationships), "took", r.report.LoadTime.Round(time.Millisecond))
	if databaseURL != "" {
		took, err := analyzeDatabase(ctx, databaseURL)
		if err != nil {
			return err
		}
		r.report.AnalyzeTime = took
	}
	return nil
}

// gatehouseResponds reports whether a Gatehouse check succeeds.
func (r *run) gatehouseResponds(ctx context.Context) bool {
	_, _, err := r.gatehouseCheck(ctx, 0)
	if err != nil {
		r.logger.Error("gatehouse check failed", "error", err)
	}
	return err == nil
}

// closedLoop runs one closed-loop scenario and adds its result to the
// report. sameAs, when not empty, names the scenario across sizes.
func (r *run) closedLoop(ctx context.Context, scenario, sameAs, system, unit string, workers int, op operation) Result {
	r.logger.Info("scenario", "scenario", scenario, "system", system)
	res := closedLoop(ctx, r.logger, scenario, system, unit, closedLoopConfig{Workers: workers, Warmup: r.cfg.Warmup, Duration: r.cfg.Duration, Memory: r.servers}, op)
	res.sameAs = sameAs
	r.report.Results = append(r.report.Results, res)
	return res
}

// Scenario names, as the report shows them.
const (
	scenarioCheck          = "check"
	scenarioRepeated       = "check, 500 repeated questions, no writes"
	scenarioBulk           = "bulk check (100 per request)"
	scenarioOpenLoop       = "check, open loop"
	scenarioSkewed         = "check, skewed questions, with writes"
	scenarioSkewedOpenLoop = "check, skewed questions, open loop"
	scenarioCreate         = "create a document with an owner"
	scenarioMember         = "change a member's role"
	scenarioExchange       = "token exchange"
	systemGatehouse        = "Gatehouse"
	systemSpiceDB          = "SpiceDB"
	lookupScenarioFirst    = "lookup %s documents, first page"
	lookupScenarioAll      = "lookup %s documents, all pages"
	lookupScenarioRaw      = "lookup %s documents"
)

// runChecks runs the single and bulk check scenarios on both systems,
// and the open-loop check on Gatehouse, while access changes run in the
// background.
func (r *run) runChecks(ctx context.Context) {
	stopChurn := r.startChurn(ctx, r.cfg.ChangeInterval)
	defer func() { r.report.Churn = stopChurn() }()

	r.logger.Info("scenario", "scenario", scenarioCheck, "system", systemSpiceDB)
	raw := closedLoop(ctx, r.logger, scenarioCheck, systemSpiceDB, "checks/s", closedLoopConfig{
		Workers: r.cfg.Workers, Warmup: r.cfg.Warmup, Duration: r.cfg.Duration, OnMeasure: r.cpuProfile("spicedb-check"), Memory: r.servers,
	}, r.rawCheck)
	r.report.Results = append(r.report.Results, raw)

	r.logger.Info("scenario", "scenario", scenarioCheck, "system", systemGatehouse)
	// repeats returns the repeated questions since its last call.
	var counted int64
	repeats := func() int64 {
		now := r.checks.repeats.Load()
		n := now - counted
		counted = now
		return n
	}
	repeats()
	peak := closedLoop(ctx, r.logger, scenarioCheck, systemGatehouse, "checks/s", closedLoopConfig{
		Workers: r.cfg.Workers, Warmup: r.cfg.Warmup, Duration: r.cfg.Duration, OnMeasure: r.cpuProfile("gatehouse-check"), Memory: r.servers,
	}, r.gatehouseCheck)
	peak.Repeats = repeats()
	r.report.Results = append(r.report.Results, peak)

	if peak.Throughput > 0 {
		r.report.OpenLoopRate = peak.Throughput * r.cfg.OpenLoopFraction
		r.logger.Info("scenario", "scenario", scenarioOpenLoop, "system", systemGatehouse, "rate", int(r.report.OpenLoopRate))
		stopProfile := r.cpuProfile("gatehouse-open-loop")()
		open := openLoop(ctx, r.logger, scenarioOpenLoop, systemGatehouse, r.report.OpenLoopRate, r.cfg.Warmup, r.cfg.Duration, 8*r.cfg.Workers, r.servers, r.gatehouseCheck)
		stopProfile()
		open.Repeats = repeats()
		r.report.OpenLoop = &open
	}

	r.closedLoop(ctx, scenarioBulk, "", systemGatehouse, "checks/s", r.cfg.BulkWorkers, r.gatehouseBulk)
	bulkRepeats := repeats()
	r.report.Results[len(r.report.Results)-1].Repeats = bulkRepeats
	r.closedLoop(ctx, scenarioBulk, "", systemSpiceDB, "checks/s", r.cfg.BulkWorkers, r.rawBulk)

	if counted > 0 {
		var openRepeats int64
		if r.report.OpenLoop != nil {
			openRepeats = r.report.OpenLoop.Repeats
		}
		r.report.Notes = append(r.report.Notes, fmt.Sprintf(
			"Gatehouse's cold scenarios sent %d questions that they had sent before at this size, warm-up included (check %d, open loop %d, bulk items %d), and the result cache may have answered those. A cold measurement needs more queries than -queries %d.",
			counted, peak.Repeats, openRepeats, bulkRepeats, len(r.checks.queries)))
	}
}

// cpuProfile returns a function that starts a CPU profile named after
// the scenario, the size and the datastore when a profile directory is
// set, and returns the function that stops it.
func (r *run) cpuProfile(scenario string) func() func() {
	return func() func() {
		if r.cfg.CPUProfileDir == "" {
			return func() {}
		}
		name := fmt.Sprintf("%s-%s-%s.pprof", scenario, formatSize(r.report.Size), r.report.Datastore)
		path, err := filepath.Abs(filepath.Join(r.cfg.CPUProfileDir, name))
		if err == nil {
			_, err = r.servers.command(commandProfileStart + " " + path)
		}
		if err != nil {
			r.logger.Warn("start CPU profile", "path", path, "error", err)
			return func() {}
		}
		return func() {
			if _, err := r.servers.command(commandProfileStop); err != nil {
				r.logger.Warn("write CPU profile", "path", path, "error", err)
			}
		}
	}
}

// runLookups runs, for each planted lookup user, one page and all pages
// through Gatehouse and the stream through SpiceDB.
func (r *run) runLookups(ctx context.Context) {
	for _, u := range r.ds.LookupUsers {
		label := formatCount(len(r.lookupExpected[u.User]))
		if u.Planted < u.Target*9/10 {
			r.report.Notes = append(r.report.Notes, fmt.Sprintf("This dataset holds no %s documents for one user to see; the largest lookup user planted sees %s.", formatCount(u.Target), label))
		}
		sameAs := fmt.Sprintf(lookupScenarioFirst, "target "+formatCount(u.Target))
		r.closedLoop(ctx, fmt.Sprintf(lookupScenarioFirst, label), sameAs, systemGatehouse, "requests/s", r.cfg.LookupWorkers, r.lookupFirstPage(u.User))

		// One pass at least, however long it takes, within PagingTimeout.
		scenario := fmt.Sprintf(lookupScenarioAll, label)
		r.logger.Info("scenario", "scenario", scenario, "system", systemGatehouse)
		pagingCtx, cancel := context.WithTimeout(ctx, r.cfg.PagingTimeout)
		res := closedLoop(pagingCtx, r.logger, scenario, systemGatehouse, "passes/s", closedLoopConfig{
			Workers: 1, Duration: r.cfg.Duration, MinRequests: 1, MaxDuration: r.cfg.PagingTimeout, Memory: r.servers,
		}, r.lookupAllPages(u.User))
		cancel()
		res.sameAs = fmt.Sprintf(lookupScenarioAll, "target "+formatCount(u.Target))
		r.report.Results = append(r.report.Results, res)

		sameAs = fmt.Sprintf(lookupScenarioRaw, "target "+formatCount(u.Target))
		r.closedLoop(ctx, fmt.Sprintf(lookupScenarioRaw, label), sameAs, systemSpiceDB, "requests/s", r.cfg.LookupWorkers, r.rawLookup(u.User))
	}
}

// runWrites runs the create and member change scenarios on both systems
// and verifies the last writes of each.
func (r *run) runWrites(ctx context.Context) error {
	scenarios := []struct {
		scenario, system string
		op               func(*writeState) operation
	}{
		{scenarioCreate, systemGatehouse, r.gatehouseCreate},
		{scenarioCreate, systemSpiceDB, r.rawCreate},
		{scenarioMember, systemGatehouse, r.gatehouseMember},
		{scenarioMember, systemSpiceDB, r.rawMember},
	}
	for i, s := range scenarios {
		state := r.newWriteState(r.cfg.Workers, uint64(r.cfg.Seed)+uint64(i))
		res := r.closedLoop(ctx, s.scenario, "", s.system, "writes/s", r.cfg.Workers, s.op(state))
		wrong, err := r.verifyWrites(ctx, &state.log)
		if err != nil {
			return err
		}
		r.report.Results[len(r.report.Results)-1].WrongAnswers = res.WrongAnswers + wrong
	}
	return nil
}

// runExchange runs the token exchange scenario.
func (r *run) runExchange(ctx context.Context) error {
	state, err := r.newExchangeState(ctx, 256)
	if err != nil {
		return err
	}
	r.closedLoop(ctx, scenarioExchange, "", systemGatehouse, "exchanges/s", r.cfg.Workers, r.gatehouseExchange(state))
	return nil
}
