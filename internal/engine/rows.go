package engine

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/authzed/spicedb/pkg/proto/core/v1"
	"github.com/authzed/spicedb/pkg/tuple"
)

// The read cache holds hundreds of thousands of relationships on a large
// dataset. A tuple.Relationship value has six strings and three optional
// pointers, and the garbage collector follows each of them at every
// cycle. In one profile on 1M relationships, such rows were about a third
// of the live heap, and the collector's mark phases delayed requests.
// rowSet keeps an object's relationships in two allocations that hold no
// pointers, the ids as one string and the rest as fixed-size rows, so the
// collector no longer scans them. Type and relation names become indexes
// into one table of names. The rare relationship with a caveat, an
// expiration or integrity data keeps those pointers in a side list.

// maxNames bounds the name table. The names come from the schema's
// definitions, so a real schema stays far below it. Rows with a name past
// it are not cached.
const maxNames = math.MaxUint16

// names is the table of type and relation names that rows refer to. A
// name, once added, keeps its index for the life of the process.
var names nameTable

type nameTable struct {
	mu    sync.Mutex
	index map[string]uint16
	list  atomic.Pointer[[]string] // names are only ever appended
}

// id returns name's index, adding it when it is new. ok is false when the
// table is full.
func (t *nameTable) id(name string) (uint16, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.index[name]; ok {
		return i, true
	}
	var list []string
	if p := t.list.Load(); p != nil {
		list = *p
	}
	if len(list) >= maxNames {
		return 0, false
	}
	if t.index == nil {
		t.index = make(map[string]uint16)
	}
	// Readers see only the first len(list) names, so appending past them,
	// in place or not, changes nothing that a reader holds.
	i := uint16(len(list))
	grown := append(list, name)
	t.index[name] = i
	t.list.Store(&grown)
	return i, true
}

// all returns the table as it is now. Every index that a stored row holds
// is in it.
func (t *nameTable) all() []string {
	if p := t.list.Load(); p != nil {
		return *p
	}
	return nil
}

// span is a substring of a rowSet's ids.
type span struct{ start, end uint32 }

// packedRow is one relationship without pointers.
type packedRow struct {
	resourceType, resourceRelation uint16
	subjectType, subjectRelation   uint16
	resourceID, subjectID          span
	extra                          int32 // index in rowSet.extras, or -1
}

// rowExtra holds a relationship's optional parts.
type rowExtra struct {
	caveat     *core.ContextualizedCaveat
	expiration *time.Time
	integrity  *core.RelationshipIntegrity
}

// rowSet is the relationships of one object, or of one relation of it, at
// one revision. Its contents never change once made.
type rowSet struct {
	ids    string
	rows   []packedRow
	extras []rowExtra
}

// packRows returns rels as a rowSet. ok is false when the name table is
// full or the ids take more than 4 GiB.
func packRows(rels []tuple.Relationship) (set *rowSet, ok bool) {
	size := 0
	for _, rel := range rels {
		size += len(rel.Resource.ObjectID) + len(rel.Subject.ObjectID)
	}
	if size > math.MaxUint32 {
		return nil, false
	}

	ids := make([]byte, 0, size)
	set = &rowSet{rows: make([]packedRow, len(rels))}
	add := func(id string) span {
		start := uint32(len(ids))
		ids = append(ids, id...)
		return span{start, uint32(len(ids))}
	}

	// The rows of one object share its id, which is stored once.
	var last span
	lastID := ""
	for i, rel := range rels {
		row := &set.rows[i]
		var okNames [4]bool
		row.resourceType, okNames[0] = names.id(rel.Resource.ObjectType)
		row.resourceRelation, okNames[1] = names.id(rel.Resource.Relation)
		row.subjectType, okNames[2] = names.id(rel.Subject.ObjectType)
		row.subjectRelation, okNames[3] = names.id(rel.Subject.Relation)
		if okNames != [4]bool{true, true, true, true} {
			return nil, false
		}

		if i == 0 || rel.Resource.ObjectID != lastID {
			last, lastID = add(rel.Resource.ObjectID), rel.Resource.ObjectID
		}
		row.resourceID = last
		row.subjectID = add(rel.Subject.ObjectID)
		row.extra = -1

		if rel.OptionalCaveat != nil || rel.OptionalExpiration != nil || rel.OptionalIntegrity != nil {
			row.extra = int32(len(set.extras))
			set.extras = append(set.extras, rowExtra{
				caveat: rel.OptionalCaveat, expiration: rel.OptionalExpiration, integrity: rel.OptionalIntegrity,
			})
		}
	}

	set.ids = string(ids)
	return set, true
}

// len returns the number of relationships in s.
func (s *rowSet) len() int { return len(s.rows) }

// at returns the i-th relationship of s. Its strings share s's memory, and
// its pointers are shared with every other caller: do not modify them.
func (s *rowSet) at(i int, table []string) tuple.Relationship {
	row := s.rows[i]
	rel := tuple.Relationship{RelationshipReference: tuple.RelationshipReference{
		Resource: tuple.ObjectAndRelation{
			ObjectType: table[row.resourceType],
			ObjectID:   s.ids[row.resourceID.start:row.resourceID.end],
			Relation:   table[row.resourceRelation],
		},
		Subject: tuple.ObjectAndRelation{
			ObjectType: table[row.subjectType],
			ObjectID:   s.ids[row.subjectID.start:row.subjectID.end],
			Relation:   table[row.subjectRelation],
		},
	}}
	if row.extra >= 0 {
		extra := s.extras[row.extra]
		rel.OptionalCaveat, rel.OptionalExpiration, rel.OptionalIntegrity = extra.caveat, extra.expiration, extra.integrity
	}
	return rel
}

// weight estimates the bytes that s holds.
func (s *rowSet) weight() int {
	const rowSize, extraSize, header = 28, 24, 80
	return header + len(s.ids) + rowSize*len(s.rows) + extraSize*len(s.extras)
}
