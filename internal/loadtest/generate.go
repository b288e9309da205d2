package loadtest

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// GenerateConfig configures Generate.
type GenerateConfig struct {
	// Relationships is the number of relationships to aim for. The result
	// is within a few percent of it. Required.
	Relationships int

	// Seed makes the dataset reproducible: the same seed and size give the
	// same relationships in the same order.
	Seed int64
}

// Lookup targets: the planted users see about this many documents each.
var lookupTargets = []int{10, 1000, 100000}

// relationshipsPerDocument estimates how many relationships the dataset
// holds per document, counting the structure above the documents. The
// generator uses it only to size the largest org.
const relationshipsPerDocument = 2.8

// generator builds one Dataset. Every random choice goes through rng, in a
// fixed order, so the same seed gives the same dataset.
type generator struct {
	rng       *rand.Rand
	ds        *Dataset
	nextID    map[string]int
	bigOrg    *orgPlan
	userCount int

	// written holds every (resource, subject) pair written so far: like
	// Gatehouse's member API, the generator gives a subject at most one
	// direct role per resource, and never writes a relationship twice.
	written map[writtenPair]bool
}

type writtenPair struct {
	resource, subject Object
	subjectRelation   string
}

// orgPlan is the structure of one generated org, which plantLookupUsers
// reads.
type orgPlan struct {
	id         string
	users      []string
	groups     []string
	workspaces []workspacePlan
}

type workspacePlan struct {
	id       string
	projects []string
	docs     int
}

// Generate builds a deterministic tenancy of about cfg.Relationships
// relationships: orgs of varied sizes (one much larger than the rest, which
// holds the planted lookup users), their workspaces, projects, documents and
// groups, direct and inherited roles, temporary grants, share links, and
// users who belong to no org. Every resource is linked to its parent exactly
// as Gatehouse writes it when it creates one, so Gatehouse treats them all
// as existing.
func Generate(cfg GenerateConfig) (*Dataset, error) {
	if cfg.Relationships < 200 {
		return nil, fmt.Errorf("a dataset needs at least 200 relationships, not %d", cfg.Relationships)
	}
	g := &generator{
		rng:     rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6761746568)),
		nextID:  map[string]int{},
		written: map[writtenPair]bool{},
		ds: &Dataset{
			Seed:        cfg.Seed,
			Objects:     map[string][]string{},
			Parent:      map[Object]Object{},
			OrgOf:       map[Object]string{},
			ProjectDocs: map[string][]string{},
			OrgUsers:    map[string][]string{},
			App:         "dev|bench-app",
			Admin:       "dev|bench-admin",
		},
	}
	target := cfg.Relationships

	// Users in no org exist first, so that share links can name them.
	for range max(3, target/2000) {
		g.ds.Outsiders = append(g.ds.Outsiders, g.newUser())
	}

	// One org holds about a third of the documents; the lookup users live
	// there.
	bigDocs := int(float64(target) / relationshipsPerDocument * 0.35)
	g.bigOrg = g.org(bigDocs, true)
	g.plantLookupUsers()

	// Then orgs of every size until the target is reached: mostly small,
	// some medium, a few large.
	for len(g.ds.Relationships) < target {
		remaining := int(float64(target-len(g.ds.Relationships)) / relationshipsPerDocument)
		var docs int
		switch p := g.rng.Float64(); {
		case p < 0.80:
			docs = g.between(5, 60)
		case p < 0.97:
			docs = g.between(100, 1500)
		default:
			docs = g.between(2000, 15000)
		}
		g.org(max(1, min(docs, remaining)), false)
	}
	return g.ds, nil
}

func (g *generator) between(lo, hi int) int { return lo + g.rng.IntN(hi-lo+1) }

func (g *generator) chance(p float64) bool { return g.rng.Float64() < p }

func (g *generator) pick(ids []string) string { return ids[g.rng.IntN(len(ids))] }

func (g *generator) newID(typ, prefix string) string {
	g.nextID[typ]++
	id := fmt.Sprintf("%s%d", prefix, g.nextID[typ])
	g.ds.Objects[typ] = append(g.ds.Objects[typ], id)
	return id
}

func (g *generator) newUser() string {
	g.userCount++
	return fmt.Sprintf("dev|u%d", g.userCount)
}

func (g *generator) add(resource Object, relation string, subject Object, subjectRelation string) {
	g.addRelationship(Relationship{Resource: resource, Relation: relation, Subject: subject, SubjectRelation: subjectRelation})
}

// addRelationship appends r unless its subject already holds a relation on
// its resource.
func (g *generator) addRelationship(r Relationship) {
	pair := writtenPair{resource: r.Resource, subject: r.Subject, subjectRelation: r.SubjectRelation}
	if g.written[pair] {
		return
	}
	g.written[pair] = true
	g.ds.Relationships = append(g.ds.Relationships, r)
}

func user(id string) Object { return Object{Type: typeUser, ID: id} }

// org generates one org with about docs documents, and everything above
// and around them.
func (g *generator) org(docs int, big bool) *orgPlan {
	org := Object{Type: typeOrg, ID: g.newID(typeOrg, "o")}
	plan := &orgPlan{id: org.ID}
	g.ds.OrgOf[org] = org.ID

	// Users, each holding one org role: the first is the owner who created
	// the org, a few are admins, the rest members.
	nUsers := min(max(3, docs/4), 3000)
	for i := range nUsers {
		u := g.newUser()
		plan.users = append(plan.users, u)
		g.ds.OrgOf[user(u)] = org.ID
		switch {
		case i == 0:
			g.add(org, "platform", Object{Type: typePlatform, ID: platformID}, "")
			g.add(org, "owner", user(u), "")
		case i <= 2 && nUsers > 5:
			g.add(org, "admin", user(u), "")
		default:
			g.add(org, relationMember, user(u), "")
		}
	}
	g.ds.OrgUsers[org.ID] = plan.users
	g.add(org, "app", Object{Type: typeService, ID: g.ds.App}, "")
	g.add(org, "admin", user(g.ds.Admin), "")

	// Groups, created by a user who becomes their admin, with members;
	// some are nested in an earlier group of the same org.
	for range max(1, nUsers/15) {
		group := Object{Type: typeGroup, ID: g.newID(typeGroup, "g")}
		g.ds.Parent[group] = org
		g.ds.OrgOf[group] = org.ID
		g.add(group, "org", org, "")
		g.add(group, "admin", user(g.pick(plan.users)), "")
		for range g.between(2, 8) {
			g.add(group, relationMember, user(g.pick(plan.users)), "")
		}
		if len(plan.groups) > 0 && g.chance(0.3) {
			g.add(Object{Type: typeGroup, ID: g.pick(plan.groups)}, relationMember, group, relationMember)
		}
		plan.groups = append(plan.groups, group.ID)
	}
	if g.chance(0.2) {
		g.add(org, relationMember, Object{Type: typeGroup, ID: g.pick(plan.groups)}, relationMember)
	}

	// Workspaces, projects and documents until the documents are placed.
	docsPerProject := [2]int{3, 15}
	if big {
		docsPerProject = [2]int{20, 60}
	}
	for placed := 0; placed < docs; {
		ws := g.workspace(plan, org)
		for range g.between(2, 8) {
			if placed >= docs {
				break
			}
			n := min(g.between(docsPerProject[0], docsPerProject[1]), docs-placed)
			project := g.project(plan, ws, n)
			plan.workspaces[len(plan.workspaces)-1].projects = append(plan.workspaces[len(plan.workspaces)-1].projects, project)
			plan.workspaces[len(plan.workspaces)-1].docs += n
			placed += n
		}
	}

	// Temporary grants and share links, in proportion to the org's size.
	for range g.countFor(docs, 200) {
		g.grant(plan, org)
	}
	for range g.countFor(docs, 300) {
		g.link(plan)
	}
	return plan
}

// countFor returns about docs/per, rounding a fraction up by chance, so
// that small orgs get a grant or a link now and then.
func (g *generator) countFor(docs, per int) int {
	n := docs / per
	if g.chance(float64(docs%per) / float64(per)) {
		n++
	}
	return n
}

// role writes one extra role on resource for a random user or group of the
// org.
func (g *generator) role(plan *orgPlan, resource Object, roles []string) {
	relation := roles[g.rng.IntN(len(roles))]
	if g.chance(0.3) {
		g.add(resource, relation, Object{Type: typeGroup, ID: g.pick(plan.groups)}, relationMember)
		return
	}
	g.add(resource, relation, user(g.pick(plan.users)), "")
}

func (g *generator) workspace(plan *orgPlan, org Object) Object {
	ws := Object{Type: typeWorkspace, ID: g.newID(typeWorkspace, "w")}
	g.ds.Parent[ws] = org
	g.ds.OrgOf[ws] = org.ID
	g.add(ws, "org", org, "")
	g.add(ws, "admin", user(g.pick(plan.users)), "")
	if g.chance(0.5) {
		g.role(plan, ws, []string{"viewer", "viewer", "editor", "admin"})
	}
	plan.workspaces = append(plan.workspaces, workspacePlan{id: ws.ID})
	return ws
}

func (g *generator) project(plan *orgPlan, ws Object, docs int) string {
	project := Object{Type: typeProject, ID: g.newID(typeProject, "p")}
	g.ds.Parent[project] = ws
	g.ds.OrgOf[project] = plan.id
	g.add(project, "workspace", ws, "")
	g.add(project, "admin", user(g.pick(plan.users)), "")
	if g.chance(0.4) {
		g.role(plan, project, []string{"viewer", "editor", "editor", "admin"})
	}
	for range docs {
		doc := Object{Type: typeDocument, ID: g.newID(typeDocument, "d")}
		g.ds.Parent[doc] = project
		g.ds.OrgOf[doc] = plan.id
		g.ds.ProjectDocs[project.ID] = append(g.ds.ProjectDocs[project.ID], doc.ID)
		g.add(doc, "project", project, "")
		g.add(doc, "owner", user(g.pick(plan.users)), "")
		if g.chance(0.15) {
			g.role(plan, doc, []string{"viewer", "viewer", "editor"})
		}
	}
	return project.ID
}

// grant writes a temporary grant as Gatehouse's grants service does:
// resource#role@grant:G#holder with the grant's end as expiration, and
// grant:G#holder@subject.
func (g *generator) grant(plan *orgPlan, org Object) {
	grant := Object{Type: typeGrant, ID: g.newID(typeGrant, "gr")}

	var resource Object
	var roles []string
	switch p := g.rng.Float64(); {
	case p < 0.1:
		resource, roles = org, []string{"admin", "member"}
	case p < 0.3:
		ws := plan.workspaces[g.rng.IntN(len(plan.workspaces))]
		resource, roles = Object{Type: typeWorkspace, ID: ws.id}, []string{"viewer", "editor", "admin"}
	case p < 0.6:
		resource, roles = Object{Type: typeProject, ID: g.randomProject(plan)}, []string{"viewer", "editor", "admin"}
	case p < 0.95:
		project := g.randomProject(plan)
		resource, roles = Object{Type: typeDocument, ID: g.pick(g.ds.ProjectDocs[project])}, []string{"viewer", "editor", "owner"}
	default:
		resource, roles = Object{Type: typeGroup, ID: g.pick(plan.groups)}, []string{relationMember}
	}
	g.addRelationship(Relationship{
		Resource: resource, Relation: roles[g.rng.IntN(len(roles))],
		Subject: grant, SubjectRelation: relationHolder, Expires: farFuture,
	})
	// A group's holders are users only: a group holding a grant of
	// membership in itself, or in a group nested in it, would be a
	// membership loop, which Gatehouse's API rejects.
	if resource.Type != typeGroup && g.chance(0.2) {
		g.add(grant, relationHolder, Object{Type: typeGroup, ID: g.pick(plan.groups)}, relationMember)
	} else {
		g.add(grant, relationHolder, user(g.pick(plan.users)), "")
	}
}

// link writes a share link as Gatehouse's links service does: the role for
// the link's holders, for anonymous holders too when the link is for
// anyone, and the users who redeemed it, some of whom belong to no org.
func (g *generator) link(plan *orgPlan) {
	link := Object{Type: typeLink, ID: g.newID(typeLink, "l")}

	project := g.randomProject(plan)
	resource := Object{Type: typeProject, ID: project}
	if g.chance(0.7) {
		resource = Object{Type: typeDocument, ID: g.pick(g.ds.ProjectDocs[project])}
	}
	role := "viewer"
	if g.chance(0.3) {
		role = "editor"
	}
	g.add(resource, role, link, relationHolder)
	if g.chance(0.5) {
		g.add(resource, role, link, "")
	}
	for range g.between(1, 3) {
		holder := g.pick(plan.users)
		if g.chance(0.4) {
			holder = g.pick(g.ds.Outsiders)
		}
		r := Relationship{Resource: link, Relation: relationHolder, Subject: user(holder)}
		if g.chance(0.3) {
			r.Expires = farFuture
		}
		g.addRelationship(r)
	}
}

func (g *generator) randomProject(plan *orgPlan) string {
	for {
		ws := plan.workspaces[g.rng.IntN(len(plan.workspaces))]
		if len(ws.projects) > 0 {
			return g.pick(ws.projects)
		}
	}
}

// plantLookupUsers gives three new users view access to about 10, 1,000
// and 100,000 documents of the largest org: the first as a viewer of
// single documents, the second of projects, the third of workspaces. Where
// the org holds fewer documents than a target, the user sees as many as
// it has. No user is given more than its target, because Gatehouse
// rejects a lookup that matches more than 100,000 resources.
func (g *generator) plantLookupUsers() {
	plan := g.bigOrg
	projects := []string{}
	for _, ws := range plan.workspaces {
		projects = append(projects, ws.projects...)
	}
	for _, target := range lookupTargets {
		u := fmt.Sprintf("dev|lookup-%d", target)
		planted := 0
		switch target {
		case lookupTargets[0]:
			docs := slices.Clone(g.ds.ProjectDocs[projects[0]])
			for _, p := range projects[1:] {
				if len(docs) >= target {
					break
				}
				docs = append(docs, g.ds.ProjectDocs[p]...)
			}
			for _, d := range docs[:min(target, len(docs))] {
				g.add(Object{Type: typeDocument, ID: d}, "viewer", user(u), "")
				planted++
			}
		case lookupTargets[1]:
			for _, p := range projects {
				n := len(g.ds.ProjectDocs[p])
				if planted+n > target {
					continue
				}
				g.add(Object{Type: typeProject, ID: p}, "viewer", user(u), "")
				planted += n
			}
		default:
			for _, ws := range plan.workspaces {
				if planted+ws.docs > target {
					continue
				}
				g.add(Object{Type: typeWorkspace, ID: ws.id}, "viewer", user(u), "")
				planted += ws.docs
			}
		}
		g.ds.LookupUsers = append(g.ds.LookupUsers, LookupUser{User: u, Target: target, Planted: planted})
	}
}
