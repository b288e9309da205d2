package loadtest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
)

// projectRoles are the roles the member-change scenarios rotate through,
// with a permission each role holds and one it lacks (empty for none), to
// verify the final state.
var projectRoles = []projectRole{
	{"viewer", "view", "edit"},
	{"editor", "edit", "manage"},
	{"admin", "manage", ""},
}

type projectRole struct {
	role, holds, lacks string
}

// writeLog remembers the access that the latest writes must have given,
// per resource and user, to verify it against SpiceDB afterwards. A later
// write on the same resource for the same user replaces the earlier
// expectation.
type writeLog struct {
	mu     sync.Mutex
	order  []writeKey
	latest map[writeKey][]writtenAccess
}

type writeKey struct {
	resource Object
	user     string
}

// writtenAccess is a permission that a successful write must have given,
// or taken away.
type writtenAccess struct {
	resource   Object
	permission string
	user       string
	allowed    bool
}

// writeLogSize is the number of resource and user pairs verified after a
// write scenario.
const writeLogSize = 100

func (l *writeLog) add(access ...writtenAccess) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := writeKey{resource: access[0].resource, user: access[0].user}
	if l.latest == nil {
		l.latest = map[writeKey][]writtenAccess{}
	}
	l.order = append(l.order, key)
	l.latest[key] = access
}

// verifyWrites checks the access that the last writes of l gave through
// SpiceDB at full consistency, and returns how many checks disagree.
func (r *run) verifyWrites(ctx context.Context, l *writeLog) (int64, error) {
	var wrong int64
	seen := map[writeKey]bool{}
	for i := len(l.order) - 1; i >= 0 && len(seen) < writeLogSize; i-- {
		key := l.order[i]
		if seen[key] {
			continue
		}
		seen[key] = true
		for _, w := range l.latest[key] {
			resp, err := r.raw.Client.CheckPermission(ctx, &v1.CheckPermissionRequest{
				Consistency: fullyConsistent(), Resource: objectRef(w.resource), Permission: w.permission, Subject: userRef(w.user),
			})
			if err != nil {
				return wrong, fmt.Errorf("verify writes: %w", err)
			}
			if hasPermission(resp.GetPermissionship()) != w.allowed {
				r.logger.Warn("a write is not visible as expected", "resource", w.resource.String(), "permission", w.permission, "user", w.user, "want", w.allowed)
				wrong++
			}
		}
	}
	return wrong, nil
}

// writeState is the state that a write scenario's workers share.
type writeState struct {
	seq      atomic.Int64
	log      writeLog
	projects [][]string // per worker, the projects it writes to
	counts   []int      // per worker, the number of member changes so far
}

func (r *run) newWriteState(workers int, seed uint64) *writeState {
	rng := rand.New(rand.NewPCG(seed, 0x7772697465))
	s := &writeState{projects: make([][]string, workers), counts: make([]int, workers)}
	for w := range workers {
		for range 4 {
			s.projects[w] = append(s.projects[w], pickFrom(rng, r.ds.Objects[typeProject]))
		}
	}
	return s
}

// nextRoleChange returns the project and role of worker's next member
// change: each project gets every role once, in turn, so every change
// replaces the role before it.
func (s *writeState) nextRoleChange(worker int) (Object, projectRole) {
	k := s.counts[worker]
	s.counts[worker]++
	projects := s.projects[worker]
	project := Object{Type: typeProject, ID: projects[(k/len(projectRoles))%len(projects)]}
	return project, projectRoles[k%len(projectRoles)]
}

// gatehouseCreate returns an operation that creates a document under one
// of the worker's projects as the app service, for a writer user who
// becomes its owner.
func (r *run) gatehouseCreate(s *writeState) operation {
	return func(ctx context.Context, worker int) (int, int, error) {
		n := s.seq.Add(1)
		doc := Object{Type: typeDocument, ID: fmt.Sprintf("ghw%d", n)}
		owner := fmt.Sprintf("dev|writer-%d", worker)
		project := s.projects[worker][n%int64(len(s.projects[worker]))]
		body, err := json.Marshal(map[string]string{"resource": doc.String(), "parent": "project:" + project, "owner": "user:" + owner})
		if err != nil {
			return 1, 0, err
		}
		if err := r.gh.call(ctx, r.app, http.MethodPost, "/v1/resources", body, http.StatusCreated, nil); err != nil {
			return 1, 0, err
		}
		s.log.add(writtenAccess{resource: doc, permission: "manage", user: owner, allowed: true})
		return 1, 0, nil
	}
}

// rawCreate returns an operation that writes what Gatehouse writes to
// create a document, with the same preconditions: the id is free and the
// parent exists.
func (r *run) rawCreate(s *writeState) operation {
	return func(ctx context.Context, worker int) (int, int, error) {
		n := s.seq.Add(1)
		doc := Object{Type: typeDocument, ID: fmt.Sprintf("raww%d", n)}
		owner := fmt.Sprintf("dev|raw-writer-%d", worker)
		project := Object{Type: typeProject, ID: s.projects[worker][n%int64(len(s.projects[worker]))]}
		_, err := r.raw.Client.WriteRelationships(ctx, &v1.WriteRelationshipsRequest{
			Updates: []*v1.RelationshipUpdate{
				{Operation: v1.RelationshipUpdate_OPERATION_CREATE, Relationship: toProto(Relationship{Resource: doc, Relation: "project", Subject: project})},
				{Operation: v1.RelationshipUpdate_OPERATION_CREATE, Relationship: toProto(Relationship{Resource: doc, Relation: "owner", Subject: user(owner)})},
			},
			OptionalPreconditions: []*v1.Precondition{
				{Operation: v1.Precondition_OPERATION_MUST_NOT_MATCH, Filter: &v1.RelationshipFilter{ResourceType: typeDocument, OptionalResourceId: doc.ID}},
				{Operation: v1.Precondition_OPERATION_MUST_MATCH, Filter: &v1.RelationshipFilter{ResourceType: typeProject, OptionalResourceId: project.ID, OptionalRelation: "workspace"}},
			},
		})
		if err != nil {
			return 1, 0, err
		}
		s.log.add(writtenAccess{resource: doc, permission: "manage", user: owner, allowed: true})
		return 1, 0, nil
	}
}

// gatehouseMember returns an operation that changes a writer user's role
// on one of the worker's projects through PUT .../members, as the org
// admin, rotating viewer, editor, admin so that every request changes the
// role.
func (r *run) gatehouseMember(s *writeState) operation {
	return func(ctx context.Context, worker int) (int, int, error) {
		project, role := s.nextRoleChange(worker)
		subject := fmt.Sprintf("dev|member-%d", worker)
		path := "/v1/resources/project/" + url.PathEscape(project.ID) + "/members/" + url.PathEscape("user:"+subject)
		body, err := json.Marshal(map[string]string{"role": role.role})
		if err != nil {
			return 1, 0, err
		}
		if err := r.gh.call(ctx, r.admin, http.MethodPut, path, body, http.StatusOK, nil); err != nil {
			return 1, 0, err
		}
		s.log.add(roleAccess(project, subject, role.holds, role.lacks)...)
		return 1, 0, nil
	}
}

// rawMember returns an operation that writes the equivalent role change
// to SpiceDB: the new role, and the deletion of the others, in one write.
func (r *run) rawMember(s *writeState) operation {
	return func(ctx context.Context, worker int) (int, int, error) {
		project, role := s.nextRoleChange(worker)
		subject := fmt.Sprintf("dev|raw-member-%d", worker)
		var updates []*v1.RelationshipUpdate
		for _, other := range projectRoles {
			op := v1.RelationshipUpdate_OPERATION_DELETE
			if other.role == role.role {
				op = v1.RelationshipUpdate_OPERATION_TOUCH
			}
			updates = append(updates, &v1.RelationshipUpdate{Operation: op, Relationship: toProto(Relationship{Resource: project, Relation: other.role, Subject: user(subject)})})
		}
		if _, err := r.raw.Client.WriteRelationships(ctx, &v1.WriteRelationshipsRequest{Updates: updates}); err != nil {
			return 1, 0, err
		}
		s.log.add(roleAccess(project, subject, role.holds, role.lacks)...)
		return 1, 0, nil
	}
}

func roleAccess(project Object, subject, holds, lacks string) []writtenAccess {
	w := []writtenAccess{{resource: project, permission: holds, user: subject, allowed: true}}
	if lacks != "" {
		w = append(w, writtenAccess{resource: project, permission: lacks, user: subject, allowed: false})
	}
	return w
}

// exchangeState holds dev issuer tokens minted before the token exchange
// scenario, so that minting is not part of what is measured.
type exchangeState struct {
	tokens   []string
	subjects []string // the principal each token's exchange must yield
	next     atomic.Uint64
}

func (r *run) newExchangeState(ctx context.Context, n int) (*exchangeState, error) {
	s := &exchangeState{}
	var users []string
	for _, org := range r.ds.Objects[typeOrg] {
		users = append(users, r.ds.OrgUsers[org]...)
		if len(users) >= n {
			break
		}
	}
	for _, u := range users[:min(n, len(users))] {
		_, name, _ := strings.Cut(u, "|")
		token, err := r.gh.mint(ctx, name, false)
		if err != nil {
			return nil, err
		}
		s.tokens = append(s.tokens, token)
		s.subjects = append(s.subjects, "user:"+u)
	}
	return s, nil
}

// gatehouseExchange returns an operation that exchanges a dev issuer
// token for a Gatehouse token. A token issued to another principal than
// the subject token's is a wrong answer.
func (r *run) gatehouseExchange(s *exchangeState) operation {
	return func(ctx context.Context, _ int) (int, int, error) {
		i := int(s.next.Add(1) % uint64(len(s.tokens)))
		token, err := r.gh.exchange(ctx, s.tokens[i])
		if err != nil {
			return 1, 0, err
		}
		sub, err := tokenSubject(token)
		if err != nil {
			return 1, 0, err
		}
		return 1, wrongIf(sub != s.subjects[i]), nil
	}
}

// tokenSubject returns the "sub" claim of a JWT without verifying it; the
// token came straight from the server under test.
func tokenSubject(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("issued token is not a JWS in compact form")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("decode issued token's claims: %w", err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", fmt.Errorf("decode issued token's claims: %w", err)
	}
	return claims.Sub, nil
}
