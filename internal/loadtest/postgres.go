package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
)

// createDatabase creates an empty database on the server that adminURL
// names (a role allowed to create databases) and returns its URL and a
// function that drops it. The database name is prefixed with prefix and
// made unique with a random suffix.
func createDatabase(ctx context.Context, adminURL, prefix string) (databaseURL, name string, drop func(context.Context) error, err error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		// The parse error would repeat the URL, password included.
		return "", "", nil, fmt.Errorf("the PostgreSQL URL is not a valid URL")
	}
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", "", nil, err
	}
	name = prefix + "_" + hex.EncodeToString(suffix[:])

	if err := execAdmin(ctx, adminURL, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop = func(ctx context.Context) error {
		if err := execAdmin(ctx, adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
	u.Path = "/" + name
	return u.String(), name, drop, nil
}

// analyzeDatabase refreshes the planner's statistics after a bulk load, as
// an operator would after importing data. Without it, PostgreSQL plans
// queries with the statistics of empty tables until autovacuum runs.
func analyzeDatabase(ctx context.Context, databaseURL string) (time.Duration, error) {
	start := time.Now()
	if err := execAdmin(ctx, databaseURL, "ANALYZE"); err != nil {
		return 0, fmt.Errorf("analyze: %w", err)
	}
	return time.Since(start), nil
}

// execAdmin runs one statement on its own connection.
func execAdmin(ctx context.Context, databaseURL, statement string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	connectCtx, cancelConnect := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(connectCtx, databaseURL)
	cancelConnect()
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, statement)
	return err
}
