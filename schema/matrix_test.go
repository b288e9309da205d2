package schema_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/schema"
)

// permissionsDoc holds the role × permission table that this file tests.
const permissionsDoc = "../docs/permissions.md"

// Cell values of the table.
const (
	cellAllowed = "✓"
	cellDenied  = ""
	cellNever   = "—" // nobody holds the permission on the checked type
)

// Role labels of the table that are not "<type> <relation>".
const (
	labelApp         = "org app (service)"
	labelGroupViewer = "member of group holding workspace viewer"
)

// matrixColumns are the columns the table must have, in order.
var matrixColumns = []string{"role", "granted on", "checked on", "view", "edit", "delete", "share", "manage", "create"}

// levels lists, for each resource type, the types at which a role granted
// on it is checked: the type itself and every type below it.
var levels = map[string][]string{
	object.TypeOrg:       {object.TypeOrg, object.TypeWorkspace, object.TypeProject, object.TypeDocument, object.TypeGroup},
	object.TypeWorkspace: {object.TypeWorkspace, object.TypeProject, object.TypeDocument},
	object.TypeProject:   {object.TypeProject, object.TypeDocument},
	object.TypeDocument:  {object.TypeDocument},
	object.TypeGroup:     {object.TypeGroup},
}

// matrixRow is one row of the table.
type matrixRow struct {
	line      int
	role      string
	grantedOn string
	checkedOn string

	// cells maps each permission column to its cell value.
	cells map[string]string
}

// name is the row's subtest name prefix, such as "workspace_editor/document".
func (r matrixRow) name() string {
	label := strings.NewReplacer("(", "", ")", "").Replace(r.role)
	return strings.Join(strings.Fields(label), "_") + "/" + r.checkedOn
}

// readMatrix parses the role × permission table of permissionsDoc and
// returns its permission columns and rows.
func readMatrix(t *testing.T) ([]string, []matrixRow) {
	t.Helper()
	f, err := os.Open(permissionsDoc)
	if err != nil {
		t.Fatalf("open permissions doc: %v", err)
	}
	defer f.Close()

	var rows []matrixRow
	var inTable bool
	scanner := bufio.NewScanner(f)
	for line := 1; scanner.Scan(); line++ {
		cells, isRow := splitTableRow(scanner.Text())
		switch {
		case !inTable && isRow && slices.Equal(cells, matrixColumns):
			inTable = true
			scanner.Scan() // the |---| line under the header
			line++
		case inTable && !isRow:
			return matrixColumns[3:], rows
		case inTable:
			if len(cells) != len(matrixColumns) {
				t.Fatalf("%s:%d: row has %d cells, want %d", permissionsDoc, line, len(cells), len(matrixColumns))
			}
			row := matrixRow{line: line, role: cells[0], grantedOn: cells[1], checkedOn: cells[2], cells: map[string]string{}}
			for i, value := range cells[3:] {
				if value != cellAllowed && value != cellDenied && value != cellNever {
					t.Fatalf("%s:%d: cell %q is invalid, want %q, %q or empty", permissionsDoc, line, value, cellAllowed, cellNever)
				}
				row.cells[matrixColumns[3+i]] = value
			}
			rows = append(rows, row)
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatalf("read permissions doc: %v", err)
	}
	if !inTable {
		t.Fatalf("%s: no table with the header %q", permissionsDoc, "| "+strings.Join(matrixColumns, " | ")+" |")
	}
	return matrixColumns[3:], rows
}

// splitTableRow returns the trimmed cells of a Markdown table line, and
// false when the line is not part of a table.
func splitTableRow(line string) ([]string, bool) {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "|") || !strings.HasSuffix(line, "|") {
		return nil, false
	}
	cells := strings.Split(line[1:len(line)-1], "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells, true
}

// schemaRoles returns the table label of every role in the schema: each
// relation of a resource type that users or services can hold directly.
func schemaRoles(t *testing.T) map[string]string {
	t.Helper()
	roles := map[string]string{}
	for _, def := range compileSchema(t).ObjectDefinitions {
		if _, ok := levels[def.GetName()]; !ok {
			continue
		}
		for _, rel := range def.GetRelation() {
			for _, allowed := range rel.GetTypeInformation().GetAllowedDirectRelations() {
				if allowed.GetNamespace() == object.TypeUser || allowed.GetNamespace() == object.TypeService {
					roles[def.GetName()+" "+rel.GetName()] = def.GetName()
				}
			}
		}
	}
	roles[labelApp] = roles["org app"]
	delete(roles, "org app")
	return roles
}

// schemaPermissions returns the permissions of each resource type.
func schemaPermissions(t *testing.T) map[string][]string {
	t.Helper()
	perms := map[string][]string{}
	for _, def := range compileSchema(t).ObjectDefinitions {
		for _, rel := range def.GetRelation() {
			if rel.GetUsersetRewrite() != nil {
				perms[def.GetName()] = append(perms[def.GetName()], rel.GetName())
			}
		}
	}
	return perms
}

func TestMatrixCoversEveryRole(t *testing.T) {
	_, rows := readMatrix(t)

	type key struct{ role, grantedOn, checkedOn string }
	seen := map[key]int{}
	for _, row := range rows {
		k := key{row.role, row.grantedOn, row.checkedOn}
		if first, ok := seen[k]; ok {
			t.Errorf("%s:%d: row repeats line %d", permissionsDoc, row.line, first)
		}
		seen[k] = row.line
		if !slices.Contains(levels[row.grantedOn], row.checkedOn) {
			t.Errorf("%s:%d: %q is checked on %q, which is not %q or below it", permissionsDoc, row.line, row.role, row.checkedOn, row.grantedOn)
		}
	}

	roles := schemaRoles(t)
	roles[labelGroupViewer] = object.TypeWorkspace
	for role, grantedOn := range roles {
		for _, checkedOn := range levels[grantedOn] {
			if _, ok := seen[key{role, grantedOn, checkedOn}]; !ok {
				t.Errorf("%s: no row for %q granted on %s, checked on %s", permissionsDoc, role, grantedOn, checkedOn)
			}
		}
	}

	// "—" marks a permission that nobody holds on a type, so a column
	// shows it for every row checked on that type or for none.
	firstByColumn := map[string]matrixRow{}
	for _, row := range rows {
		for perm, value := range row.cells {
			k := row.checkedOn + " " + perm
			first, ok := firstByColumn[k]
			if !ok {
				firstByColumn[k] = row
				continue
			}
			if (first.cells[perm] == cellNever) != (value == cellNever) {
				t.Errorf("%s:%d: %s on %s is %q, but line %d has %q", permissionsDoc, row.line, perm, row.checkedOn, value, first.line, first.cells[perm])
			}
		}
	}
}

// tree is one org with a workspace, project, document and group in it.
type tree struct {
	org, workspace, project, document, group object.Ref
}

func newTree(org string) tree {
	return tree{
		org:       object.Ref{Type: object.TypeOrg, ID: org},
		workspace: object.Ref{Type: object.TypeWorkspace, ID: org + "-w1"},
		project:   object.Ref{Type: object.TypeProject, ID: org + "-p1"},
		document:  object.Ref{Type: object.TypeDocument, ID: org + "-d1"},
		group:     object.Ref{Type: object.TypeGroup, ID: org + "-g1"},
	}
}

// at returns the object of type level.
func (tr tree) at(level string) object.Ref {
	return map[string]object.Ref{
		object.TypeOrg:       tr.org,
		object.TypeWorkspace: tr.workspace,
		object.TypeProject:   tr.project,
		object.TypeDocument:  tr.document,
		object.TypeGroup:     tr.group,
	}[level]
}

// structure returns the parent relationships that create the tree.
func (tr tree) structure() []*v1.RelationshipUpdate {
	return []*v1.RelationshipUpdate{
		touch(tr.org, "platform", object.Ref{Type: object.TypePlatform, ID: "gatehouse"}, ""),
		touch(tr.workspace, "org", tr.org, ""),
		touch(tr.project, "workspace", tr.workspace, ""),
		touch(tr.document, "project", tr.project, ""),
		touch(tr.group, "org", tr.org, ""),
	}
}

func touch(resource object.Ref, relation string, subject object.Ref, subjectRelation string) *v1.RelationshipUpdate {
	return &v1.RelationshipUpdate{
		Operation: v1.RelationshipUpdate_OPERATION_TOUCH,
		Relationship: &v1.Relationship{
			Resource: &v1.ObjectReference{ObjectType: resource.Type, ObjectId: resource.ID},
			Relation: relation,
			Subject: &v1.SubjectReference{
				Object:           &v1.ObjectReference{ObjectType: subject.Type, ObjectId: subject.ID},
				OptionalRelation: subjectRelation,
			},
		},
	}
}

// grantRole returns the principal that holds row's role in tr and the
// relationships that grant it. id is the principal's id.
func grantRole(row matrixRow, tr tree, id string) (object.Ref, []*v1.RelationshipUpdate, error) {
	user := object.Ref{Type: object.TypeUser, ID: id}
	switch row.role {
	case labelApp:
		if row.grantedOn != object.TypeOrg {
			return object.Ref{}, nil, fmt.Errorf("%q is granted on %q, want org", row.role, row.grantedOn)
		}
		service := object.Ref{Type: object.TypeService, ID: id}
		return service, []*v1.RelationshipUpdate{touch(tr.org, "app", service, "")}, nil

	case labelGroupViewer:
		if row.grantedOn != object.TypeWorkspace {
			return object.Ref{}, nil, fmt.Errorf("%q is granted on %q, want workspace", row.role, row.grantedOn)
		}
		return user, []*v1.RelationshipUpdate{
			touch(tr.group, "member", user, ""),
			touch(tr.workspace, "viewer", tr.group, "member"),
		}, nil
	}

	resourceType, relation, ok := strings.Cut(row.role, " ")
	if !ok || resourceType != row.grantedOn {
		return object.Ref{}, nil, fmt.Errorf("role %q is not %q followed by a role name", row.role, row.grantedOn)
	}
	resource := tr.at(row.grantedOn)
	if resource.IsZero() {
		return object.Ref{}, nil, fmt.Errorf("granted-on type %q is not a resource type", row.grantedOn)
	}
	return user, []*v1.RelationshipUpdate{touch(resource, relation, user, "")}, nil
}

func newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	e, err := engine.New(t.Context(), engine.Config{
		Schema: schema.Text,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("start engine: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	return e
}

// isAllowed checks permission for subject on resource at full consistency.
func isAllowed(t *testing.T, e *engine.Engine, resource object.Ref, permission string, subject object.Ref) bool {
	t.Helper()
	d, err := e.Check(t.Context(), engine.CheckRequest{Resource: resource, Permission: permission, Subject: subject})
	if err != nil {
		t.Fatalf("check %s on %s for %s: %v", permission, resource, subject, err)
	}
	if d.Conditional {
		t.Fatalf("check %s on %s for %s: conditional result, but the schema has no caveats", permission, resource, subject)
	}
	return d.Allowed
}

// TestPermissionMatrix grants each role of the table in permissionsDoc to a
// new principal, in an org tree of its own, and checks every cell of its row.
// It also checks that the principal holds no permission in a second org,
// globex, where other principals hold roles.
func TestPermissionMatrix(t *testing.T) {
	perms, rows := readMatrix(t)
	permsByType := schemaPermissions(t)
	e := newEngine(t)

	globex := newTree("globex")
	globexRoles := append(globex.structure(),
		touch(globex.org, "owner", object.Ref{Type: object.TypeUser, ID: "corp|globex-owner"}, ""),
		touch(globex.org, "member", object.Ref{Type: object.TypeUser, ID: "corp|globex-member"}, ""),
		touch(globex.org, "app", object.Ref{Type: object.TypeService, ID: "corp|globex-app"}, ""),
		touch(globex.group, "member", object.Ref{Type: object.TypeUser, ID: "corp|globex-member"}, ""),
		touch(globex.workspace, "editor", globex.group, "member"),
		touch(globex.document, "viewer", object.Ref{Type: object.TypeUser, ID: "corp|globex-guest"}, ""),
	)
	if _, err := e.Write(t.Context(), globexRoles, nil); err != nil {
		t.Fatalf("write globex: %v", err)
	}

	for i, row := range rows {
		tr := newTree(fmt.Sprintf("acme-r%02d", i))
		subject, grants, err := grantRole(row, tr, fmt.Sprintf("corp|row-%02d", i))
		if err != nil {
			t.Fatalf("%s:%d: %v", permissionsDoc, row.line, err)
		}
		if _, err := e.Write(t.Context(), append(tr.structure(), grants...), nil); err != nil {
			t.Fatalf("%s:%d: grant %q: %v", permissionsDoc, row.line, row.role, err)
		}
		resource := tr.at(row.checkedOn)

		for _, perm := range perms {
			t.Run(row.name()+"/"+perm, func(t *testing.T) {
				want := row.cells[perm] == cellAllowed
				if got := isAllowed(t, e, resource, perm, subject); got != want {
					t.Errorf("%s:%d: %s on %s for %s = %v, want %v", permissionsDoc, row.line, perm, resource, subject, got, want)
				}
			})
		}

		// The "Who may ask" section of permissionsDoc: inspect is held by
		// those who manage the resource and by the org's apps.
		t.Run(row.name()+"/inspect", func(t *testing.T) {
			want := row.cells["manage"] == cellAllowed || row.role == labelApp
			if got := isAllowed(t, e, resource, "inspect", subject); got != want {
				t.Errorf("%s:%d: inspect on %s for %s = %v, want %v", permissionsDoc, row.line, resource, subject, got, want)
			}
		})

		t.Run(row.name()+"/globex", func(t *testing.T) {
			for _, level := range levels[object.TypeOrg] {
				target := globex.at(level)
				for _, perm := range permsByType[level] {
					if isAllowed(t, e, target, perm, subject) {
						t.Errorf("%s:%d: %s holds %s on %s in another org", permissionsDoc, row.line, subject, perm, target)
					}
				}
			}
		})
	}
}
