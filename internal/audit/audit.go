// Package audit keeps Gatehouse's tamper-evident record of every change.
//
// Each change is recorded in two steps around the write it describes. An
// event entry (the intent: who, what, before → after, why, from where) comes
// before the write. An outcome entry (applied or failed, with the
// consistency token) comes after it. An event without an outcome means the process
// stopped between the two; Reconcile settles those. Listing shows an event
// once, joined with its outcome, and hides events whose write failed.
//
// Entries form one hash chain per org: each entry's hash covers its content
// and the previous entry's hash, so editing, deleting or reordering a stored
// entry breaks the chain at that entry, which Verify reports.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Kinds of entry.
const (
	KindEvent   = "event"
	KindOutcome = "outcome"
)

// Outcomes of a change.
const (
	// OutcomeApplied means the write succeeded.
	OutcomeApplied = "applied"
	// OutcomeFailed means the write was rejected or failed; nothing changed.
	OutcomeFailed = "failed"
	// OutcomeReconciledApplied means the process stopped before recording
	// the outcome and a later check of the state found the change in place.
	OutcomeReconciledApplied = "reconciled_applied"
	// OutcomeReconciledAbsent means the same, with the change not in place.
	OutcomeReconciledAbsent = "reconciled_absent"
	// OutcomeReconciledUnknown means the same, for a change whose effect
	// the reconciler cannot judge from the current state.
	OutcomeReconciledUnknown = "reconciled_unknown"
)

// PlatformChain is the chain of entries that belong to no org.
const PlatformChain = "platform"

// Actor is the principal that made a change.
type Actor struct {
	Principal string `json:"principal"`
	Issuer    string `json:"issuer,omitempty"`
	TokenID   string `json:"token_id,omitempty"`
}

// Entry is one record of the chain. Fields marked "set by Append" are
// filled in when the entry is stored.
type Entry struct {
	ID    string    `json:"id"`    // set by Append
	Chain string    `json:"chain"` // the org ("org:acme") or PlatformChain
	Seq   int64     `json:"seq"`   // set by Append: 1, 2, … within the chain
	Time  time.Time `json:"time"`  // set by Append, microsecond precision
	Kind  string    `json:"kind"`

	// Event fields.
	Actor            Actor             `json:"actor"`
	OnBehalfOf       string            `json:"on_behalf_of,omitempty"`
	Action           string            `json:"action,omitempty"`
	Resource         string            `json:"resource,omitempty"`
	Subject          string            `json:"subject,omitempty"`
	Before           map[string]string `json:"before,omitempty"`
	After            map[string]string `json:"after,omitempty"`
	Reason           string            `json:"reason,omitempty"`
	ClientIP         string            `json:"client_ip,omitempty"`
	UserAgent        string            `json:"user_agent,omitempty"`
	RequestID        string            `json:"request_id,omitempty"`
	BreakGlass       bool              `json:"break_glass,omitempty"`
	ConsistencyToken string            `json:"consistency_token,omitempty"`

	// Outcome fields.
	EventID string `json:"event_id,omitempty"`
	Outcome string `json:"outcome,omitempty"`

	PrevHash string `json:"prev_hash"` // set by Append
	Hash     string `json:"hash"`      // set by Append

	// Position orders all entries of the log, across chains, in the order
	// they were stored; set by Append. It is not part of the hash, because
	// the log assigns it as the entry is stored.
	Position int64 `json:"-"`
}

// Event is an event entry joined with its outcome, as callers see it: Outcome
// and Entry.ConsistencyToken come from the outcome entry, and Outcome is
// empty while the change is under way.
type Event struct {
	Entry
	Outcome string `json:"outcome"`
}

// ComputeHash returns the hex SHA-256 of e's content, which includes
// PrevHash and excludes Hash.
func ComputeHash(e Entry) string {
	e.Hash = ""
	e.Time = e.Time.UTC()
	content, err := json.Marshal(e)
	if err != nil {
		// Entry holds only strings, numbers, maps of strings and a time,
		// which always marshal.
		panic(fmt.Sprintf("audit: marshal entry: %v", err))
	}
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])
}

// ErrNotFound means no entry matched.
var ErrNotFound = errors.New("audit entry not found")

// Filter selects events for List. Zero fields do not filter.
type Filter struct {
	// Chains limits the result to these chains; nil means all chains.
	Chains   []string
	Resource string
	Actor    string
	Action   string
	Since    time.Time
	Until    time.Time

	// After continues after the event at this Position (a page token).
	After int64
	Limit int
}

// Log stores entries. Implementations are safe for concurrent use.
type Log interface {
	// Append stores e at the end of its chain, setting ID, Seq, Time,
	// PrevHash and Hash, and returns the stored entry.
	Append(ctx context.Context, e Entry) (Entry, error)

	// List returns events that match f in order of Position, joined with
	// their outcomes, leaving out events whose outcome is failed.
	List(ctx context.Context, f Filter) ([]Event, error)

	// Walk calls fn with every entry of every chain, each chain in order of
	// Seq. It stops at the first error fn returns.
	Walk(ctx context.Context, fn func(Entry) error) error

	// Unsettled returns events older than before that have no outcome.
	Unsettled(ctx context.Context, before time.Time) ([]Entry, error)

	// Heads returns the last sequence number and hash of every chain, as
	// recorded separately from the entries, so that Verify notices entries
	// deleted from the end of a chain.
	Heads(ctx context.Context) (map[string]Head, error)
}

// Head is the recorded end of a chain.
type Head struct {
	Seq  int64
	Hash string
}
