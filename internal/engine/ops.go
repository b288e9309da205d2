package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"github.com/authzed/spicedb/pkg/datalayer"
	"github.com/authzed/spicedb/pkg/embedded"
	"github.com/authzed/spicedb/pkg/zedtoken"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// Errors that callers branch on. Every error returned by the operations of
// this file wraps at most one of them.
var (
	// ErrPreconditionFailed means a write's precondition did not hold, or
	// it created a relationship that exists already, so nothing was written.
	ErrPreconditionFailed = errors.New("precondition failed")

	// ErrInvalidConsistencyToken means a consistency token could not be
	// decoded or names a revision that SpiceDB no longer keeps.
	ErrInvalidConsistencyToken = errors.New("invalid consistency token")

	// ErrUnavailable means SpiceDB or its datastore did not respond in time.
	ErrUnavailable = errors.New("authorization engine unavailable")

	// ErrMaxDepth means the request needed more nested steps than SpiceDB
	// allows, as a loop of group memberships would.
	ErrMaxDepth = errors.New("maximum depth exceeded")
)

// Consistency selects the snapshot that a read is evaluated at. The zero
// value is full consistency: the read reflects every write that has returned.
type Consistency struct {
	// Token requests a snapshot at least as fresh as the one it names.
	Token string

	// MinimizeLatency allows a cached, possibly stale snapshot (a few
	// seconds old at most, set by the datastore's revision quantization).
	MinimizeLatency bool
}

// consistencyFor returns what to ask SpiceDB for to read at c. Full
// consistency becomes the exact head revision, read from the datastore
// itself: SpiceDB's own fully consistent reads share any head revision read
// already in flight (its datastore proxy deduplicates them), and that one
// may have started before a write that has since returned.
func (e *Engine) consistencyFor(ctx context.Context, c Consistency) (*v1.Consistency, error) {
	// A minimized revision may be seconds old, older than the schema that
	// this engine wrote at start-up, at which SpiceDB finds no definitions.
	// At least as fresh as the schema, SpiceDB still takes its minimized
	// revision when that is newer.
	if c.MinimizeLatency && e.schemaAt != nil {
		return &v1.Consistency{Requirement: &v1.Consistency_AtLeastAsFresh{AtLeastAsFresh: e.schemaAt}}, nil
	}
	if c.Token != "" || c.MinimizeLatency {
		return c.proto(), nil
	}
	rev, err := e.ds.HeadRevision(ctx)
	if err != nil {
		return nil, fmt.Errorf("read head revision: %w: %w", ErrUnavailable, err)
	}
	if rev.Revision == nil {
		return nil, fmt.Errorf("read head revision: %w: datastore has no revision", ErrUnavailable)
	}
	token, err := zedtoken.NewFromRevision(ctx, rev.Revision, datalayer.SchemaHash(rev.SchemaHash), e.ds)
	if err != nil {
		return nil, fmt.Errorf("encode head revision: %w", err)
	}
	return &v1.Consistency{Requirement: &v1.Consistency_AtExactSnapshot{AtExactSnapshot: token}}, nil
}

func (c Consistency) proto() *v1.Consistency {
	switch {
	case c.MinimizeLatency:
		return &v1.Consistency{Requirement: &v1.Consistency_MinimizeLatency{MinimizeLatency: true}}
	case c.Token != "":
		return &v1.Consistency{Requirement: &v1.Consistency_AtLeastAsFresh{AtLeastAsFresh: &v1.ZedToken{Token: c.Token}}}
	default:
		return &v1.Consistency{Requirement: &v1.Consistency_FullyConsistent{FullyConsistent: true}}
	}
}

// CheckRequest names the subject, permission and resource of one check.
type CheckRequest struct {
	Resource   object.Ref
	Permission string
	Subject    object.Ref

	// SubjectRelation is the relation of the subject, such as "member" for
	// a group's members. Empty means the subject itself.
	SubjectRelation string

	Consistency Consistency
}

// Decision is the outcome of a check. Only Allowed grants access: a
// conditional result is a deny.
type Decision struct {
	Allowed     bool
	Conditional bool

	// Token is a consistency token for the snapshot the check saw. It is
	// empty for checks served by the in-process checker, which always reads
	// the newest snapshot.
	Token string
}

// Check runs req through the v1 API, which returns a consistency token
// and honours req.Consistency. Without a consistency token, the result
// comes from the result cache when it contains one for the current state
// (of the resource's org, in a context from WithResource, or else of the
// datastore). Otherwise SpiceDB evaluates the check at the revision pinned
// for that state, fully consistent and so fresher than MinimizeLatency
// requires, and the result is cached.
func (e *Engine) Check(ctx context.Context, req CheckRequest) (Decision, error) {
	if e.results == nil || req.Consistency.Token != "" {
		return e.checkAPI(ctx, req, req.Consistency)
	}
	state, pinned, err := e.stateOf(ctx, req)
	if err != nil {
		return Decision{}, fmt.Errorf("check: %w", err)
	}
	key := keyOf(state, req)
	if d, ok := e.results.get(key); ok {
		return d, nil
	}
	d, err := e.checkPinned(ctx, req, pinned)
	if err != nil {
		return Decision{}, err
	}
	e.results.put(key, d)
	return d, nil
}

// checkPinned evaluates req at the revision pinned for state, with
// SpiceDB's in-process checker (see pinnedDatastore). The pin is younger
// than maxPinAge, well inside the datastore's garbage collection window,
// so the revision needs none of the checks that the v1 API makes of a
// consistency token. The decision carries the pin's token, as the v1 API's
// would.
func (e *Engine) checkPinned(ctx context.Context, req CheckRequest, state string) (Decision, error) {
	p, state, err := e.pinForCheck(ctx, req, state)
	if err != nil {
		return Decision{}, fmt.Errorf("check: %w", err)
	}
	d, err := e.CheckInProcess(withHead(ctx, p.head), req)
	switch {
	case err == nil:
		d.Token = p.consistency.GetAtExactSnapshot().GetToken()
		return d, nil
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrMaxDepth):
		return Decision{}, err
	}
	// Other errors are requests that the schema does not allow, such as an
	// unknown permission. The v1 API validates the request and classifies
	// its errors (ErrPreconditionFailed), so it gives the caller's error.
	// NOTE: the in-process checker denies, without an error, a subject of
	// a type or relation that the schema lacks. authz validates subjects
	// before any check reaches the engine.
	d, err = e.checkAt(ctx, req, p.consistency)
	if isRejectedRevision(err) {
		e.unpin(state)
		return e.checkAPI(ctx, req, Consistency{})
	}
	return d, err
}

func (e *Engine) checkAPI(ctx context.Context, req CheckRequest, c Consistency) (Decision, error) {
	consistency, err := e.consistencyFor(ctx, c)
	if err != nil {
		return Decision{}, fmt.Errorf("check: %w", err)
	}
	return e.checkAt(ctx, req, consistency)
}

func (e *Engine) checkAt(ctx context.Context, req CheckRequest, consistency *v1.Consistency) (Decision, error) {
	resp, err := e.Permissions.CheckPermission(ctx, &v1.CheckPermissionRequest{
		Consistency: consistency,
		Resource:    objectRef(req.Resource),
		Permission:  req.Permission,
		Subject:     subjectRef(req.Subject, req.SubjectRelation),
	})
	if err != nil {
		return Decision{}, classify("check", err)
	}
	d := Decision{Token: resp.GetCheckedAt().GetToken()}
	switch resp.GetPermissionship() {
	case v1.CheckPermissionResponse_PERMISSIONSHIP_HAS_PERMISSION:
		d.Allowed = true
	case v1.CheckPermissionResponse_PERMISSIONSHIP_CONDITIONAL_PERMISSION:
		d.Conditional = true
	}
	return d, nil
}

// CheckInProcess evaluates req with SpiceDB's in-process checker at the
// newest snapshot (full consistency), skipping gRPC, or at the head that
// withHead put in ctx. req.Consistency is ignored. The returned Decision
// has no Token.
func (e *Engine) CheckInProcess(ctx context.Context, req CheckRequest) (Decision, error) {
	res, err := e.embedded.Check(ctx, embedded.CheckRequest{
		ResourceType:    req.Resource.Type,
		ResourceID:      req.Resource.ID,
		Permission:      req.Permission,
		SubjectType:     req.Subject.Type,
		SubjectID:       req.Subject.ID,
		SubjectRelation: req.SubjectRelation,
	})
	if err != nil {
		return Decision{}, classify("check", err)
	}
	return Decision{Allowed: res.HasPermission, Conditional: res.IsConditional}, nil
}

// Write applies updates atomically, after checking preconditions, and
// returns the consistency token of the new snapshot. The write changes the
// state of the org set by ForOrg on ctx, or else of every org. Within the
// org, it changes one principal's state only when every update names that
// principal (see ForOrg).
func (e *Engine) Write(ctx context.Context, updates []*v1.RelationshipUpdate, preconditions []*v1.Precondition) (string, error) {
	resp, err := e.Permissions.WriteRelationships(ctx, &v1.WriteRelationshipsRequest{
		Updates:                     updates,
		OptionalPreconditions:       preconditions,
		OptionalTransactionMetadata: writeMetadata(ctx, updatesMoveResources(updates), updatesSubject(ctx, updates)),
	})
	if err != nil {
		return "", classify("write relationships", err)
	}
	return resp.GetWrittenAt().GetToken(), nil
}

// DeleteMatching deletes every relationship that filter matches, after
// checking preconditions, and returns the consistency token of the new
// snapshot. Like Write, it changes the state of the org set by ForOrg.
func (e *Engine) DeleteMatching(ctx context.Context, filter *v1.RelationshipFilter, preconditions []*v1.Precondition) (string, error) {
	resp, err := e.Permissions.DeleteRelationships(ctx, &v1.DeleteRelationshipsRequest{
		RelationshipFilter:          filter,
		OptionalPreconditions:       preconditions,
		OptionalTransactionMetadata: writeMetadata(ctx, filterMovesResources(filter), ""),
	})
	if err != nil {
		return "", classify("delete relationships", err)
	}
	return resp.GetDeletedAt().GetToken(), nil
}

// Read returns up to limit relationships that filter matches, at full
// consistency, starting after cursor (nil for the first page). It returns the
// cursor of the last relationship, or nil when fewer than limit matched.
func (e *Engine) Read(ctx context.Context, filter *v1.RelationshipFilter, limit uint32, cursor *v1.Cursor) ([]*v1.Relationship, *v1.Cursor, error) {
	rels, last, _, err := e.ReadWithToken(ctx, filter, limit, cursor)
	return rels, last, err
}

// ReadWithToken does what Read does, and also returns a consistency token
// for the snapshot it read, even when nothing matched.
func (e *Engine) ReadWithToken(ctx context.Context, filter *v1.RelationshipFilter, limit uint32, cursor *v1.Cursor) ([]*v1.Relationship, *v1.Cursor, string, error) {
	consistency, err := e.consistencyFor(ctx, Consistency{})
	if err != nil {
		return nil, nil, "", fmt.Errorf("read relationships: %w", err)
	}
	rels, last, err := e.readAt(ctx, consistency, filter, limit, cursor)
	return rels, last, consistency.GetAtExactSnapshot().GetToken(), err
}

func (e *Engine) readAt(ctx context.Context, consistency *v1.Consistency, filter *v1.RelationshipFilter, limit uint32, cursor *v1.Cursor) ([]*v1.Relationship, *v1.Cursor, error) {
	stream, err := e.Permissions.ReadRelationships(ctx, &v1.ReadRelationshipsRequest{
		Consistency:        consistency,
		RelationshipFilter: filter,
		OptionalLimit:      limit,
		OptionalCursor:     cursor,
	})
	if err != nil {
		return nil, nil, classify("read relationships", err)
	}
	var rels []*v1.Relationship
	var last *v1.Cursor
	for {
		resp, err := stream.Recv()
		if err != nil {
			if isEOF(err) {
				break
			}
			return nil, nil, classify("read relationships", err)
		}
		rels = append(rels, resp.GetRelationship())
		last = resp.GetAfterResultCursor()
	}
	if uint32(len(rels)) < limit {
		last = nil
	}
	return rels, last, nil
}

// Exists reports whether any relationship names ref as its resource.
func (e *Engine) Exists(ctx context.Context, ref object.Ref) (bool, error) {
	rels, _, err := e.Read(ctx, &v1.RelationshipFilter{ResourceType: ref.Type, OptionalResourceId: ref.ID}, 1, nil)
	if err != nil {
		return false, err
	}
	return len(rels) > 0, nil
}

func objectRef(r object.Ref) *v1.ObjectReference {
	return &v1.ObjectReference{ObjectType: r.Type, ObjectId: r.ID}
}

func subjectRef(r object.Ref, relation string) *v1.SubjectReference {
	return &v1.SubjectReference{Object: objectRef(r), OptionalRelation: relation}
}

// classify wraps a gRPC error from SpiceDB with the sentinel callers branch
// on, keeping the original for logs.
func classify(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	if isMaxDepth(st) {
		return fmt.Errorf("%s: %w: %s", op, ErrMaxDepth, st.Message())
	}
	switch st.Code() {
	case codes.AlreadyExists:
		// A create of a relationship that exists already: the same
		// outcome, for callers, as a failed must-not-match precondition.
		return fmt.Errorf("%s: %w: %s", op, ErrPreconditionFailed, st.Message())
	case codes.FailedPrecondition:
		if isTokenProblem(st.Message()) {
			return fmt.Errorf("%s: %w: %s", op, ErrInvalidConsistencyToken, st.Message())
		}
		return fmt.Errorf("%s: %w: %s", op, ErrPreconditionFailed, st.Message())
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.ResourceExhausted, codes.Aborted:
		return fmt.Errorf("%s: %w: %s", op, ErrUnavailable, st.Message())
	case codes.InvalidArgument, codes.OutOfRange:
		if isTokenProblem(st.Message()) {
			return fmt.Errorf("%s: %w: %s", op, ErrInvalidConsistencyToken, st.Message())
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isMaxDepth reports whether st is SpiceDB's maximum depth error. SpiceDB
// marks it with an ErrorInfo reason on most paths; on the check path of
// v1.56.2 it arrives as a plain FailedPrecondition, so the message is the
// fallback.
func isMaxDepth(st *status.Status) bool {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == v1.ErrorReason_ERROR_REASON_MAXIMUM_DEPTH_EXCEEDED.String() {
			return true
		}
	}
	return st.Code() == codes.FailedPrecondition && strings.Contains(st.Message(), "max depth exceeded")
}
