package schema_test

import (
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	core "github.com/authzed/spicedb/pkg/proto/core/v1"
	"github.com/authzed/spicedb/pkg/schemadsl/compiler"
	"github.com/authzed/spicedb/pkg/schemadsl/input"

	"github.com/gatehouse-authz/gatehouse/schema"
)

// referenceFile is the schema written one level at a time, relative to this
// package.
const referenceFile = "testdata/reference.zed"

// definitions maps each definition of a compiled schema to its relations
// and permissions by name.
type definitions map[string]map[string]*core.Relation

func compileDefinitions(t *testing.T, name, text string) definitions {
	t.Helper()
	compiled, err := compiler.Compile(
		compiler.InputSchema{Source: input.Source(name), SchemaString: text},
		compiler.AllowUnprefixedObjectType(),
	)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	defs := make(definitions)
	for _, def := range compiled.ObjectDefinitions {
		rels := make(map[string]*core.Relation)
		for _, rel := range def.GetRelation() {
			rels[rel.GetName()] = rel
		}
		defs[def.GetName()] = rels
	}
	return defs
}

// paths returns every way that typ#name can admit a subject, as a sorted
// list of relation paths such as "document#project->project#viewer": the
// last relation holds the subject, and each relation before it is followed
// to the objects it names. The schema's permissions are unions, so a
// permission admits exactly the subjects that one of its paths admits, and
// two permissions with the same paths admit the same users, services and
// group members whatever the relationships. (A subject that names a
// permission, which the API rejects, also counts as a member of each
// permission a check passes through, so it may differ.) It fails the test
// on a rewrite other than a union.
func (d definitions) paths(t *testing.T, typ, name string) []string {
	t.Helper()
	set := make(map[string]bool)
	d.collect(t, typ, name, "", set)
	return slices.Sorted(maps.Keys(set))
}

func (d definitions) collect(t *testing.T, typ, name, prefix string, into map[string]bool) {
	t.Helper()
	rel, ok := d[typ][name]
	if !ok {
		t.Fatalf("%s has no relation or permission %q", typ, name)
	}
	rewrite := rel.GetUsersetRewrite()
	if rewrite == nil {
		into[prefix+typ+"#"+name] = true
		return
	}
	if rewrite.GetUnion() == nil {
		t.Fatalf("%s#%s: only unions are supported here", typ, name)
	}
	for _, child := range rewrite.GetUnion().GetChild() {
		_, isNil := child.GetChildType().(*core.SetOperation_Child_XNil)
		switch {
		case isNil:
		case child.GetComputedUserset() != nil:
			d.collect(t, typ, child.GetComputedUserset().GetRelation(), prefix, into)
		case child.GetTupleToUserset() != nil:
			arrow := child.GetTupleToUserset()
			via := arrow.GetTupleset().GetRelation()
			targets := d[typ][via].GetTypeInformation().GetAllowedDirectRelations()
			if len(targets) == 0 {
				t.Fatalf("%s#%s: arrow over %s, which names no types", typ, name, via)
			}
			for _, target := range targets {
				d.collect(t, target.GetNamespace(), arrow.GetComputedUserset().GetRelation(),
					prefix+typ+"#"+via+"->", into)
			}
		default:
			t.Fatalf("%s#%s: unsupported union child %v", typ, name, child)
		}
	}
}

// TestSchemaMatchesReference checks that the schema admits the same subjects
// as the reference schema, permission by permission, and that the two
// define the same relations with the same subject types. The schema's
// permissions skip the steps that the reference takes one at a time (view
// includes edit, which includes manage), so SpiceDB dispatches fewer
// subproblems per check.
func TestSchemaMatchesReference(t *testing.T) {
	reference, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatalf("read reference schema: %v", err)
	}
	want := compileDefinitions(t, referenceFile, string(reference))
	got := compileDefinitions(t, schemaFileName, schema.Text)

	if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)); !slices.Equal(g, w) {
		t.Fatalf("definitions = %v, reference has %v", g, w)
	}
	compared := 0
	for typ, wantRels := range want {
		if g, w := slices.Sorted(maps.Keys(got[typ])), slices.Sorted(maps.Keys(wantRels)); !slices.Equal(g, w) {
			t.Errorf("%s: relations and permissions = %v, reference has %v", typ, g, w)
			continue
		}
		for name, wantRel := range wantRels {
			gotRel := got[typ][name]
			if (wantRel.GetUsersetRewrite() == nil) != (gotRel.GetUsersetRewrite() == nil) {
				t.Errorf("%s#%s: relation in one schema, permission in the other", typ, name)
				continue
			}
			if wantRel.GetUsersetRewrite() == nil {
				if g, w := allowedTypes(gotRel), allowedTypes(wantRel); g != w {
					t.Errorf("%s#%s: subject types %s, reference has %s", typ, name, g, w)
				}
				continue
			}
			g, w := got.paths(t, typ, name), want.paths(t, typ, name)
			if !slices.Equal(g, w) {
				t.Errorf("%s#%s admits subjects through\n  %s\nthe reference through\n  %s",
					typ, name, strings.Join(g, "\n  "), strings.Join(w, "\n  "))
			}
			compared++
		}
	}
	if compared < 30 {
		t.Errorf("compared %d permissions, want every permission of the schema", compared)
	}
}

// allowedTypes renders a relation's allowed subject types in order,
// without their places in the schema's text.
func allowedTypes(rel *core.Relation) string {
	var types []string
	for _, allowed := range rel.GetTypeInformation().GetAllowedDirectRelations() {
		typ := allowed.GetNamespace() + "#" + allowed.GetRelation()
		if allowed.GetPublicWildcard() != nil {
			typ = allowed.GetNamespace() + ":*"
		}
		if caveat := allowed.GetRequiredCaveat(); caveat != nil {
			typ += " with " + caveat.GetCaveatName()
		}
		if allowed.GetRequiredExpiration() != nil {
			typ += " with expiration"
		}
		types = append(types, typ)
	}
	slices.Sort(types)
	return strings.Join(types, "; ")
}
