package engine

import (
	"reflect"
	"testing"
	"time"

	core "github.com/authzed/spicedb/pkg/proto/core/v1"
	"github.com/authzed/spicedb/pkg/tuple"
)

func TestPackRowsKeepsEveryPart(t *testing.T) {
	expires := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	caveated := tuple.MustParse("document:d1#viewer@user:carol")
	caveated.OptionalCaveat = &core.ContextualizedCaveat{CaveatName: "on_weekdays"}
	integrity := tuple.MustParse("document:d1#viewer@user:dave")
	integrity.OptionalIntegrity = &core.RelationshipIntegrity{KeyId: "k1", Hash: []byte{1, 2}}
	// An empty subject id is not valid, but the set must not depend on it.
	emptyID := tuple.MustParse("document:d1#viewer@user:x")
	emptyID.Subject.ObjectID = ""
	rels := []tuple.Relationship{
		tuple.MustParse("document:d1#viewer@user:alice"),
		tuple.MustWithExpiration(tuple.MustParse("document:d1#editor@group:g1#member"), expires),
		caveated,
		integrity,
		// A row of another object: a set normally holds one object, but
		// nothing depends on it.
		tuple.MustParse("project:p9#parent@workspace:w1"),
		emptyID,
	}
	set, ok := packRows(rels)
	if !ok {
		t.Fatal("packRows rejected a small set")
	}
	if set.len() != len(rels) {
		t.Fatalf("len = %d, want %d", set.len(), len(rels))
	}
	table := names.all()
	for i, want := range rels {
		got := set.at(i, table)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("row %d = %+v, want %+v", i, got, want)
		}
	}
	if len(set.extras) != 3 {
		t.Errorf("extras = %d, want 3 (expiration, caveat, integrity)", len(set.extras))
	}
	// d1 is stored once for its first four rows, then again after p9's.
	if want := len("d1" + "alice" + "g1" + "carol" + "dave" + "p9" + "w1" + "d1"); len(set.ids) != want {
		t.Errorf("ids hold %d bytes (%q), want %d", len(set.ids), set.ids, want)
	}

	empty, ok := packRows(nil)
	if !ok || empty.len() != 0 {
		t.Errorf("packRows(nil) = %d rows, %v; want an empty set", empty.len(), ok)
	}
}

// The point of a rowSet is that the garbage collector does not scan its
// rows or its ids, so they must hold no pointers.
func TestPackedRowsHoldNoPointers(t *testing.T) {
	var check func(reflect.Type)
	check = func(typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Struct:
			for i := range typ.NumField() {
				check(typ.Field(i).Type)
			}
		case reflect.Array:
			check(typ.Elem())
		case reflect.Bool, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int,
			reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		default:
			t.Errorf("packedRow holds a %s, which the garbage collector scans", typ)
		}
	}
	check(reflect.TypeFor[packedRow]())
}

func TestNameTableKeepsIndexes(t *testing.T) {
	var table nameTable
	a, okA := table.id("document")
	b, okB := table.id("viewer")
	again, okAgain := table.id("document")
	if !okA || !okB || !okAgain {
		t.Fatal("a new table rejected a name")
	}
	if a == b || again != a {
		t.Fatalf("indexes: document %d, viewer %d, document again %d", a, b, again)
	}
	if all := table.all(); all[a] != "document" || all[b] != "viewer" {
		t.Fatalf("table = %q", all)
	}
	for i := len(table.all()); i < maxNames; i++ {
		if _, ok := table.id(string(rune('a'+i%26)) + time.Duration(i).String()); !ok {
			t.Fatalf("the table rejected name %d of %d", i, maxNames)
		}
	}
	if _, ok := table.id("one-too-many"); ok {
		t.Fatal("a full table accepted a new name")
	}
	if i, ok := table.id("viewer"); !ok || i != b {
		t.Fatalf("a full table lost viewer: %d, %v", i, ok)
	}
}

// Names added while other goroutines read the table keep their indexes
// for every reader. Run with -race.
func TestNameTableConcurrentReaders(t *testing.T) {
	var table nameTable
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			table.id(time.Duration(i).String())
		}
	}()
	for range 200 {
		all := table.all()
		for i, name := range all {
			if got, _ := table.id(name); int(got) != i {
				t.Fatalf("%q is at %d, its index is %d", name, i, got)
			}
		}
	}
	<-done
	if n := len(table.all()); n != 2000 {
		t.Fatalf("table holds %d names, want 2000", n)
	}
}
