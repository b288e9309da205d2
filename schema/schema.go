// Package schema embeds the SpiceDB schema of Gatehouse's tenancy model.
package schema

import _ "embed"

// Text is the SpiceDB schema that Gatehouse writes at start-up.
//
//go:embed gatehouse.zed
var Text string
