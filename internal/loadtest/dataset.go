// Package loadtest benchmarks Gatehouse against a stock SpiceDB server on
// the same datastore: it generates a seeded multi-tenant dataset, loads it
// in bulk, runs check, lookup, write and token exchange scenarios against
// both, compares every answer with an oracle written in Go, and reports
// throughput, latency percentiles, peak memory and wrong answers in
// Markdown.
package loadtest

import (
	"fmt"
	"time"
)

// Object types and relations of schema/gatehouse.zed that the generator
// writes.
const (
	typeUser      = "user"
	typeService   = "service"
	typePlatform  = "platform"
	typeOrg       = "org"
	typeWorkspace = "workspace"
	typeProject   = "project"
	typeDocument  = "document"
	typeGroup     = "group"
	typeGrant     = "grant"
	typeLink      = "link"

	relationMember = "member"
	relationHolder = "holder"
)

// platformID is the one platform object that every org links to.
const platformID = "gatehouse"

// farFuture is the expiration of the generated temporary grants. It is a
// fixed date so that the dataset does not depend on the clock.
var farFuture = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)

// Object is a SpiceDB object: a type and an id, such as document:d1.
type Object struct {
	Type string
	ID   string
}

func (o Object) String() string { return o.Type + ":" + o.ID }

// Relationship is one relationship as SpiceDB stores it. SubjectRelation
// is empty for a direct subject, and Expires is zero for a relationship
// that never expires.
type Relationship struct {
	Resource        Object
	Relation        string
	Subject         Object
	SubjectRelation string
	Expires         time.Time
}

func (r Relationship) String() string {
	s := r.Resource.String() + "#" + r.Relation + "@" + r.Subject.String()
	if r.SubjectRelation != "" {
		s += "#" + r.SubjectRelation
	}
	if !r.Expires.IsZero() {
		s += "[expiration:" + r.Expires.Format(time.RFC3339) + "]"
	}
	return s
}

// LookupUser is a user planted in the dataset to see a known number of
// documents, for the lookup scenarios.
type LookupUser struct {
	// User is the user's id, such as "dev|lookup-1000".
	User string

	// Target is the number of documents the user was meant to see, and
	// Planted the number the dataset could hold (at most Target).
	Target  int
	Planted int
}

// Dataset is a generated tenancy: every relationship, and the indexes the
// scenarios and the oracle need. It is read-only once generated.
type Dataset struct {
	Seed          int64
	Relationships []Relationship

	// Objects lists the ids of the objects of each type except users, in
	// the order they were generated.
	Objects map[string][]string

	// Parent maps a workspace, project, document or group to its parent.
	Parent map[Object]Object

	// OrgOf maps every resource and every org user to its org id.
	OrgOf map[Object]string

	// ProjectDocs lists each project's documents.
	ProjectDocs map[string][]string

	// OrgUsers lists the users of each org; Outsiders are users who belong
	// to no org (some hold share links, most hold nothing).
	OrgUsers  map[string][]string
	Outsiders []string

	// App is the service that holds the app role on every org, and Admin
	// the user that is an admin of every org. The benchmark calls
	// Gatehouse as these two.
	App   string
	Admin string

	// LookupUsers see about 10, 1,000 and 100,000 documents.
	LookupUsers []LookupUser
}

// Count returns the number of objects of type typ.
func (d *Dataset) Count(typ string) int { return len(d.Objects[typ]) }

// Summary describes the dataset in one line.
func (d *Dataset) Summary() string {
	users := len(d.Outsiders)
	for _, u := range d.OrgUsers {
		users += len(u)
	}
	return fmt.Sprintf("%d relationships: %d orgs, %d workspaces, %d projects, %d documents, %d groups, %d temporary grants, %d share links, %d users (%d in no org)",
		len(d.Relationships), d.Count(typeOrg), d.Count(typeWorkspace), d.Count(typeProject), d.Count(typeDocument),
		d.Count(typeGroup), d.Count(typeGrant), d.Count(typeLink), users, len(d.Outsiders))
}
