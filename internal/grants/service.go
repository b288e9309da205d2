package grants

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/expiry"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// Audit actions of grants.
const (
	ActionCreate = "grant.create"
	ActionRevoke = "grant.revoke"
	ActionStart  = "grant.start"
	ActionExpire = "grant.expire"
)

// Service manages temporary grants. It is safe for concurrent use.
type Service struct {
	authz  *authz.Service
	store  Store
	config Config
	logger *slog.Logger
	now    func() time.Time
	lead   expiry.Lead   // lead before expires_at at which the scheduler ends grants
	wake   chan struct{} // signals Run that a grant was created
}

// New returns a Service that keeps grants in store and applies them through
// az.
func New(az *authz.Service, store Store, cfg Config) *Service {
	s := &Service{authz: az, store: store, config: cfg, logger: cfg.Logger, now: cfg.Now, wake: make(chan struct{}, 1)}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.config.BreakGlassMaxDuration <= 0 {
		s.config.BreakGlassMaxDuration = DefaultBreakGlassMaxDuration
	}
	return s
}

// CreateRequest is a request for a grant. Exactly one of ExpiresAt and Duration is
// set; a zero NotBefore means now.
type CreateRequest struct {
	Resource  object.Ref
	Subject   object.Ref
	Role      string
	NotBefore time.Time
	ExpiresAt time.Time
	Duration  time.Duration

	// BreakGlass requests a break-glass grant: the caller grants itself a
	// role without manage, if it is listed in Config.BreakGlass.
	BreakGlass bool
}

// Create records a grant and, when it starts now, writes its
// relationships. The caller needs manage on the resource, except for a
// break-glass grant. c.Reason is required.
func (s *Service) Create(ctx context.Context, c authz.Caller, req CreateRequest) (Grant, error) {
	ctx, cancel := context.WithTimeout(ctx, s.authz.Limits().Timeout)
	defer cancel()

	now := s.now().UTC().Truncate(time.Microsecond)
	g, err := s.validate(c, req, now)
	if err != nil {
		return Grant{}, err
	}

	if req.BreakGlass {
		exists, err := s.authz.Engine().Exists(ctx, g.Resource)
		if err != nil {
			return Grant{}, err
		}
		if !exists {
			return Grant{}, fmt.Errorf("%w: %s", authz.ErrNotFound, g.Resource)
		}
	} else if err := s.authz.Require(ctx, c.Ref, "manage", g.Resource); err != nil {
		return Grant{}, err
	}
	if g.Org, err = s.authz.OrgOf(ctx, g.Resource); err != nil {
		return Grant{}, err
	}
	groupPrecondition, err := s.requireSameOrg(ctx, g)
	if err != nil {
		return Grant{}, err
	}
	if g.Role == "member" {
		// apply tests again, under the nesting lock, before it writes.
		if err := s.authz.RequireNoCycle(ctx, g.Resource, g.Subject); err != nil {
			return Grant{}, err
		}
	}

	if g.BreakGlass {
		s.logger.WarnContext(ctx, "break-glass grant", "grant", g.ID, "principal", g.Grantor,
			"resource", g.Resource.String(), "role", g.Role, "expires_at", g.ExpiresAt, "request_id", c.RequestID)
	}
	change, err := s.authz.Begin(ctx, c, authz.Change{
		Org: g.Org, Action: ActionCreate, Resource: g.Resource, Subject: g.Subject,
		Before: map[string]string{}, After: createdState(g), BreakGlass: g.BreakGlass,
	})
	if err != nil {
		return Grant{}, err
	}
	if err := s.store.Insert(ctx, g); err != nil {
		change.Failed(ctx)
		return Grant{}, err
	}
	// The scheduler may be asleep until later than this grant's start or
	// end: make it read the next due time again.
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if g.State == StateScheduled {
		change.Applied(ctx, "")
		return g, nil
	}

	token, err := s.apply(ctx, g, groupPrecondition)
	if err != nil {
		change.Failed(ctx)
		if delErr := s.store.Delete(context.WithoutCancel(ctx), g.ID); delErr != nil {
			s.logger.ErrorContext(ctx, "remove grant after failed write", "grant", g.ID, "error", delErr)
		}
		if errors.Is(err, errPrecondition) {
			return Grant{}, fmt.Errorf("%w: %s or the group %s", authz.ErrNotFound, g.Resource, g.Subject)
		}
		return Grant{}, err
	}
	change.Applied(ctx, token)
	return g, nil
}

// validate checks req without reading any state and returns the grant it
// describes.
// MaxScheduleAhead bounds how far in the future a grant may start.
const MaxScheduleAhead = 365 * 24 * time.Hour

func (s *Service) validate(c authz.Caller, req CreateRequest, now time.Time) (Grant, error) {
	if !object.IsResourceType(req.Resource.Type) {
		return Grant{}, invalid("resource %q is not an org, workspace, project, document or group", req.Resource)
	}
	switch req.Subject.Type {
	case object.TypeUser, object.TypeService, object.TypeGroup:
	default:
		return Grant{}, invalid("subject %q must be a user, a service or a group", req.Subject)
	}
	if !slices.Contains(GrantableRoles(req.Resource.Type), req.Role) {
		return Grant{}, invalid("role %q cannot be granted temporarily on a %s; valid roles: %v", req.Role, req.Resource.Type, GrantableRoles(req.Resource.Type))
	}
	if req.Subject == req.Resource {
		return Grant{}, invalid("a group cannot be a member of itself")
	}
	if c.Reason == "" {
		return Grant{}, invalid("reason is required")
	}

	start := now
	if !req.NotBefore.IsZero() {
		start = req.NotBefore.UTC()
	}
	if start.After(now.Add(MaxScheduleAhead)) {
		return Grant{}, invalid("not_before %s is more than %s ahead", start.Format(time.RFC3339), MaxScheduleAhead)
	}
	// A not_before in the past means now: the grant cannot start earlier,
	// and a duration counts from the real start.
	if start.Before(now) {
		start = now
	}
	var end time.Time
	switch {
	case req.ExpiresAt.IsZero() && req.Duration == 0:
		return Grant{}, invalid("expires_at or duration is required: a grant must end")
	case !req.ExpiresAt.IsZero() && req.Duration != 0:
		return Grant{}, invalid("give expires_at or duration, not both")
	case req.Duration < 0:
		return Grant{}, invalid("duration %s must be positive", req.Duration)
	case req.Duration > 0 && req.Duration < time.Second:
		return Grant{}, invalid("duration %s must be at least 1s", req.Duration)
	case req.Duration > 0:
		end = start.Add(req.Duration)
	default:
		end = req.ExpiresAt.UTC()
	}
	if !end.After(now) {
		return Grant{}, invalid("expires_at %s is not in the future", end.Format(time.RFC3339))
	}
	if end.Sub(start) < time.Second {
		return Grant{}, invalid("expires_at %s must be at least 1s after not_before %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}

	limit := s.config.maxDuration(req.Role)
	if req.BreakGlass {
		if !slices.Contains(s.config.BreakGlass, c.Ref.String()) {
			return Grant{}, fmt.Errorf("%w: %s may not use break-glass grants", authz.ErrForbidden, c.Ref)
		}
		if req.Subject != c.Ref {
			return Grant{}, invalid("a break-glass grant can only name the caller as its subject")
		}
		limit = min(limit, s.config.BreakGlassMaxDuration)
	}
	if end.Sub(start) > limit {
		return Grant{}, invalid("the grant lasts %s, longer than the maximum of %s for this role", end.Sub(start).Round(time.Second), limit)
	}

	g := Grant{
		ID: newID(), Resource: req.Resource, Subject: req.Subject, Role: req.Role,
		NotBefore: start.Truncate(time.Microsecond), ExpiresAt: end.Truncate(time.Microsecond),
		Grantor: c.Ref.String(), State: StateActive, BreakGlass: req.BreakGlass,
		Reason: c.Reason, CreatedAt: now,
	}
	if start.After(now) {
		g.State = StateScheduled
	}
	return g, nil
}

// requireSameOrg rejects a group of another org, like the members API, and
// returns a precondition that the group still belongs to the resource's org
// when the relationships are written.
func (s *Service) requireSameOrg(ctx context.Context, g Grant) (*v1.Precondition, error) {
	if g.Subject.Type != object.TypeGroup {
		return nil, nil
	}
	groupOrg, err := s.authz.OrgOf(ctx, g.Subject)
	if err != nil || groupOrg != g.Org {
		// Another org's group must look exactly like a missing one.
		return nil, fmt.Errorf("%w: %s", authz.ErrNotFound, g.Subject)
	}
	return groupPrecondition(g), nil
}

func groupPrecondition(g Grant) *v1.Precondition {
	if g.Subject.Type != object.TypeGroup {
		return nil
	}
	return &v1.Precondition{
		Operation: v1.Precondition_OPERATION_MUST_MATCH,
		Filter: &v1.RelationshipFilter{
			ResourceType: g.Subject.Type, OptionalResourceId: g.Subject.ID, OptionalRelation: object.ParentRelation(g.Subject.Type),
			OptionalSubjectFilter: &v1.SubjectFilter{SubjectType: g.Org.Type, OptionalSubjectId: g.Org.ID},
		},
	}
}

// errPrecondition marks a write whose resource or group went away.
var errPrecondition = errors.New("resource or group no longer exists")

// apply writes g's two relationships, between two raises of the auth
// versions of the principals it affects, provided that the resource (and a
// group subject's link to the org) still exist.
func (s *Service) apply(ctx context.Context, g Grant, group *v1.Precondition) (string, error) {
	principals, err := s.authz.Affected(ctx, g.Subject)
	if err != nil {
		return "", err
	}
	// The resource must still be in the grant's org: the write is recorded
	// as a change to that org only, and a resource deleted and created
	// again in another org must not receive the grant.
	org, preconditions, err := s.authz.OrgChain(ctx, g.Resource)
	if errors.Is(err, authz.ErrNotFound) || (err == nil && org != g.Org) {
		return "", fmt.Errorf("%w: %s is no longer in %s", errPrecondition, g.Resource, g.Org)
	}
	if err != nil {
		return "", err
	}
	if group != nil {
		preconditions = append(preconditions, group)
	}
	var token string
	write := func() error {
		return s.authz.WithBumps(ctx, principals, func() error {
			var err error
			token, err = s.authz.Engine().Write(engine.ForSubject(engine.ForOrg(ctx, g.Org.ID), g.Subject), updates(g, v1.RelationshipUpdate_OPERATION_TOUCH), preconditions)
			return err
		})
	}
	if g.Role == "member" {
		// Group membership: a group subject must not close a loop.
		err = s.authz.Nest(ctx, g.Resource, g.Subject, write)
	} else {
		err = write()
	}
	if err != nil && isPrecondition(err) {
		return "", fmt.Errorf("%w: %w", errPrecondition, err)
	}
	return token, err
}

// remove deletes g's relationships between two raises of the affected
// auth versions. Deleting relationships that do not exist changes nothing.
func (s *Service) remove(ctx context.Context, g Grant) (string, error) {
	principals, err := s.authz.Affected(ctx, g.Subject)
	if err != nil {
		return "", err
	}
	var token string
	err = s.authz.WithBumps(ctx, principals, func() error {
		var err error
		// Only a resource of g.Org can hold the grant: apply made sure.
		token, err = s.authz.Engine().Write(engine.ForSubject(engine.ForOrg(ctx, g.Org.ID), g.Subject), updates(g, v1.RelationshipUpdate_OPERATION_DELETE), nil)
		return err
	})
	return token, err
}

// updates returns the two relationship updates of g with operation op.
func updates(g Grant, op v1.RelationshipUpdate_Operation) []*v1.RelationshipUpdate {
	holder := &v1.SubjectReference{Object: &v1.ObjectReference{ObjectType: objectType, ObjectId: g.ID}, OptionalRelation: holderRelation}
	subjectRelation := ""
	if g.Subject.Type == object.TypeGroup {
		subjectRelation = "member"
	}
	role := &v1.Relationship{
		Resource: &v1.ObjectReference{ObjectType: g.Resource.Type, ObjectId: g.Resource.ID},
		Relation: g.Role,
		Subject:  holder,
	}
	if op != v1.RelationshipUpdate_OPERATION_DELETE {
		role.OptionalExpiresAt = timestamppb.New(g.ExpiresAt)
	}
	hold := &v1.Relationship{
		Resource: holder.Object,
		Relation: holderRelation,
		Subject:  &v1.SubjectReference{Object: &v1.ObjectReference{ObjectType: g.Subject.Type, ObjectId: g.Subject.ID}, OptionalRelation: subjectRelation},
	}
	return []*v1.RelationshipUpdate{{Operation: op, Relationship: role}, {Operation: op, Relationship: hold}}
}

func createdState(g Grant) map[string]string {
	return map[string]string{
		"grant": g.ID, "role": g.Role, "subject": g.Subject.String(),
		"not_before": g.NotBefore.Format(time.RFC3339Nano), "expires_at": g.ExpiresAt.Format(time.RFC3339Nano),
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", authz.ErrInvalid, fmt.Sprintf(format, args...))
}
