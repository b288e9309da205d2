package engine

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/datastore/options"

	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

func TestWithQueryExecMode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@db:5432/gh", "postgres://u:p@db:5432/gh?default_query_exec_mode=cache_statement"},
		{"postgresql://db/gh?sslmode=verify-full", "postgresql://db/gh?sslmode=verify-full&default_query_exec_mode=cache_statement"},
		{"postgres://db/gh?default_query_exec_mode=exec", "postgres://db/gh?default_query_exec_mode=exec"},
		{"host=db dbname=gh", "host=db dbname=gh default_query_exec_mode=cache_statement"},
		{"host=db dbname=gh default_query_exec_mode=simple_protocol", "host=db dbname=gh default_query_exec_mode=simple_protocol"},
	} {
		got, err := withQueryExecMode(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("withQueryExecMode(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestWithQueryExecModeHidesABadURL(t *testing.T) {
	_, err := withQueryExecMode("postgres://u:secret@db/%zz")
	if err == nil {
		t.Fatal("a URL with a bad escape was accepted")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the error repeats the URL: %v", err)
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
