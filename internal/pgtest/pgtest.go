// Package pgtest gives tests a fresh PostgreSQL database of their own on the
// server named by GATEHOUSE_TEST_DATABASE_URL (scripts/test-postgres.sh
// starts one). Without that variable, tests that need PostgreSQL are
// skipped with a message that says so.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL is the environment variable that names the test server: a URL of
// a role allowed to create databases.
const EnvURL = "GATEHOUSE_TEST_DATABASE_URL"

// EnvRequire, when set to 1, turns a missing EnvURL into a test failure
// instead of a skip, so that CI cannot pass without running these tests.
const EnvRequire = "GATEHOUSE_REQUIRE_POSTGRES"

// Available reports whether a test server is configured.
func Available() bool { return os.Getenv(EnvURL) != "" }

// NewDatabase creates an empty database, drops it when the test ends, and
// returns its URL. It skips the test when no server is configured.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	adminURL := os.Getenv(EnvURL)
	if adminURL == "" && os.Getenv(EnvRequire) == "1" {
		tb.Fatal(EnvRequire + "=1 but " + EnvURL + " is not set")
	}
	if adminURL == "" {
		tb.Skip("SKIPPED: PostgreSQL test: set " + EnvURL + " (scripts/test-postgres.sh start prints it)")
	}

	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	name := "gatehouse_test_" + hex.EncodeToString(suffix[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		tb.Fatalf("connect to test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("create database %s: %v", name, err)
	}

	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			tb.Logf("drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Logf("drop database %s: %v", name, err)
		}
	})

	u, err := url.Parse(adminURL)
	if err != nil {
		tb.Fatalf("parse %s: %v", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

// Require skips the test, or fails it when EnvRequire is 1, unless a test
// server is configured and every variable in extra is set too.
func Require(tb testing.TB, extra ...string) {
	tb.Helper()
	missing := ""
	for _, name := range append([]string{EnvURL}, extra...) {
		if os.Getenv(name) == "" {
			missing = name
			break
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv(EnvRequire) == "1" {
		tb.Fatal(EnvRequire + "=1 but " + missing + " is not set")
	}
	tb.Skip("SKIPPED: PostgreSQL test: set " + missing + " (scripts/test-postgres.sh start prints it)")
}
