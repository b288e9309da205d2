package engine

import (
	"context"
	"sync"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/authzed/spicedb/pkg/datastore/options"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse-authz/gatehouse/internal/object"
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
//
// A write that may remove or replace a resource's link to its parent is
// recorded under no org, whatever org ctx carries, because that can move a
// resource out of its org (see verifiedOrg). A link written with CREATE must be the
// new resource's first, as Gatehouse's own create makes sure with a
// precondition.
func ForOrg(ctx context.Context, org string) context.Context {
	return context.WithValue(ctx, orgWriteKey{}, org)
}

// writeMetadata returns the transaction metadata of a write made with ctx.
// movesResources reports whether the write may remove a parent link.
func writeMetadata(ctx context.Context, movesResources bool) *structpb.Struct {
	org, _ := ctx.Value(orgWriteKey{}).(string)
	if org == "" || movesResources {
		return nil
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{metadataOrg: structpb.NewStringValue(org)}}
}

// parentTypes are the types that a parent link may name.
var parentTypes = map[string]bool{
	object.TypeOrg: true, object.TypeWorkspace: true, object.TypeProject: true, object.TypePlatform: true,
}

// isParentLink reports whether relation of resourceType may be a link to
// a parent; for any type when resourceType is empty.
func isParentLink(resourceType, relation string) bool {
	if resourceType == "" {
		return relation == "" || relation == "org" || relation == "workspace" || relation == "project" || relation == "platform"
	}
	parent := object.ParentRelation(resourceType)
	return parent != "" && (relation == "" || relation == parent)
}

// updatesMoveResources reports whether updates may remove or replace a
// parent link.
func updatesMoveResources(updates []*v1.RelationshipUpdate) bool {
	for _, u := range updates {
		rel := u.GetRelationship()
		if u.GetOperation() != v1.RelationshipUpdate_OPERATION_CREATE &&
			isParentLink(rel.GetResource().GetObjectType(), rel.GetRelation()) {
			return true
		}
	}
	return false
}

// filterMovesResources reports whether deleting what filter matches may
// remove a parent link.
func filterMovesResources(filter *v1.RelationshipFilter) bool {
	if subjectType := filter.GetOptionalSubjectFilter().GetSubjectType(); subjectType != "" && !parentTypes[subjectType] {
		return false
	}
	return isParentLink(filter.GetResourceType(), filter.GetOptionalRelation())
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
