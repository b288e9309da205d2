package integration

// The tests in this file run Gatehouse on PostgreSQL. Each one creates a
// database of its own with pgtest.NewDatabase, which skips the test when
// GATEHOUSE_TEST_DATABASE_URL is unset (scripts/test-postgres.sh start
// prints it).
//
// TestPostgresOutage stops and restarts a PostgreSQL cluster of its own,
// not the shared one, because `go test ./...` runs the Postgres tests of
// other packages at the same time.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/server"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

// pgMigrateHint is the command that every "not migrated" error must name.
const pgMigrateHint = "gatehouse migrate"

// TestPostgresMigrateTwiceChangesNothing runs the migrations on an empty
// database, then again, and compares the schema and the migration records.
func TestPostgresMigrateTwiceChangesNothing(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	ctx := pgContext(t, time.Minute)
	logger := pgDiscard

	if err := store.Migrate(ctx, store.Config{URL: dbURL}, logger); err != nil {
		t.Fatalf("first migrate on an empty database: %v", err)
	}
	before := pgSchemaSnapshot(t, dbURL)
	for _, want := range []string{"table gatehouse.installation", "table gatehouse.schema_writes", "table gatehouse.goose_db_version", "table public.relation_tuple", "spicedb version "} {
		if !strings.Contains(before, want) {
			t.Errorf("after the first migrate the database lacks %q; snapshot:\n%s", want, before)
		}
	}

	if err := store.Migrate(ctx, store.Config{URL: dbURL}, logger); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	after := pgSchemaSnapshot(t, dbURL)
	if before != after {
		t.Errorf("second migrate changed the database\nbefore:\n%s\nafter:\n%s", before, after)
	}

	if err := store.CheckSpiceDBMigrated(ctx, store.Config{URL: dbURL}); err != nil {
		t.Errorf("CheckSpiceDBMigrated after migrate: %v", err)
	}
}

// TestPostgresConcurrentMigrations runs two migrations of one empty
// database at once, as two instances started with --migrate do. They must
// take turns and both succeed.
func TestPostgresConcurrentMigrations(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)

	// The context bounds a deadlock between the two to 30s.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- store.Migrate(ctx, store.Config{URL: dbURL}, pgDiscard) }()
	}
	for i := range 2 {
		if err := <-errs; err != nil {
			t.Errorf("migration %d of 2 run at once: %v", i+1, err)
		}
	}

	// One migration of an empty database took about 0.5s on a 2-core test
	// machine, so 8s leaves room for a slow CI and still catches a wait on
	// the store's 10s statement timeout.
	if elapsed := time.Since(start); elapsed > 8*time.Second {
		t.Errorf("two migrations at once took %v, want under 8s", elapsed.Round(time.Millisecond))
	}
	if err := store.CheckSpiceDBMigrated(pgContext(t, 30*time.Second), store.Config{URL: dbURL}); err != nil {
		t.Errorf("CheckSpiceDBMigrated after two concurrent migrations: %v", err)
	}
}

// TestPostgresServeNeedsMigrations starts a server on databases that lack
// migrations and expects an error that names `gatehouse migrate`, then
// starts one with Migrate set.
func TestPostgresServeNeedsMigrations(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	ctx := pgContext(t, 2*time.Minute)

	cases := []struct {
		name    string
		prepare func(t *testing.T)
	}{
		{name: "empty database", prepare: func(t *testing.T) {}},
		{name: "gatehouse tables missing", prepare: func(t *testing.T) {
			if err := store.Migrate(ctx, store.Config{URL: dbURL}, pgDiscard); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			pgExec(t, dbURL, "DROP SCHEMA gatehouse CASCADE")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.prepare(t)
			srv, err := server.New(ctx, pgServerConfig(pgListen(t), dbURL, false))
			if err == nil {
				srv.Close()
				t.Fatal("server.New succeeded on a database without migrations")
			}
			if !errors.Is(err, store.ErrNotMigrated) {
				t.Errorf("error %q does not wrap store.ErrNotMigrated", err)
			}
			if !strings.Contains(err.Error(), pgMigrateHint) {
				t.Errorf("error %q does not mention %q", err, pgMigrateHint)
			}
		})
	}

	// Migrate: true repairs the database from either state.
	g := pgStartInstance(t, dbURL)
	alice := g.client(t, "alice")
	pgMustStatus(t, alice.do(t, http.MethodPost, "/v1/resources", pgCreateBody("org:acme", "")), http.StatusCreated)
	if !alice.allowed(t, "", "manage", "org:acme", "") {
		t.Error("alice cannot manage the org she created")
	}
	var version int
	pgQueryRow(t, dbURL, "SELECT max(version_id) FROM gatehouse.goose_db_version WHERE is_applied", &version)
	if version < 1 {
		t.Errorf("gatehouse migration version %d after serve with Migrate, want at least 1", version)
	}
}

// TestPostgresTwoInstancesShareState runs two servers on one database and
// reads on each what the other wrote.
func TestPostgresTwoInstancesShareState(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)

	a := pgStartInstance(t, dbURL)
	b := pgStartInstance(t, dbURL)

	aliceA, aliceB := a.client(t, "alice"), b.client(t, "alice")
	bobA, bobB := a.client(t, "bob"), b.client(t, "bob")
	const bob = "user:dev|bob"

	// Writes on A are visible on B at once, with the default full
	// consistency and with A's consistency token.
	pgMustStatus(t, aliceA.do(t, http.MethodPost, "/v1/resources", pgCreateBody("org:acme", "")), http.StatusCreated)
	pgMustStatus(t, aliceA.do(t, http.MethodPost, "/v1/resources", pgCreateBody("workspace:eng", "org:acme")), http.StatusCreated)
	set := aliceA.do(t, http.MethodPut, pgMemberPath("workspace:eng", bob), map[string]string{"role": "viewer"})
	pgMustStatus(t, set, http.StatusOK)
	var setResp struct {
		ConsistencyToken string `json:"consistency_token"`
	}
	pgDecode(t, set, &setResp)
	if setResp.ConsistencyToken == "" {
		t.Fatalf("%v: no consistency_token", set)
	}

	if !bobB.allowed(t, "", "view", "workspace:eng", "") {
		t.Error("B denies bob view on workspace:eng right after A granted it (full consistency)")
	}
	if !bobB.allowed(t, "", "view", "workspace:eng", setResp.ConsistencyToken) {
		t.Error("B denies bob view on workspace:eng at A's consistency token")
	}
	if got, want := aliceB.members(t, "workspace:eng"), []string{"user:dev|alice=admin", bob + "=viewer"}; !slices.Equal(got, want) {
		t.Errorf("members of workspace:eng on B: got %v, want %v", got, want)
	}

	// Writes on B are visible on A.
	pgMustStatus(t, aliceB.do(t, http.MethodPost, "/v1/resources", pgCreateBody("project:api", "workspace:eng")), http.StatusCreated)
	if !bobA.allowed(t, "", "view", "project:api", "") {
		t.Error("A denies bob view on project:api that B created under his workspace")
	}
	removed := aliceB.do(t, http.MethodDelete, pgMemberPath("workspace:eng", bob), nil)
	pgMustStatus(t, removed, http.StatusNoContent)
	removeToken := removed.header.Get("Gatehouse-Consistency-Token")
	if removeToken == "" {
		t.Errorf("%v: no Gatehouse-Consistency-Token header", removed)
	}
	if bobA.allowed(t, "", "view", "workspace:eng", "") {
		t.Error("A still allows bob view on workspace:eng after B removed him (full consistency)")
	}
	if bobA.allowed(t, "", "view", "project:api", removeToken) {
		t.Error("A still allows bob view on project:api at B's consistency token after B removed him")
	}

	// Lookups agree.
	for _, lookup := range []struct {
		client                   *pgClient
		permission, resourceType string
	}{
		{aliceA, "view", "workspace"}, {aliceB, "view", "workspace"},
		{aliceA, "manage", "project"}, {aliceB, "manage", "project"},
		{bobA, "view", "project"}, {bobB, "view", "project"},
	} {
		got := lookup.client.lookup(t, lookup.permission, lookup.resourceType)
		var want []string
		switch {
		case lookup.client.subject == bob:
			want = []string{}
		case lookup.resourceType == "workspace":
			want = []string{"workspace:eng"}
		default:
			want = []string{"project:api"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: lookup %s %s on %s: got %v, want %v", lookup.client.subject, lookup.permission, lookup.resourceType, lookup.client.base, got, want)
		}
	}
	if got, want := aliceA.members(t, "workspace:eng"), aliceB.members(t, "workspace:eng"); !slices.Equal(got, want) {
		t.Errorf("members of workspace:eng: A lists %v, B lists %v", got, want)
	}
}

// TestPostgresProcess runs the gatehouse binary as a subprocess on
// PostgreSQL. The subtests share one build of the binary.
func TestPostgresProcess(t *testing.T) {
	pgtest.Require(t)
	bin := pgBuildBinary(t)

	t.Run("kill -9 keeps acknowledged writes", func(t *testing.T) { pgTestKillDuringWrites(t, bin) })
	t.Run("password stays out of output", func(t *testing.T) { pgTestPasswordNotLeaked(t, bin) })
}

// pgWrite is one write of pgTestKillDuringWrites and what came of it.
type pgWrite struct {
	create   bool   // create resource, or else give subject the viewer role on it
	resource string // a document
	subject  string // for role writes
	reject   bool   // the request is one that Gatehouse must reject
	status   int    // 0 when no response arrived
	err      error
}

func (w pgWrite) acknowledged() bool { return w.status >= 200 && w.status < 300 }
func (w pgWrite) rejected() bool     { return w.status >= 400 && w.status < 500 }

func (w pgWrite) String() string {
	op := "create " + w.resource
	if !w.create {
		op = "give " + w.subject + " viewer on " + w.resource
	}
	if w.status == 0 {
		return fmt.Sprintf("%s: no response (%v)", op, w.err)
	}
	return fmt.Sprintf("%s: %d", op, w.status)
}

// pgTestKillDuringWrites sends concurrent writes to a gatehouse process,
// kills it with SIGKILL in the middle, restarts it on the same database and
// checks that every acknowledged write is there, no rejected write is, and
// each create is all or nothing.
func pgTestKillDuringWrites(t *testing.T, bin string) {
	dbURL := pgtest.NewDatabase(t)
	env := []string{"GATEHOUSE_DATABASE_URL=" + dbURL}
	proc := pgStartProcess(t, bin, env, "serve", "--dev", "--datastore", "postgres", "--migrate", "--http-addr", pgFreeAddr(t))
	proc.waitReady(t)

	// dave creates the documents, so he owns them: his manage permission
	// on a document comes from the owner role alone, because a project
	// editor does not get manage. carol's view comes from the document's
	// parent link alone, because she is only a project viewer.
	alice, dave, carol := proc.client(t, "alice"), proc.client(t, "dave"), proc.client(t, "carol")
	pgMustStatus(t, alice.do(t, http.MethodPost, "/v1/resources", pgCreateBody("org:acme", "")), http.StatusCreated)
	pgMustStatus(t, alice.do(t, http.MethodPost, "/v1/resources", pgCreateBody("workspace:eng", "org:acme")), http.StatusCreated)
	pgMustStatus(t, alice.do(t, http.MethodPost, "/v1/resources", pgCreateBody("project:api", "workspace:eng")), http.StatusCreated)
	pgMustStatus(t, alice.do(t, http.MethodPut, pgMemberPath("project:api", dave.subject), map[string]string{"role": "editor"}), http.StatusOK)
	pgMustStatus(t, alice.do(t, http.MethodPut, pgMemberPath("project:api", carol.subject), map[string]string{"role": "viewer"}), http.StatusOK)

	// Writers: each creates documents, gives a new user a role on the last
	// document it created, and sends requests that must be rejected: a
	// create under a missing parent and a create by a mere viewer.
	const writers, maxWritesPerWriter = 4, 400
	ctx, stopWriters := context.WithCancel(context.Background())
	defer stopWriters()
	var acknowledged atomic.Int64
	results := make([][]pgWrite, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lastDoc := ""
			for n := 0; n < maxWritesPerWriter && ctx.Err() == nil; n++ {
				var w pgWrite
				var r pgResponse
				switch {
				case n%4 == 2 && lastDoc != "":
					w = pgWrite{resource: lastDoc, subject: fmt.Sprintf("user:dev|m-%d-%d", g, n)}
					r, w.err = dave.send(ctx, http.MethodPut, pgMemberPath(w.resource, w.subject), map[string]string{"role": "viewer"})
				case n%8 == 3:
					w = pgWrite{create: true, reject: true, resource: fmt.Sprintf("document:missing-parent-%d-%d", g, n)}
					r, w.err = dave.send(ctx, http.MethodPost, "/v1/resources", pgCreateBody(w.resource, "project:missing"))
				case n%8 == 7:
					w = pgWrite{create: true, reject: true, resource: fmt.Sprintf("document:by-viewer-%d-%d", g, n)}
					r, w.err = carol.send(ctx, http.MethodPost, "/v1/resources", pgCreateBody(w.resource, "project:api"))
				default:
					w = pgWrite{create: true, resource: fmt.Sprintf("document:d-%d-%d", g, n)}
					r, w.err = dave.send(ctx, http.MethodPost, "/v1/resources", pgCreateBody(w.resource, "project:api"))
				}
				if w.err == nil {
					w.status = r.status
				}
				if w.acknowledged() {
					acknowledged.Add(1)
					if w.create {
						lastDoc = w.resource
					}
				}
				results[g] = append(results[g], w)
			}
		}()
	}

	// Kill the process once writes are flowing, so that some are in flight.
	deadline := time.Now().Add(20 * time.Second)
	for acknowledged.Load() < 60 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	proc.kill(t)
	stopWriters()
	wg.Wait()
	if n := acknowledged.Load(); n < 60 {
		t.Fatalf("only %d writes were acknowledged in 20s before the kill; process output:\n%s", n, proc.output())
	}

	// Restart on the same database with a new dev issuer, so new tokens.
	proc = pgStartProcess(t, bin, env, "serve", "--dev", "--datastore", "postgres", "--migrate", "--http-addr", pgFreeAddr(t))
	proc.waitReady(t)
	alice, dave, carol = proc.client(t, "alice"), proc.client(t, "dave"), proc.client(t, "carol")

	ownedByDave := pgSet(dave.lookup(t, "manage", "document"))
	seenByCarol := pgSet(carol.lookup(t, "view", "document"))
	attempted := map[string]bool{}
	var counts struct{ acknowledged, rejected, unknown int }
	var roleWrites []pgWrite
	for _, w := range slices.Concat(results...) {
		switch {
		case w.acknowledged():
			counts.acknowledged++
		case w.rejected():
			counts.rejected++
		default:
			counts.unknown++
		}
		if w.status >= 500 {
			t.Errorf("%v: a write got a server error while the server was up", w)
		}
		if w.reject && w.acknowledged() {
			t.Errorf("%v: Gatehouse accepted a write it must reject", w)
		}
		if !w.reject && w.rejected() {
			t.Errorf("%v: Gatehouse rejected a valid write", w)
		}
		if !w.create {
			if w.acknowledged() {
				roleWrites = append(roleWrites, w)
			}
			continue
		}

		attempted[w.resource] = true
		owned, seen := ownedByDave[w.resource], seenByCarol[w.resource]
		if owned != seen {
			t.Errorf("%v: half written after the restart: owner role present %v, parent link present %v", w, owned, seen)
		}
		if w.acknowledged() && !(owned && seen) {
			t.Errorf("%v: acknowledged create lost after kill -9 (owner role %v, parent link %v)", w, owned, seen)
		}
		if w.rejected() && (owned || seen) {
			t.Errorf("%v: rejected create exists after the restart", w)
		}
	}
	for resource := range pgUnion(ownedByDave, seenByCarol) {
		if !attempted[resource] {
			t.Errorf("%s exists after the restart but nobody created it", resource)
		}
	}

	// Every acknowledged role is listed and takes effect.
	members := map[string][]string{}
	for _, w := range roleWrites {
		if _, ok := members[w.resource]; !ok {
			members[w.resource] = dave.members(t, w.resource)
		}
		if !slices.Contains(members[w.resource], w.subject+"=viewer") {
			t.Errorf("%v: acknowledged role missing from members %v after kill -9", w, members[w.resource])
		}
	}
	for chunk := range slices.Chunk(roleWrites, 100) {
		checks := make([]map[string]string, len(chunk))
		for i, w := range chunk {
			checks[i] = map[string]string{"subject": w.subject, "permission": "view", "resource": w.resource}
		}
		for i, allowed := range alice.bulkCheck(t, checks) {
			if !allowed {
				t.Errorf("%v: acknowledged role does not allow view after kill -9", chunk[i])
			}
		}
	}
	t.Logf("writes: %d acknowledged, %d rejected, %d without response; %d documents exist", counts.acknowledged, counts.rejected, counts.unknown, len(ownedByDave))
}

// pgTestPasswordNotLeaked runs gatehouse with a database URL that contains
// a password, makes it succeed and fail in several ways, and searches every
// log line, error message and response for the password.
//
// NOTE: the test cluster trusts every local connection (initdb
// --auth=trust), so a wrong password would still log in. The failures here
// are the ones a trusting server can produce: a role that may not log in,
// a database that does not exist, a closed port and a malformed URL.
func pgTestPasswordNotLeaked(t *testing.T, bin string) {
	dbURL := pgtest.NewDatabase(t)
	suffix := pgRandomSuffix()
	password := "S3cr3t-pw-" + suffix + "/@:?"
	secretCore := "S3cr3t-pw-" + suffix // present in every encoding of password
	loginRole, noLoginRole := "gh_secret_"+suffix, "gh_nologin_"+suffix
	pgCreateRoles(t, dbURL, password, loginRole, noLoginRole)

	withUser := func(raw, role string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("parse database URL: %v", err)
		}
		u.User = url.UserPassword(role, password)
		return u.String()
	}
	secretURL := withUser(dbURL, loginRole)
	var leaks []string
	search := func(where, text string) {
		for _, line := range strings.Split(text, "\n") {
			if strings.Contains(line, secretCore) {
				leaks = append(leaks, fmt.Sprintf("%s contains the password: %s", where, line))
			}
		}
	}

	// Working instances, used through the API, with debug logs. PostgreSQL
	// accepts a URL or a keyword/value string, and both carry the password.
	working := []struct {
		name string
		url  string
	}{
		{"URL", secretURL},
		{"keyword/value string", pgKeywordValue(t, secretURL)},
	}
	for i, tc := range working {
		proc := pgStartProcess(t, bin, []string{"GATEHOUSE_DATABASE_URL=" + tc.url},
			"serve", "--dev", "--datastore", "postgres", "--migrate", "--log-level", "debug", "--http-addr", pgFreeAddr(t))
		proc.waitReady(t)
		alice := proc.client(t, "alice")
		org := fmt.Sprintf("org:acme-%d", i)
		pgMustStatus(t, alice.do(t, http.MethodPost, "/v1/resources", pgCreateBody(org, "")), http.StatusCreated)
		if !alice.allowed(t, "", "manage", org, "") {
			t.Errorf("%s: alice cannot manage the org she created", tc.name)
		}
		alice.lookup(t, "view", "org")
		for _, path := range []string{"/metrics", "/readyz", "/healthz"} {
			r := alice.do(t, http.MethodGet, path, nil)
			pgMustStatus(t, r, http.StatusOK)
			search(tc.name+": GET "+path, string(r.body))
		}
		search(tc.name+": a 404 response", string(alice.do(t, http.MethodGet, "/v1/resources/org/nope/members", nil).body))
		search(tc.name+": a 400 response", string(alice.do(t, http.MethodPost, "/v1/check", "{").body))
		proc.stop(t)
		search(tc.name+": the log of a working instance", proc.output())
	}

	// Failures, through both ways of passing the URL and both commands.
	closedPort := pgFreeAddr(t)
	failing := []struct {
		name string
		url  string
	}{
		{"role may not log in", withUser(dbURL, noLoginRole)},
		{"database does not exist", withUser(strings.Replace(dbURL, "/gatehouse_test_", "/gatehouse_missing_", 1), loginRole)},
		{"port closed", withUser(pgReplaceHost(t, dbURL, closedPort), loginRole)},
		{"malformed sslmode", withUser(dbURL, loginRole) + "&sslmode=bogus"},
		{"malformed port", strings.Replace(withUser(dbURL, loginRole), "@127.0.0.1:", "@127.0.0.1:notaport", 1)},
		{"keyword/value string, port closed", pgKeywordValue(t, withUser(pgReplaceHost(t, dbURL, closedPort), loginRole))},
		{"keyword/value string, unknown keyword", pgKeywordValue(t, withUser(dbURL, loginRole)) + " bogus_keyword=1"},
	}
	for _, tc := range failing {
		t.Run(tc.name, func(t *testing.T) {
			runs := []struct {
				label string
				env   []string
				args  []string
			}{
				{"serve, URL in env", []string{"GATEHOUSE_DATABASE_URL=" + tc.url}, []string{"serve", "--dev", "--datastore", "postgres", "--log-level", "debug", "--http-addr", pgFreeAddr(t)}},
				{"serve --migrate, URL in flag", nil, []string{"serve", "--dev", "--datastore", "postgres", "--migrate", "--log-level", "debug", "--http-addr", pgFreeAddr(t), "--database-url", tc.url}},
				{"migrate, URL in env", []string{"GATEHOUSE_DATABASE_URL=" + tc.url}, []string{"migrate", "--log-level", "debug"}},
			}
			for _, run := range runs {
				out, err := pgRunProcess(t, bin, run.env, run.args...)
				if err == nil {
					t.Errorf("%s: succeeded with a bad database URL; output:\n%s", run.label, out)
				}
				if !strings.Contains(out, "gatehouse:") {
					t.Errorf("%s: no error message; output:\n%s", run.label, out)
				}
				search(tc.name+", "+run.label, out)
			}

			// The same failures in-process, where callers see the error value.
			ctx := pgContext(t, time.Minute)
			if _, err := server.New(ctx, pgServerConfig(pgListen(t), tc.url, true)); err == nil {
				t.Error("server.New succeeded with a bad database URL")
			} else {
				search(tc.name+", server.New error", err.Error())
			}
			if err := store.Migrate(ctx, store.Config{URL: tc.url}, pgDiscard); err == nil {
				t.Error("store.Migrate succeeded with a bad database URL")
			} else {
				search(tc.name+", store.Migrate error", err.Error())
			}
		})
	}

	for _, leak := range leaks {
		t.Error(leak)
	}
}

// TestPostgresOutage stops PostgreSQL under a running server, expects 503
// problem details with Retry-After for every request, restarts PostgreSQL
// and expects correct results again without restarting Gatehouse.
func TestPostgresOutage(t *testing.T) {
	cluster := pgNewCluster(t)
	dbURL := cluster.url

	g := pgStartInstance(t, dbURL)
	alice, bob := g.client(t, "alice"), g.client(t, "bob")
	pgMustStatus(t, alice.do(t, http.MethodPost, "/v1/resources", pgCreateBody("org:acme", "")), http.StatusCreated)
	pgMustStatus(t, alice.do(t, http.MethodPost, "/v1/resources", pgCreateBody("workspace:eng", "org:acme")), http.StatusCreated)
	pgMustStatus(t, alice.do(t, http.MethodPut, pgMemberPath("workspace:eng", bob.subject), map[string]string{"role": "viewer"}), http.StatusOK)
	if !bob.allowed(t, "", "view", "workspace:eng", "") || bob.allowed(t, "", "edit", "workspace:eng", "") {
		t.Fatal("before the outage: bob must view and not edit workspace:eng")
	}

	// Registered before the stop, so it runs even when the test fails
	// halfway, and before the server's clean-up.
	t.Cleanup(func() { cluster.ensureRunning(t) })
	cluster.stop(t)

	// Every request, reads and writes alike, must fail with 503 for as long
	// as PostgreSQL is down. Only /healthz, the liveness probe, stays 200.
	requests := []struct {
		name   string
		client *pgClient
		method string
		path   string
		body   any
	}{
		{"check", bob, http.MethodPost, "/v1/check", map[string]string{"permission": "view", "resource": "workspace:eng"}},
		{"check denied before", bob, http.MethodPost, "/v1/check", map[string]string{"permission": "edit", "resource": "workspace:eng"}},
		{"bulk check", alice, http.MethodPost, "/v1/check/bulk", map[string]any{"checks": []map[string]string{
			{"subject": bob.subject, "permission": "view", "resource": "workspace:eng"},
			{"subject": bob.subject, "permission": "edit", "resource": "workspace:eng"},
		}}},
		{"lookup resources", bob, http.MethodPost, "/v1/lookup/resources", map[string]any{"permission": "view", "resource_type": "workspace"}},
		{"lookup subjects", alice, http.MethodPost, "/v1/lookup/subjects", map[string]any{"resource": "workspace:eng", "permission": "view", "subject_type": "user"}},
		{"members", alice, http.MethodGet, pgResourcePath("workspace:eng") + "/members", nil},
		{"create", alice, http.MethodPost, "/v1/resources", pgCreateBody("project:during-outage", "workspace:eng")},
		{"set member", alice, http.MethodPut, pgMemberPath("workspace:eng", "user:dev|carol"), map[string]string{"role": "editor"}},
		{"remove member", alice, http.MethodDelete, pgMemberPath("workspace:eng", bob.subject), nil},
		{"delete", alice, http.MethodDelete, pgResourcePath("workspace:eng"), nil},
		{"readyz", alice, http.MethodGet, "/readyz", nil},
	}
	failures := map[string]string{} // first failure per request, to keep the output short
	sent := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		for _, req := range requests {
			sent++
			r, err := req.client.send(context.Background(), req.method, req.path, req.body)
			if err != nil {
				failures[req.name] = cmp.Or(failures[req.name], fmt.Sprintf("%s during the outage: %v", req.name, err))
				continue
			}
			if problem := pgUnavailableProblem(r); problem != "" {
				failures[req.name] = cmp.Or(failures[req.name], fmt.Sprintf("%s during the outage: %s", req.name, problem))
			}
		}
		r, err := alice.send(context.Background(), http.MethodGet, "/healthz", nil)
		if err != nil || r.status != http.StatusOK {
			failures["healthz"] = cmp.Or(failures["healthz"], fmt.Sprintf("healthz during the outage: %v %v, want 200", r, err))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(failures)) {
		t.Error(failures[name])
	}
	t.Logf("sent %d requests during the outage", sent)

	// Gatehouse recovers by itself once PostgreSQL is back.
	cluster.start(t)
	recovered := false
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		r, err := bob.send(context.Background(), http.MethodPost, "/v1/check", map[string]string{"permission": "view", "resource": "workspace:eng"})
		if err == nil && r.status == http.StatusOK {
			recovered = true
			break
		}
		last = fmt.Sprintf("%v %v", r, err)
	}
	if !recovered {
		t.Fatalf("no successful check within 30s of PostgreSQL's restart; last: %s; server log:\n%s", last, g.logs.tail())
	}
	pgMustStatus(t, alice.do(t, http.MethodGet, "/readyz", nil), http.StatusOK)

	// Reads return the state from before the outage: no write that got 503
	// happened.
	if !bob.allowed(t, "", "view", "workspace:eng", "") {
		t.Error("after the outage: bob cannot view workspace:eng")
	}
	if bob.allowed(t, "", "edit", "workspace:eng", "") {
		t.Error("after the outage: bob can edit workspace:eng, but the role write got 503")
	}
	if got, want := alice.members(t, "workspace:eng"), []string{"user:dev|alice=admin", bob.subject + "=viewer"}; !slices.Equal(got, want) {
		t.Errorf("members of workspace:eng after the outage: got %v, want %v", got, want)
	}
	if got := alice.lookup(t, "view", "project"); len(got) != 0 {
		t.Errorf("projects after the outage: got %v, want none: the create got 503", got)
	}

	// Writes work again and are read back.
	pgMustStatus(t, alice.do(t, http.MethodPost, "/v1/resources", pgCreateBody("project:after-outage", "workspace:eng")), http.StatusCreated)
	if !bob.allowed(t, "", "view", "project:after-outage", "") {
		t.Error("after the outage: bob cannot view a project created in his workspace")
	}
}

// pgUnavailableProblem returns "" when r is a 503 problem details response
// with Retry-After, or else what is wrong with it.
func pgUnavailableProblem(r pgResponse) string {
	if r.status != http.StatusServiceUnavailable {
		return fmt.Sprintf("got %v, want 503", r)
	}
	if ct := r.header.Get("Content-Type"); ct != problemContentType {
		return fmt.Sprintf("got Content-Type %q, want %q", ct, problemContentType)
	}
	if r.header.Get("Retry-After") == "" {
		return "503 without Retry-After"
	}
	var doc struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || doc.Status != http.StatusServiceUnavailable || doc.Detail == "" {
		return fmt.Sprintf("503 body is not a problem document with status 503 and a detail: %s", r.body)
	}
	return ""
}

// --- In-process servers ---

// pgInstance is an in-process Gatehouse server on PostgreSQL.
type pgInstance struct {
	srv  *server.Server
	logs *pgOutput
}

// pgServerConfig returns the configuration of a dev server on ln backed by
// the database at dbURL.
func pgServerConfig(ln net.Listener, dbURL string, migrate bool) server.Config {
	return server.Config{
		Listener:  ln,
		Dev:       true,
		Logger:    pgDiscard,
		Datastore: server.DatastorePostgres,
		Postgres:  engine.PostgresConfig{URL: dbURL},
		Migrate:   migrate,
	}
}

// pgNewInstance starts a server with Migrate set and stops it when the test
// ends. It returns an error instead of failing, so that goroutines may call
// it.
func pgNewInstance(t *testing.T, dbURL string) (*pgInstance, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	logs := &pgOutput{}
	cfg := pgServerConfig(ln, dbURL, true)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("server.New: %w", err)
	}

	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run: %v", err)
		}
		if t.Failed() {
			t.Logf("log of the server at %s:\n%s", srv.URL(), logs.tail())
		}
	})
	return &pgInstance{srv: srv, logs: logs}, nil
}

// pgStartInstance starts a server with Migrate set and fails the test on
// error.
func pgStartInstance(t *testing.T, dbURL string) *pgInstance {
	t.Helper()
	g, err := pgNewInstance(t, dbURL)
	if err != nil {
		t.Fatalf("start gatehouse on postgres: %v", err)
	}
	return g
}

// client returns a client that acts as user:dev|<name>.
func (g *pgInstance) client(t *testing.T, name string) *pgClient {
	t.Helper()
	token, err := g.srv.DevIssuer().Mint(name, false)
	if err != nil {
		t.Fatalf("mint token for %q: %v", name, err)
	}
	return &pgClient{base: g.srv.URL(), token: token, subject: "user:dev|" + name}
}

// pgListen listens on a free loopback port.
func pgListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return ln
}

// pgDiscard is the logger of servers and migrations whose log no test
// reads: their failures show in errors and responses.
var pgDiscard = slog.New(slog.DiscardHandler)

// pgContext returns a context that ends after timeout or with the test.
func pgContext(t *testing.T, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// --- HTTP client ---

// pgClient sends requests with one user's token. Its send method returns
// errors instead of failing, so that goroutines may use it.
type pgClient struct {
	base    string
	token   string
	subject string // such as "user:dev|alice"
}

// pgHTTP is the HTTP client of every pgClient. A request that hangs for 15
// seconds fails the test, since every request here should be quick.
var pgHTTP = &http.Client{Timeout: 15 * time.Second}

// pgResponse is a fully read HTTP response.
type pgResponse struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

func (r pgResponse) String() string {
	return fmt.Sprintf("%s %s: %d %s", r.method, r.path, r.status, bytes.TrimSpace(r.body))
}

// send performs one request. A string body is sent as is; any other
// non-nil body is encoded as JSON.
func (c *pgClient) send(ctx context.Context, method, path string, body any) (pgResponse, error) {
	var reader io.Reader

	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return pgResponse{}, err
		}
		reader = bytes.NewReader(data)
	}

	req, err := http.NewRequestWithContext(ctx, method, c.base+path, reader)
	if err != nil {
		return pgResponse{}, err
	}
	if reader != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}

	resp, err := pgHTTP.Do(req)
	if err != nil {
		return pgResponse{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return pgResponse{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return pgResponse{method: method, path: path, status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// do is send for the test goroutine: it fails the test when no response
// arrives.
func (c *pgClient) do(t *testing.T, method, path string, body any) pgResponse {
	t.Helper()
	r, err := c.send(context.Background(), method, path, body)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, c.base, path, err)
	}
	return r
}

// allowed runs one check as the client, about subject ("" for the client
// itself), at consistencyToken ("" for full consistency).
func (c *pgClient) allowed(t *testing.T, subject, permission, resource, consistencyToken string) bool {
	t.Helper()
	body := map[string]string{"permission": permission, "resource": resource}
	if subject != "" {
		body["subject"] = subject
	}
	if consistencyToken != "" {
		body["consistency_token"] = consistencyToken
	}
	r := c.do(t, http.MethodPost, "/v1/check", body)
	pgMustStatus(t, r, http.StatusOK)
	var out struct {
		Allowed bool `json:"allowed"`
	}
	pgDecode(t, r, &out)
	return out.Allowed
}

// bulkCheck runs up to 100 checks in one request and returns their
// decisions in order. It fails the test when any check returns an error.
func (c *pgClient) bulkCheck(t *testing.T, checks []map[string]string) []bool {
	t.Helper()
	r := c.do(t, http.MethodPost, "/v1/check/bulk", map[string]any{"checks": checks})
	pgMustStatus(t, r, http.StatusOK)
	var out struct {
		Results []struct {
			Allowed bool            `json:"allowed"`
			Error   json.RawMessage `json:"error"`
		} `json:"results"`
	}
	pgDecode(t, r, &out)
	if len(out.Results) != len(checks) {
		t.Fatalf("bulk check: %d results for %d checks", len(out.Results), len(checks))
	}
	decisions := make([]bool, len(checks))
	for i, result := range out.Results {
		if result.Error != nil {
			t.Errorf("bulk check %v: error %s", checks[i], result.Error)
		}
		decisions[i] = result.Allowed
	}
	return decisions
}

// lookup returns the resources of resourceType on which the client has
// permission, following page tokens, sorted and without duplicates.
func (c *pgClient) lookup(t *testing.T, permission, resourceType string) []string {
	t.Helper()
	found := []string{}
	token := ""
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatalf("lookup of %s %s: more than 100 pages", permission, resourceType)
		}
		body := map[string]any{"permission": permission, "resource_type": resourceType, "page_size": 1000}
		if token != "" {
			body["page_token"] = token
		}
		r := c.do(t, http.MethodPost, "/v1/lookup/resources", body)
		pgMustStatus(t, r, http.StatusOK)
		var out struct {
			Resources     []string `json:"resources"`
			NextPageToken string   `json:"next_page_token"`
		}
		pgDecode(t, r, &out)
		found = append(found, out.Resources...)
		if out.NextPageToken == "" {
			break
		}
		token = out.NextPageToken
	}
	slices.Sort(found)
	return slices.Compact(found)
}

// members returns resource's direct members as "subject=role", sorted.
func (c *pgClient) members(t *testing.T, resource string) []string {
	t.Helper()
	found := []string{}
	token := ""
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatalf("members of %s: more than 100 pages", resource)
		}
		path := pgResourcePath(resource) + "/members?page_size=100"
		if token != "" {
			path += "&page_token=" + url.QueryEscape(token)
		}
		r := c.do(t, http.MethodGet, path, nil)
		pgMustStatus(t, r, http.StatusOK)
		var out struct {
			Members []struct {
				Subject string `json:"subject"`
				Role    string `json:"role"`
			} `json:"members"`
			NextPageToken string `json:"next_page_token"`
		}
		pgDecode(t, r, &out)
		for _, m := range out.Members {
			found = append(found, m.Subject+"="+m.Role)
		}
		if out.NextPageToken == "" {
			break
		}
		token = out.NextPageToken
	}
	slices.Sort(found)
	return found
}

// pgMustStatus fails the test unless r has status want.
func pgMustStatus(t *testing.T, r pgResponse, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("got %v, want status %d", r, want)
	}
}

// pgDecode decodes r's JSON body into v.
func pgDecode(t *testing.T, r pgResponse, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("%s %s: decode %s: %v", r.method, r.path, r.body, err)
	}
}

// pgCreateBody returns the body of POST /v1/resources.
func pgCreateBody(resource, parent string) map[string]string {
	body := map[string]string{"resource": resource}
	if parent != "" {
		body["parent"] = parent
	}
	return body
}

// pgResourcePath returns /v1/resources/{type}/{id} for "type:id".
func pgResourcePath(resource string) string {
	typ, id, _ := strings.Cut(resource, ":")
	return "/v1/resources/" + url.PathEscape(typ) + "/" + url.PathEscape(id)
}

// pgMemberPath returns the path of subject's role on resource.
func pgMemberPath(resource, subject string) string {
	return pgResourcePath(resource) + "/members/" + url.PathEscape(subject)
}

func pgSet(items []string) map[string]bool {
	set := make(map[string]bool, len(items))
	for _, item := range items {
		set[item] = true
	}
	return set
}

func pgUnion(a, b map[string]bool) map[string]bool {
	union := make(map[string]bool, len(a)+len(b))
	for k := range a {
		union[k] = true
	}
	for k := range b {
		union[k] = true
	}
	return union
}

// --- Subprocesses ---

// pgBuildBinary builds cmd/gatehouse into a temporary directory of t.
func pgBuildBinary(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		t.Fatalf("find the module root with go env GOMOD: %q %v", out, err)
	}
	bin := filepath.Join(t.TempDir(), "gatehouse")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gatehouse")
	build.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gatehouse: %v\n%s", err, out)
	}
	return bin
}

// pgOutput collects a subprocess's output or a server's log. It is safe for
// concurrent use.
type pgOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *pgOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *pgOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// tail returns the last 16 KiB of the output.
func (o *pgOutput) tail() string {
	s := o.String()
	if len(s) > 16<<10 {
		s = "...\n" + s[len(s)-16<<10:]
	}
	return s
}

// pgProcess is a running gatehouse subprocess.
type pgProcess struct {
	cmd            *exec.Cmd
	base           string
	stdout, stderr *pgOutput
	exited         chan struct{}
}

// pgStartProcess starts bin with args and env added to the test's
// environment (without any GATEHOUSE_DATABASE_URL of its own), and kills it
// when the test ends. The --http-addr argument, if any, sets its base URL.
func pgStartProcess(t *testing.T, bin string, env []string, args ...string) *pgProcess {
	t.Helper()
	p := &pgProcess{stdout: &pgOutput{}, stderr: &pgOutput{}, exited: make(chan struct{})}
	if i := slices.Index(args, "--http-addr"); i >= 0 && i+1 < len(args) {
		p.base = "http://" + args[i+1]
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(pgEnviron(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// pgEnviron returns the test's environment without GATEHOUSE_DATABASE_URL.
func pgEnviron() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "GATEHOUSE_DATABASE_URL=")
	})
}

// output returns stdout followed by stderr.
func (p *pgProcess) output() string {
	return p.stdout.String() + p.stderr.String()
}

// waitReady waits up to 90 seconds for /readyz to return 200. Start-up
// includes the migrations.
func (p *pgProcess) waitReady(t *testing.T) {
	t.Helper()
	probe := &pgClient{base: p.base}
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-p.exited:
			t.Fatalf("gatehouse exited during start-up (%v); output:\n%s", p.cmd.ProcessState, p.output())
		default:
		}
		if r, err := probe.send(context.Background(), http.MethodGet, "/readyz", nil); err == nil && r.status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gatehouse not ready within 90s; output:\n%s", p.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// client mints a dev token for user:dev|<name> through POST /dev/token.
func (p *pgProcess) client(t *testing.T, name string) *pgClient {
	t.Helper()
	r := (&pgClient{base: p.base}).do(t, http.MethodPost, "/dev/token", map[string]string{"subject": name})
	pgMustStatus(t, r, http.StatusOK)
	var out struct {
		AccessToken string `json:"access_token"`
		Principal   string `json:"principal"`
	}
	pgDecode(t, r, &out)
	return &pgClient{base: p.base, token: out.AccessToken, subject: out.Principal}
}

// kill sends SIGKILL and waits for the process to exit.
func (p *pgProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill gatehouse: %v", err)
	}
	<-p.exited
}

// stop sends SIGTERM and waits up to 30 seconds for a clean exit.
func (p *pgProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop gatehouse: %v", err)
	}
	select {
	case <-p.exited:
		if !p.cmd.ProcessState.Success() {
			t.Errorf("gatehouse exited with %v after SIGTERM; output:\n%s", p.cmd.ProcessState, p.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("gatehouse did not exit within 30s of SIGTERM; output:\n%s", p.output())
	}
}

// pgRunProcess runs bin to completion within 60 seconds and returns its
// stdout and stderr together.
func pgRunProcess(t *testing.T, bin string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out pgOutput
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(pgEnviron(), env...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Errorf("gatehouse %s did not exit within 60s; output:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String(), err
}

// pgFreeAddr returns a loopback address whose port was free a moment ago.
func pgFreeAddr(t *testing.T) string {
	t.Helper()
	ln := pgListen(t)
	defer ln.Close()
	return ln.Addr().String()
}

// --- PostgreSQL ---

// pgExec runs one SQL statement on the database at dbURL.
func pgExec(t *testing.T, dbURL, sql string) {
	t.Helper()
	ctx := pgContext(t, 30*time.Second)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// pgQueryRow scans the one row of a query on the database at dbURL.
func pgQueryRow(t *testing.T, dbURL, sql string, dest ...any) {
	t.Helper()
	ctx := pgContext(t, 30*time.Second)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// pgSchemaSnapshot returns a text listing of what the migrations create:
// every table, column and index outside the system schemas, Gatehouse's
// migration rows, its installation id and SpiceDB's migration revision.
func pgSchemaSnapshot(t *testing.T, dbURL string) string {
	t.Helper()
	ctx := pgContext(t, 30*time.Second)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)

	queries := []string{
		`SELECT 'table ' || table_schema || '.' || table_name FROM information_schema.tables
		 WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
		`SELECT 'column ' || table_schema || '.' || table_name || '.' || column_name || ' ' || data_type
		 FROM information_schema.columns
		 WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
		`SELECT 'index ' || schemaname || '.' || indexname || ' ' || indexdef FROM pg_indexes
		 WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
		`SELECT 'goose ' || id || ' ' || version_id || ' ' || is_applied || ' ' || tstamp
		 FROM gatehouse.goose_db_version ORDER BY id`,
		`SELECT 'installation ' || id || ' ' || created_at FROM gatehouse.installation`,
		`SELECT 'spicedb version ' || version_num FROM alembic_version`,
	}
	var snapshot strings.Builder
	for _, query := range queries {
		rows, err := conn.Query(ctx, query)
		if err != nil {
			t.Fatalf("snapshot: %s: %v", query, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("snapshot: %s: %v", query, err)
		}
		for _, line := range lines {
			snapshot.WriteString(line + "\n")
		}
	}
	return snapshot.String()
}

// pgRandomSuffix returns 12 random lowercase hex digits.
func pgRandomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pgCreateRoles creates a superuser role that may log in and one that may
// not, both with password, and drops them when the test ends. The clean-up
// drops the test database first, because the role owns its tables.
func pgCreateRoles(t *testing.T, dbURL, password, loginRole, noLoginRole string) {
	t.Helper()
	adminURL := os.Getenv(pgtest.EnvURL)
	quoted := "'" + strings.ReplaceAll(password, "'", "''") + "'"
	pgExec(t, adminURL, "CREATE ROLE "+pgx.Identifier{loginRole}.Sanitize()+" LOGIN SUPERUSER PASSWORD "+quoted)
	pgExec(t, adminURL, "CREATE ROLE "+pgx.Identifier{noLoginRole}.Sanitize()+" NOLOGIN PASSWORD "+quoted)

	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("parse database URL: %v", err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Errorf("drop test roles: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, sql := range []string{
			"DROP DATABASE IF EXISTS " + pgx.Identifier{dbName}.Sanitize() + " WITH (FORCE)",
			"DROP ROLE IF EXISTS " + pgx.Identifier{loginRole}.Sanitize(),
			"DROP ROLE IF EXISTS " + pgx.Identifier{noLoginRole}.Sanitize(),
		} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Errorf("%s: %v", sql, err)
			}
		}
	})
}

// pgKeywordValue turns a postgres:// URL into the equivalent keyword/value
// connection string, such as "host=127.0.0.1 port=5432 user='u'
// password='p' dbname='d' sslmode='disable'".
func pgKeywordValue(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse database URL: %v", err)
	}
	quote := func(v string) string {
		return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(v) + "'"
	}
	password, _ := u.User.Password()
	parts := []string{
		"host=" + u.Hostname(), "port=" + u.Port(), "user=" + quote(u.User.Username()),
		"password=" + quote(password), "dbname=" + quote(strings.TrimPrefix(u.Path, "/")),
	}
	for key, values := range u.Query() {
		parts = append(parts, key+"="+quote(values[len(values)-1]))
	}
	return strings.Join(parts, " ")
}

// pgReplaceHost returns rawURL with its host:port replaced.
func pgReplaceHost(t *testing.T, rawURL, hostPort string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse database URL: %v", err)
	}
	u.Host = hostPort
	return u.String()
}

// pgCluster is a throwaway PostgreSQL cluster that one test starts and
// stops, with the binaries and options of scripts/test-postgres.sh.
type pgCluster struct {
	pgCtl   string
	dir     string // holds the data directory, the socket and the log
	dataDir string
	port    int
	url     string // of the "postgres" database, as the "gatehouse" role
}

// pgNewCluster creates and starts a cluster on a free loopback port next to
// the shared one, and removes it when the test ends. It skips the test
// unless scripts/test-postgres.sh has set GATEHOUSE_TEST_PG_CTL and
// GATEHOUSE_TEST_PG_DATA.
func pgNewCluster(t *testing.T) *pgCluster {
	t.Helper()
	pgCtl, sharedData := os.Getenv("GATEHOUSE_TEST_PG_CTL"), os.Getenv("GATEHOUSE_TEST_PG_DATA")
	pgtest.Require(t, "GATEHOUSE_TEST_PG_CTL", "GATEHOUSE_TEST_PG_DATA")

	// The shared cluster's parent directory is already reachable by the
	// postgres user, which a directory under /tmp may not be.
	dir, err := os.MkdirTemp(filepath.Dir(sharedData), "outage-")
	if err != nil {
		t.Fatalf("create cluster directory: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		owner, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("look up the postgres user: %v", err)
		}
		uid, uidErr := strconv.Atoi(owner.Uid)
		gid, gidErr := strconv.Atoi(owner.Gid)
		if err := cmp.Or(uidErr, gidErr); err != nil {
			t.Fatalf("postgres user's uid %q or gid %q: %v", owner.Uid, owner.Gid, err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("chown %s to postgres: %v", dir, err)
		}
	}

	ln := pgListen(t)
	c := &pgCluster{pgCtl: pgCtl, dir: dir, dataDir: filepath.Join(dir, "data"), port: ln.Addr().(*net.TCPAddr).Port}
	ln.Close()
	c.url = fmt.Sprintf("postgres://gatehouse@127.0.0.1:%d/postgres?sslmode=disable", c.port)

	initdb := c.asOwner(filepath.Join(filepath.Dir(pgCtl), "initdb"),
		"-D", c.dataDir, "-U", "gatehouse", "--auth=trust", "--encoding=UTF8", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.start(t)
	t.Cleanup(func() {
		if out, err := c.asOwner(c.pgCtl, "-D", c.dataDir, "-m", "immediate", "stop").CombinedOutput(); err != nil && c.running() {
			t.Errorf("stop the outage test's PostgreSQL: %v\n%s", err, out)
		}
	})
	return c
}

// asOwner returns a command that runs as the owner of the cluster: the
// postgres user when the test runs as root, as in scripts/test-postgres.sh.
func (c *pgCluster) asOwner(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

// stop stops the cluster the way an operator would, with pg_ctl -m fast.
func (c *pgCluster) stop(t *testing.T) {
	t.Helper()
	if out, err := c.asOwner(c.pgCtl, "-D", c.dataDir, "-m", "fast", "-w", "stop").CombinedOutput(); err != nil {
		t.Fatalf("stop PostgreSQL: %v\n%s", err, out)
	}
}

// start starts the cluster on its port with the options of
// scripts/test-postgres.sh.
func (c *pgCluster) start(t *testing.T) {
	t.Helper()
	options := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c max_connections=300", c.port, c.dir)
	cmd := c.asOwner(c.pgCtl, "-D", c.dataDir, "-l", filepath.Join(c.dir, "postgres.log"), "-w", "-t", "60", "-o", options, "start")
	cmd.WaitDelay = 5 * time.Second // the server may keep pg_ctl's output pipe open
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start PostgreSQL: %v\n%s", err, out)
	}
}

// running reports whether pg_ctl status finds the server running.
func (c *pgCluster) running() bool {
	return c.asOwner(c.pgCtl, "-D", c.dataDir, "status").Run() == nil
}

// ensureRunning starts the cluster unless it is running.
func (c *pgCluster) ensureRunning(t *testing.T) {
	t.Helper()
	if !c.running() {
		c.start(t)
	}
}
