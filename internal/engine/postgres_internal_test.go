package engine

import (
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"strings"
	"testing"

	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/datastore/options"
	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

func TestWithQueryExecMode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@db:5432/gh", "postgres://u:p@db:5432/gh?default_query_exec_mode=cache_statement"},
		{"postgresql://db/gh?sslmode=verify-full", "postgresql://db/gh?sslmode=verify-full&default_query_exec_mode=cache_statement"},
		{"postgres://db/gh?", "postgres://db/gh?default_query_exec_mode=cache_statement"},
		{"postgres://db/gh?sslmode=disable&", "postgres://db/gh?sslmode=disable&default_query_exec_mode=cache_statement"},
		{"postgres://db/gh?default_query_exec_mode=exec", "postgres://db/gh?default_query_exec_mode=exec"},
		{"host=db dbname=gh", "default_query_exec_mode=cache_statement host=db dbname=gh"},
		{"host=db dbname=gh default_query_exec_mode=simple_protocol", "host=db dbname=gh default_query_exec_mode=simple_protocol"},
	} {
		if got := withQueryExecMode(tc.in); got != tc.want {
			t.Errorf("withQueryExecMode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestWithQueryExecModeKeepsMeaning parses connection strings with pgx
// before and after the mode is added: everything else must mean the same.
func TestWithQueryExecModeKeepsMeaning(t *testing.T) {
	for _, conn := range []string{
		"postgres://u:p%40ss%2F%3F%23%26%20w@db:5432/gh?sslmode=disable",
		"postgres://u@%2Fvar%2Frun%2Fpostgresql/gh",
		"postgres://u:p@h1:5432,h2/gh?target_session_attrs=read-write",
		"postgres://u:p@[::1]:5433/gh",
		"postgres://u:p@h/gh#1",
		"postgres://u:pa#ss@h/gh",
		"postgres://u@h/gh?sslmode=disable&",
		"postgres://u@h/gh?",
		"postgres:///gh?host=/var/run/postgresql",
		"host=db dbname=gh user=u password=",
		"host=/var/run/postgresql dbname=gh application_name=",
		`host=db dbname=gh password='it\'s \\ quoted'`,
	} {
		want, err := pgx.ParseConfig(conn)
		if err != nil {
			t.Fatalf("pgx rejects the test input %q: %v", conn, err)
		}
		out := withQueryExecMode(conn)
		got, err := pgx.ParseConfig(out)
		if err != nil {
			t.Errorf("pgx rejects %q, made from %q: %v", out, conn, err)
			continue
		}
		if got.DefaultQueryExecMode != pgx.QueryExecModeCacheStatement {
			t.Errorf("%q: mode %v, want cache_statement", out, got.DefaultQueryExecMode)
		}
		if got.Host != want.Host || got.Port != want.Port || got.Database != want.Database ||
			got.User != want.User || got.Password != want.Password || len(got.Fallbacks) != len(want.Fallbacks) {
			t.Errorf("%q now means another target: host %q port %d db %q user %q password %q, %d fallbacks; want %q %d %q %q %q, %d",
				conn, got.Host, got.Port, got.Database, got.User, got.Password, len(got.Fallbacks),
				want.Host, want.Port, want.Database, want.User, want.Password, len(want.Fallbacks))
		}
		if !maps.Equal(got.RuntimeParams, want.RuntimeParams) {
			t.Errorf("%q: runtime parameters %v, want %v", conn, got.RuntimeParams, want.RuntimeParams)
		}
	}
}

// TestPostgresDatastoreOpensEveryForm opens SpiceDB's datastore with the
// test server's URL, the same in keyword/value form, and with a mode the
// caller chose, and reads through each: a mode parameter that pgx refused
// would fail the open.
func TestPostgresDatastoreOpensEveryForm(t *testing.T) {
	base := pgtest.NewDatabase(t)
	if err := store.Migrate(t.Context(), store.Config{URL: base}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	keywords := fmt.Sprintf("host=%s port=%s dbname=%s user=%s", u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/"), u.User.Username())
	if password, ok := u.User.Password(); ok {
		keywords += " password=" + password
	}
	for key, values := range u.Query() {
		keywords += " " + key + "=" + values[0]
	}
	chosen := *u
	chosen.RawQuery = url.Values{"default_query_exec_mode": {"exec"}, "sslmode": {u.Query().Get("sslmode")}}.Encode()
	for _, conn := range []string{base, keywords, chosen.String()} {
		ds, err := NewPostgresDatastore(t.Context(), PostgresConfig{URL: conn})
		if err != nil {
			t.Fatalf("open datastore: %v", err)
		}
		t.Cleanup(func() { ds.Close() })
		head, err := ds.HeadRevision(t.Context())
		if err != nil {
			t.Fatalf("head revision: %v", err)
		}
		it, err := ds.SnapshotReader(head.Revision).QueryRelationships(t.Context(), datastore.RelationshipsFilter{OptionalResourceType: "document"}, options.WithLimit(new(uint64(10))))
		if err != nil {
			t.Fatalf("query relationships: %v", err)
		}
		for _, err := range it {
			if err != nil {
				t.Fatalf("read relationships: %v", err)
			}
		}
	}
}
