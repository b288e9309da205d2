package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gatehouse-authz/gatehouse/internal/tokens"
)

func newKeysCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the signing keys of Gatehouse's own tokens in PostgreSQL",
	}
	cmd.AddCommand(newKeysRotateCommand())
	return cmd
}

func newKeysRotateCommand() *cobra.Command {
	var databaseFlag string
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new signing key active and retire the current one",
		Long: `Make a new signing key active and retire the current one.

New tokens are signed with the new key at once. The retired key stays in
/.well-known/jwks.json until every token it signed has expired (one token
lifetime), so no token stops working because of a rotation. Instances pick up
the new key within 30 seconds, or at once when they meet its key id.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := openAuditLog(cmd, databaseFlag)
			if err != nil {
				return err
			}
			defer st.Close()

			key, err := tokens.NewPostgresKeys(st.Pool).Rotate(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new signing key %s is active\n", key.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&databaseFlag, "database-url", "", "PostgreSQL connection URL (default: $GATEHOUSE_DATABASE_URL)")
	return cmd
}
