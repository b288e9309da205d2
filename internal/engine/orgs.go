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

// metadataOrg and metadataSubject are the keys of SpiceDB's transaction
// metadata under which Gatehouse records the org that a write changes and,
// when the write changes the check results of one subject only, that
// subject.
const (
	metadataOrg     = "gatehouse_org"
	metadataSubject = "gatehouse_subject"
)

// orgWriteKey and subjectWriteKey are the context keys set by ForOrg and
// ForSubject.
type (
	orgWriteKey     struct{}
	subjectWriteKey struct{}
)

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
//
// Within its org, a write whose relationships all name one principal (a
// user or a service, without a relation) as their subject is also recorded
// under that principal. Principals have no relations in the schema, so no
// relationship or arrow leads from one to anything else, and such a write
// changes that principal's check results only (TestPrincipalsHaveNoRelations
// in package schema fails if the schema stops saying so). The results of
// the org's other subjects then stay cached.
func ForOrg(ctx context.Context, org string) context.Context {
	return context.WithValue(ctx, orgWriteKey{}, org)
}

// ForSubject returns a context whose writes may also name grant holders
// (grant:G#holder) and still be recorded under subject. The caller vouches
// that subject is the only holder of each grant named, as it is for every
// grant that Gatehouse creates. The write must also write or delete each
// such grant's holder relationship naming subject, as Gatehouse does when
// a grant starts and ends, and every other relationship of the write must
// name subject itself. It has no effect without ForOrg, or when subject is
// not a principal.
func ForSubject(ctx context.Context, subject object.Ref) context.Context {
	return context.WithValue(ctx, subjectWriteKey{}, subject)
}

// grantType and grantHolderRel name the userset of a grant's holders.
const (
	grantType      = "grant"
	grantHolderRel = "holder"
)

// writeMetadata returns the transaction metadata of a write made with ctx.
// movesResources reports whether the write may remove a parent link, and
// subject is the only subject whose check results the write changes, or ""
// (see updatesSubject).
func writeMetadata(ctx context.Context, movesResources bool, subject string) *structpb.Struct {
	org, _ := ctx.Value(orgWriteKey{}).(string)
	if org == "" || movesResources {
		return nil
	}
	fields := map[string]*structpb.Value{metadataOrg: structpb.NewStringValue(org)}
	if subject != "" {
		fields[metadataSubject] = structpb.NewStringValue(subject)
	}
	return &structpb.Struct{Fields: fields}
}

// updatesSubject returns the only subject, as "type:id", whose check
// results updates can change, or "" if they may change other subjects'
// results. That is a user or a service named without a relation by every
// update, or, with ForSubject, by every update that does not name a
// grant's holders.
func updatesSubject(ctx context.Context, updates []*v1.RelationshipUpdate) string {
	vouched, _ := ctx.Value(subjectWriteKey{}).(object.Ref)
	var subject object.Ref
	grantsNamed := map[string]bool{} // grants whose holders the write names
	grantsHeld := map[string]bool{}  // grants whose holder it writes
	for _, u := range updates {
		rel := u.GetRelationship()
		s := rel.GetSubject()
		ref := object.Ref{Type: s.GetObject().GetObjectType(), ID: s.GetObject().GetObjectId()}
		if vouched.Type != "" && ref.Type == grantType && s.GetOptionalRelation() == grantHolderRel {
			grantsNamed[ref.ID] = true
			ref = vouched
		} else if s.GetOptionalRelation() != "" {
			return ""
		}
		if !ref.IsPrincipal() || ref.ID == "" || ref.ID == "*" || (subject.Type != "" && ref != subject) {
			return ""
		}
		if rel.GetResource().GetObjectType() == grantType && rel.GetRelation() == grantHolderRel {
			grantsHeld[rel.GetResource().GetObjectId()] = true
		}
		subject = ref
	}
	for grant := range grantsNamed {
		if !grantsHeld[grant] {
			return ""
		}
	}
	if subject.Type == "" {
		return ""
	}
	return subject.String()
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

// subjectOfMetadata returns the subject recorded in a transaction's
// metadata, or "" for none.
func subjectOfMetadata(m *structpb.Struct) string {
	return m.GetFields()[metadataSubject].GetStringValue()
}

// orgSubject is one subject in one org.
type orgSubject struct{ org, subject string }

// writeCounts counts the writes to an in-memory datastore, by org, and
// within an org by the subject they were recorded under.
//
// Each write also gets a sequence number, and each count remembers the
// number of its last write, so that a pin can tell whether a state has
// changed since the pin was read (see writtenSince).
type writeCounts struct {
	mu       sync.Mutex
	global   uint64                // writes of no org
	orgs     map[string]uint64     // every write of an org
	wide     map[string]uint64     // writes of an org and of no one subject
	subjects map[orgSubject]uint64 // writes of one subject in an org

	seq uint64 // the number of writes counted, of any org or of none
	// lastOrg, lastWide and lastSubject are the sequence numbers of the
	// last write counted in orgs, wide and subjects.
	lastOrg     map[string]uint64
	lastWide    map[string]uint64
	lastSubject map[orgSubject]uint64
}

func newWriteCounts() *writeCounts {
	return &writeCounts{
		orgs: make(map[string]uint64), wide: make(map[string]uint64), subjects: make(map[orgSubject]uint64),
		lastOrg: make(map[string]uint64), lastWide: make(map[string]uint64), lastSubject: make(map[orgSubject]uint64),
	}
}

func (c *writeCounts) add(org, subject string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	switch {
	case org == "":
		c.global++
		return
	case subject == "":
		c.wide[org]++
		c.lastWide[org] = c.seq
	default:
		key := orgSubject{org, subject}
		c.subjects[key]++
		c.lastSubject[key] = c.seq
	}
	c.orgs[org]++
	c.lastOrg[org] = c.seq
}

// written returns the number of writes counted so far. Writes are counted
// once they have ended, so a revision read after this call contains each
// of them.
func (c *writeCounts) written() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// writtenSince reports whether a write counted after the first n changed
// org's state: every write of org, or for a subject, the writes of org
// that name no one subject and those recorded under subject. It ignores
// writes of no org.
func (c *writeCounts) writtenSince(n uint64, org, subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if subject == "" {
		return c.lastOrg[org] > n
	}
	return c.lastWide[org] > n || c.lastSubject[orgSubject{org, subject}] > n
}

// of returns the count of writes of no org and of writes to org.
func (c *writeCounts) of(org string) (global, count uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.global, c.orgs[org]
}

// ofSubject returns the count of writes to org of no one subject and of
// writes to org recorded under subject.
func (c *writeCounts) ofSubject(org, subject string) (wide, count uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wide[org], c.subjects[orgSubject{org, subject}]
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
	metadata := options.NewRWTOptionsWithOptions(opts...).Metadata
	d.counts.add(orgOfMetadata(metadata), subjectOfMetadata(metadata))
	return rev, err
}

// Unwrap returns the datastore that d counts the writes of.
func (d countingDatastore) Unwrap() datastore.Datastore { return d.Datastore }
