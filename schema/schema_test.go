package schema_test

import (
	"os"
	"path"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/authzed/spicedb/pkg/development"
	core "github.com/authzed/spicedb/pkg/proto/core/v1"
	devinterface "github.com/authzed/spicedb/pkg/proto/developer/v1"
	spiceschema "github.com/authzed/spicedb/pkg/schema"
	"github.com/authzed/spicedb/pkg/schemadsl/compiler"
	"github.com/authzed/spicedb/pkg/schemadsl/input"
	"github.com/authzed/spicedb/pkg/validationfile"

	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/schema"
)

// validationFile is the SpiceDB validation file, relative to this package.
const validationFile = "testdata/gatehouse.validation.yaml"

// schemaFileName is the name SpiceDB's errors give the embedded schema.
const schemaFileName = "gatehouse.zed"

// compileSchema compiles the embedded schema the way SpiceDB's WriteSchema
// does, failing the test with the compiler's error.
func compileSchema(t *testing.T) *compiler.CompiledSchema {
	t.Helper()
	compiled, err := compiler.Compile(
		compiler.InputSchema{Source: input.Source(schemaFileName), SchemaString: schema.Text},
		compiler.AllowUnprefixedObjectType(),
	)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaFileName, err)
	}
	return compiled
}

func TestSchemaCompiles(t *testing.T) {
	compiled := compileSchema(t)

	// Compiling checks syntax only. The type system also checks that every
	// relation, arrow and subject type names something that exists.
	types := spiceschema.NewTypeSystem(spiceschema.ResolverForCompiledSchema(compiled))
	var names []string
	for _, def := range compiled.ObjectDefinitions {
		names = append(names, def.GetName())
		if _, err := types.GetValidatedDefinition(t.Context(), def.GetName()); err != nil {
			t.Errorf("definition %q is invalid: %v", def.GetName(), err)
		}
	}

	for _, want := range []string{"user", "service", "platform", "link", "group", "org", "workspace", "project", "document"} {
		if !slices.Contains(names, want) {
			t.Errorf("schema has no definition %q, got %v", want, names)
		}
	}
}

// TestValidationFile runs the assertions and expected relations of
// testdata/gatehouse.validation.yaml with SpiceDB's development package,
// the code behind `zed validate` and the Playground.
func TestValidationFile(t *testing.T) {
	contents, err := os.ReadFile(validationFile)
	if err != nil {
		t.Fatalf("read validation file: %v", err)
	}
	parsed, err := validationfile.DecodeValidationFile(contents)
	if err != nil {
		t.Fatalf("parse %s: %v", validationFile, err)
	}

	// zed resolves schemaFile against the validation file's folder. The test
	// requires it to name the embedded schema, so that it validates exactly
	// what Gatehouse writes to SpiceDB.
	if got := path.Join(path.Dir(validationFile), parsed.SchemaFile); got != schemaFileName {
		t.Fatalf("%s: schemaFile %q resolves to %q, want %q", validationFile, parsed.SchemaFile, got, schemaFileName)
	}
	parsed.SchemaFile = schemaFileName
	sources := fstest.MapFS{schemaFileName: {Data: []byte(schema.Text)}}

	if len(parsed.Assertions.AssertTrue) == 0 || len(parsed.Assertions.AssertFalse) == 0 {
		t.Fatalf("%s: assertTrue and assertFalse must both be non-empty", validationFile)
	}
	if len(parsed.ExpectedRelations.ValidationMap) == 0 {
		t.Fatalf("%s: the validation block is empty", validationFile)
	}

	dev, inputErrs, err := development.NewDevContextForValidationFile(t.Context(), parsed, development.WithSourceFS(sources))
	if err != nil {
		t.Fatalf("load %s: %v", validationFile, err)
	}
	if inputErrs != nil {
		reportDeveloperErrors(t, "load", inputErrs.GetInputErrors())
		t.FailNow()
	}
	t.Cleanup(dev.DevContext.Dispose)

	t.Run("assertions", func(t *testing.T) {
		failures, err := development.RunAllAssertions(dev.DevContext, &dev.Assertions)
		if err != nil {
			t.Fatalf("run assertions: %v", err)
		}
		reportDeveloperErrors(t, "assertion", failures)
	})

	t.Run("expected_relations", func(t *testing.T) {
		_, failures, err := development.RunValidation(dev.DevContext, &dev.ExpectedRelations)
		if err != nil {
			t.Fatalf("run validation: %v", err)
		}
		reportDeveloperErrors(t, "expected relations", failures)
	})
}

// reportDeveloperErrors fails t once per error, with the line in the
// validation file that it points to.
func reportDeveloperErrors(t *testing.T, kind string, errs []*devinterface.DeveloperError) {
	t.Helper()
	for _, e := range errs {
		t.Errorf("%s:%d:%d: %s failed: %s (%s)", validationFile, e.GetLine(), e.GetColumn(), kind, e.GetMessage(), e.GetContext())
	}
}

// TestInspectFollowsTheTree checks that, for every resource type below the
// org, inspect is a union that includes the parent's inspect. So inspect on
// an org grants inspect on everything in it, which the check API relies on
// when it checks the caller's inspect on the org instead of the resource.
func TestInspectFollowsTheTree(t *testing.T) {
	compiled := compileSchema(t)
	for _, def := range compiled.ObjectDefinitions {
		if !object.IsResourceType(def.GetName()) || def.GetName() == object.TypeOrg {
			continue
		}
		parentRelation := object.ParentRelation(def.GetName())
		var inspect *core.Relation
		for _, rel := range def.GetRelation() {
			if rel.GetName() == "inspect" {
				inspect = rel
			}
		}
		if inspect == nil {
			t.Errorf("%s has no inspect permission", def.GetName())
			continue
		}
		found := false
		for _, child := range inspect.GetUsersetRewrite().GetUnion().GetChild() {
			arrow := child.GetTupleToUserset()
			if arrow.GetTupleset().GetRelation() == parentRelation && arrow.GetComputedUserset().GetRelation() == "inspect" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: inspect is not a union that includes %s->inspect", def.GetName(), parentRelation)
		}
	}
}

// TestPrincipalsHaveNoRelations checks that users and services have no
// relations and no permissions. Nothing then leads from a principal to
// anything else, so a relationship that names one as its subject changes
// that principal's check results only. The check result cache relies on
// this when it keeps the other subjects' results across such a write.
func TestPrincipalsHaveNoRelations(t *testing.T) {
	compiled := compileSchema(t)
	found := 0
	for _, def := range compiled.ObjectDefinitions {
		if !(object.Ref{Type: def.GetName()}).IsPrincipal() {
			continue
		}
		found++
		for _, rel := range def.GetRelation() {
			t.Errorf("principal type %s has relation or permission %q", def.GetName(), rel.GetName())
		}
	}
	if found != 2 {
		t.Errorf("schema defines %d principal types, want 2 (user and service)", found)
	}
}
