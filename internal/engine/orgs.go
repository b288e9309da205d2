package engine

import (
	"context"
	"sync"

	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/datastore/options"
	"google.golang.org/protobuf/types/known/structpb"
)

// metadataOrg is the key of SpiceDB's transaction metadata under which
// Gatehouse records the org that a write changes.
const metadataOrg = "gatehouse_org"

// orgWriteKey is the context key of the org set by ForOrg.
type orgWriteKey struct{}

// ForOrg returns a context whose writes through the engine are recorded as
// changing only the relationships of org (an org ID): those whose resource
// is org itself or belongs to it, groups included. The result cache then
// keeps every other org's results. A write without an org changes every
// org's state.
//
// The caller must be sure of it. A write recorded under the wrong org
// leaves stale results cached for the org it changed. A role on a resource
// belongs to the resource's org, and so does a group's membership, since
// roles never name a group of another org. Writes to the platform, or of
// anything that could reach another org, must not use ForOrg.
func ForOrg(ctx context.Context, org string) context.Context {
	return context.WithValue(ctx, orgWriteKey{}, org)
}

// writeMetadata returns the transaction metadata of a write made with ctx.
func writeMetadata(ctx context.Context) *structpb.Struct {
	org, _ := ctx.Value(orgWriteKey{}).(string)
	if org == "" {
		return nil
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{metadataOrg: structpb.NewStringValue(org)}}
}

// orgOfMetadata returns the org recorded in a transaction's metadata, or ""
// for none.
func orgOfMetadata(m *structpb.Struct) string {
	return m.GetFields()[metadataOrg].GetStringValue()
}

// writeCounts counts the writes to an in-memory datastore, by org.
type writeCounts struct {
	mu     sync.Mutex
	global uint64 // writes of no org
	orgs   map[string]uint64
}

func newWriteCounts() *writeCounts { return &writeCounts{orgs: make(map[string]uint64)} }

func (c *writeCounts) add(org string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if org == "" {
		c.global++
		return
	}
	c.orgs[org]++
}

// of returns the count of writes of no org and of writes to org.
func (c *writeCounts) of(org string) (global, count uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.global, c.orgs[org]
}

// countingDatastore counts every write transaction by the org in its
// metadata, once it has ended. A transaction that fails counts too: it may
// have committed before the error.
type countingDatastore struct {
	datastore.Datastore
	counts *writeCounts
}

func (d countingDatastore) ReadWriteTx(ctx context.Context, f datastore.TxUserFunc, opts ...options.RWTOptionsOption) (datastore.Revision, error) {
	rev, err := d.Datastore.ReadWriteTx(ctx, f, opts...)
	d.counts.add(orgOfMetadata(options.NewRWTOptionsWithOptions(opts...).Metadata))
	return rev, err
}

// Unwrap returns the datastore that d counts the writes of.
func (d countingDatastore) Unwrap() datastore.Datastore { return d.Datastore }
