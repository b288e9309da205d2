package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-authz/gatehouse/internal/audit"
	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/internal/store"
)

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify or export the audit log in PostgreSQL",
	}
	cmd.AddCommand(newAuditVerifyCommand(), newAuditExportCommand())
	return cmd
}

// openAuditLog connects to the database named by the flag or the
// environment, checks that it is migrated, and returns the store and its
// audit log.
func openAuditLog(cmd *cobra.Command, flagURL string) (*store.Store, *audit.Postgres, error) {
	url := databaseURL(flagURL)
	if url == "" {
		return nil, nil, errors.New("no database: pass --database-url or set GATEHOUSE_DATABASE_URL")
	}
	st, err := store.Open(cmd.Context(), store.Config{URL: url, StatementTimeout: time.Hour})
	if err != nil {
		return nil, nil, err
	}
	if err := st.CheckMigrated(cmd.Context()); err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, audit.NewPostgres(st.Pool), nil
}

func newAuditVerifyCommand() *cobra.Command {
	var databaseFlag string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check every org's hash chain and report the first broken entry of each",
		Long: `Check every org's hash chain and report the first broken entry of each.

Exits with status 1 when any chain is broken: an entry was edited, removed or
reordered after it was written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, log, err := openAuditLog(cmd, databaseFlag)
			if err != nil {
				return err
			}
			defer st.Close()

			report, err := audit.Verify(cmd.Context(), log)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, b := range report.Breaks {
				fmt.Fprintf(out, "BROKEN %s\n", b)
			}
			fmt.Fprintf(out, "checked %d entries in %d chains: %d broken\n", report.Entries, report.Chains, len(report.Breaks))
			if !report.OK() {
				return fmt.Errorf("audit log verification failed: %d broken chains", len(report.Breaks))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&databaseFlag, "database-url", "", "PostgreSQL connection URL (default: $GATEHOUSE_DATABASE_URL)")
	return cmd
}

func newAuditExportCommand() *cobra.Command {
	var databaseFlag, format, org, since string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write audit entries to standard output, one JSON object per line",
		Long: `Write audit entries to standard output, one JSON object per line.

Every entry is written with its chain, sequence number and hashes, events and
outcomes alike, so that a SIEM pipeline can verify the chains itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "jsonl" {
				return fmt.Errorf("unknown --format %q: only jsonl is supported", format)
			}
			if org != "" {
				ref, err := object.ParseResource(org)
				if (err != nil || ref.Type != object.TypeOrg) && org != audit.PlatformChain {
					return fmt.Errorf("invalid --org %q: use an org such as org:acme, or %q", org, audit.PlatformChain)
				}
			}
			var sinceTime time.Time
			if since != "" {
				var err error
				if sinceTime, err = time.Parse(time.RFC3339, since); err != nil {
					return fmt.Errorf("invalid --since %q: use RFC 3339, such as 2026-01-02T15:04:05Z", since)
				}
			}
			st, log, err := openAuditLog(cmd, databaseFlag)
			if err != nil {
				return err
			}
			defer st.Close()

			w := bufio.NewWriter(cmd.OutOrStdout())
			enc := json.NewEncoder(w)
			err = log.Walk(cmd.Context(), func(e audit.Entry) error {
				if (org != "" && e.Chain != org) || e.Time.Before(sinceTime) {
					return nil
				}
				return enc.Encode(e)
			})
			if err != nil {
				return err
			}
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&databaseFlag, "database-url", "", "PostgreSQL connection URL (default: $GATEHOUSE_DATABASE_URL)")
	f.StringVar(&format, "format", "jsonl", "output format: jsonl")
	f.StringVar(&org, "org", "", "export only this org's chain, such as org:acme")
	f.StringVar(&since, "since", "", "export only entries written at or after this RFC 3339 time")
	return cmd
}
