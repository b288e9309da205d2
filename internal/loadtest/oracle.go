package loadtest

import (
	"maps"
	"slices"
	"time"
)

// term is one operand of a permission's union in the schema: a relation or
// permission of the same object, or an arrow (tupleset->target) that
// follows the objects named by the relation tupleset.
type term struct {
	name     string
	tupleset string // set for an arrow
}

func self(name string) term              { return term{name: name} }
func arrow(tupleset, target string) term { return term{name: target, tupleset: tupleset} }

// schemaPermissions mirrors the permissions of schema/gatehouse.zed, type
// by type: each permission is the union of its terms, and a permission
// with no terms is nil (never held). Names missing here are relations.
// A change to the schema must be made here too. The cross-check against
// SpiceDB before every run fails when the two disagree on the generated
// data, and so does the unit test.
var schemaPermissions = map[string]map[string][]term{
	typeGroup: {
		"manage":  {self("admin"), arrow("org", "manage")},
		"edit":    {self("manage")},
		"delete":  {self("manage")},
		"view":    {self("member"), self("manage"), arrow("org", "app")},
		"share":   nil,
		"create":  nil,
		"inspect": {self("manage"), arrow("org", "inspect")},
	},
	typeOrg: {
		"manage_owners": {self("owner")},
		"manage":        {self("owner"), self("admin")},
		"delete":        {self("owner")},
		"edit":          {self("manage")},
		"share":         {self("manage")},
		"view":          {self("member"), self("manage"), self("app")},
		"create":        {self("member"), self("manage"), self("app")},
		"inspect":       {self("manage"), self("app")},
	},
	typeWorkspace: {
		"manage":  {self("admin"), arrow("org", "manage")},
		"delete":  {self("manage")},
		"edit":    {self("editor"), self("manage")},
		"share":   {self("edit")},
		"create":  {self("edit"), arrow("org", "app")},
		"view":    {self("viewer"), self("edit"), arrow("org", "app")},
		"inspect": {self("manage"), arrow("org", "inspect")},
	},
	typeProject: {
		"manage":  {self("admin"), arrow("workspace", "manage")},
		"delete":  {self("manage")},
		"edit":    {self("editor"), self("manage"), arrow("workspace", "edit")},
		"share":   {self("edit")},
		"create":  {self("edit"), arrow("workspace", "create")},
		"view":    {self("viewer"), self("edit"), arrow("workspace", "view")},
		"inspect": {self("manage"), arrow("workspace", "inspect")},
	},
	typeDocument: {
		"manage":  {self("owner"), arrow("project", "manage")},
		"delete":  {self("manage")},
		"edit":    {self("editor"), self("manage"), arrow("project", "edit")},
		"share":   {self("edit")},
		"create":  nil,
		"view":    {self("viewer"), self("edit"), arrow("project", "view")},
		"inspect": {self("manage"), arrow("project", "inspect")},
	},
}

// maxOracleDepth bounds the recursion, like SpiceDB's dispatch depth; the
// generated data never comes close.
const maxOracleDepth = 50

// tupleSubject is the subject side of a stored relationship.
type tupleSubject struct {
	subject  Object
	relation string
	expires  time.Time
}

// Oracle evaluates checks and lookups on a Dataset with a Go model of the
// schema, independently of SpiceDB. It is safe for concurrent use once
// built.
type Oracle struct {
	ds    *Dataset
	index map[Object]map[string][]tupleSubject
	now   func() time.Time
}

// NewOracle indexes ds.
func NewOracle(ds *Dataset) *Oracle {
	o := &Oracle{ds: ds, index: make(map[Object]map[string][]tupleSubject, len(ds.Relationships)/2), now: time.Now}
	for _, r := range ds.Relationships {
		byRelation := o.index[r.Resource]
		if byRelation == nil {
			byRelation = map[string][]tupleSubject{}
			o.index[r.Resource] = byRelation
		}
		byRelation[r.Relation] = append(byRelation[r.Relation], tupleSubject{subject: r.Subject, relation: r.SubjectRelation, expires: r.Expires})
	}
	return o
}

// Check reports whether the user (an id such as "dev|u1") has permission
// on resource.
func (o *Oracle) Check(resource Object, permission, userID string) bool {
	return o.eval(resource, permission, user(userID), nil, 0)
}

// evalKey names one memoized evaluation for a fixed subject.
type evalKey struct {
	object Object
	name   string
}

// eval reports whether subject holds name (a permission or a relation) on
// obj. memo, when not nil, caches results for one subject across calls.
func (o *Oracle) eval(obj Object, name string, subject Object, memo map[evalKey]bool, depth int) bool {
	if depth > maxOracleDepth {
		return false
	}
	key := evalKey{obj, name}
	if memo != nil {
		if v, ok := memo[key]; ok {
			return v
		}
	}
	result := o.evalUncached(obj, name, subject, memo, depth)
	if memo != nil {
		memo[key] = result
	}
	return result
}

func (o *Oracle) evalUncached(obj Object, name string, subject Object, memo map[evalKey]bool, depth int) bool {
	if terms, isPermission := schemaPermissions[obj.Type][name]; isPermission {
		for _, t := range terms {
			if t.tupleset == "" {
				if o.eval(obj, t.name, subject, memo, depth+1) {
					return true
				}
				continue
			}
			for _, s := range o.index[obj][t.tupleset] {
				if o.eval(s.subject, t.name, subject, memo, depth+1) {
					return true
				}
			}
		}
		return false
	}

	// A relation. A direct subject matches itself, and a userset (such as
	// group:g#member) matches every subject that holds its relation. An
	// expired relationship matches no subject.
	now := o.now()
	for _, s := range o.index[obj][name] {
		if !s.expires.IsZero() && !s.expires.After(now) {
			continue
		}
		if s.relation == "" {
			if s.subject == subject {
				return true
			}
			continue
		}
		if o.eval(s.subject, s.relation, subject, memo, depth+1) {
			return true
		}
	}
	return false
}

// LookupDocuments returns the ids of the documents on which the user has
// permission, sorted.
func (o *Oracle) LookupDocuments(permission, userID string) []string {
	memo := map[evalKey]bool{}
	var ids []string
	for _, id := range o.ds.Objects[typeDocument] {
		if o.eval(Object{Type: typeDocument, ID: id}, permission, user(userID), memo, 0) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// usersOf appends the users that subject (with relation, for a userset)
// stands for: the user itself, or the holders of a group's membership, a
// grant or a share link, followed transitively. It is the generator's
// notion of "who is named here", used to pick subjects that are likely to
// be allowed; the oracle still decides.
func (o *Oracle) usersOf(subject Object, relation string, out []string, depth int) []string {
	if depth > maxOracleDepth {
		return out
	}
	if relation == "" {
		if subject.Type == typeUser {
			out = append(out, subject.ID)
		}
		return out
	}
	for _, s := range o.index[subject][relation] {
		out = o.usersOf(s.subject, s.relation, out, depth+1)
	}
	return out
}

// namedUsers returns the users named by a role on resource or on any of
// its ancestors, with duplicates.
func (o *Oracle) namedUsers(resource Object) []string {
	var out []string
	for obj, ok := resource, true; ok; obj, ok = o.ds.Parent[obj] {
		// Sorted, so that the same seed picks the same subjects.
		relations := slices.Sorted(maps.Keys(o.index[obj]))
		for _, relation := range relations {
			if relation == "org" || relation == "workspace" || relation == "project" {
				continue // parent links
			}
			for _, s := range o.index[obj][relation] {
				out = o.usersOf(s.subject, s.relation, out, 0)
			}
		}
	}
	return out
}
