// Package authz implements Gatehouse's operations on the tenancy model:
// creating and deleting resources, managing their members, and running
// checks and lookups, each after deciding whether the caller may make the
// request.
//
// Every decision here fails closed: only a definite "has permission" from
// SpiceDB allows, and an error from SpiceDB is returned as an error, never
// read as a yes.
package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/audit"
	"github.com/gatehouse-authz/gatehouse/internal/authversion"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// Errors that the HTTP layer maps to status codes. Errors returned by
// Service wrap exactly one of them, or engine.ErrUnavailable, or none for an
// internal failure.
var (
	// ErrInvalid means the request is malformed; nothing was changed.
	ErrInvalid = errors.New("invalid request")

	// ErrNotFound means the object does not exist or lies where the caller
	// cannot see; the two are deliberately indistinguishable.
	ErrNotFound = errors.New("not found")

	// ErrForbidden means the caller can see the object but lacks the
	// permission the operation needs.
	ErrForbidden = errors.New("forbidden")

	// ErrConflict means the request contradicts the current state, such as
	// an id that is taken or removing the last owner of an org.
	ErrConflict = errors.New("conflict")
)

// Limits bounds the work one request may cause. The zero value takes the
// defaults given per field.
type Limits struct {
	// MaxBulkChecks is the most checks one bulk request may carry. Default: 100.
	MaxBulkChecks int

	// MaxPageSize is the largest page a list or lookup returns. Default: 1000.
	MaxPageSize int

	// DefaultPageSize applies when a request names none. Default: 100.
	DefaultPageSize int

	// MaxDeleteObjects is the most objects (the resource and its
	// descendants) one delete removes. Default: 10000.
	MaxDeleteObjects int

	// MaxLookupSubjects is the most subjects a subject lookup collects
	// before paging. Default: 10000.
	MaxLookupSubjects int

	// MaxLookupResources is the most resources a resource lookup collects
	// before paging; a lookup that matches more fails with ErrConflict.
	// Default: 100000.
	MaxLookupResources int

	// Timeout bounds each operation's calls to SpiceDB. Default: 5s.
	Timeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxBulkChecks <= 0 {
		l.MaxBulkChecks = 100
	}
	if l.MaxPageSize <= 0 {
		l.MaxPageSize = 1000
	}
	if l.DefaultPageSize <= 0 {
		l.DefaultPageSize = 100
	}
	if l.MaxDeleteObjects <= 0 {
		l.MaxDeleteObjects = 10000
	}
	if l.MaxLookupSubjects <= 0 {
		l.MaxLookupSubjects = 10000
	}
	if l.MaxLookupResources <= 0 {
		l.MaxLookupResources = 100000
	}
	if l.Timeout <= 0 {
		l.Timeout = 5 * time.Second
	}
	return l
}

// Service runs the tenancy operations against an engine. It is safe for
// concurrent use.
type Service struct {
	engine   *engine.Engine
	recorder *audit.Recorder
	versions authversion.Store
	logger   *slog.Logger
	limits   Limits

	// nesting serializes changes that nest one group in another.
	nesting sync.Mutex
}

// New returns a Service on e that records every change with recorder and
// raises the auth versions of the principals each change affects in
// versions. A nil versions store raises nothing; a nil logger means
// slog.Default().
func New(e *engine.Engine, recorder *audit.Recorder, versions authversion.Store, logger *slog.Logger, limits Limits) *Service {
	if logger == nil {
		logger = slog.Default()
	}
	return &Service{engine: e, recorder: recorder, versions: versions, logger: logger, limits: limits.withDefaults()}
}

// Limits returns the limits in force, defaults filled in.
func (s *Service) Limits() Limits { return s.limits }

// platform is the object every org points to; see the schema.
var platform = object.Ref{Type: object.TypePlatform, ID: "gatehouse"}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// allowed runs one fully consistent check and returns whether it allowed.
// A conditional result is a deny.
func (s *Service) allowed(ctx context.Context, subject object.Ref, permission string, resource object.Ref) (bool, error) {
	d, err := s.engine.Check(ctx, engine.CheckRequest{Resource: resource, Permission: permission, Subject: subject})
	if err != nil {
		return false, err
	}
	return d.Allowed, nil
}

// require returns nil when caller has permission on resource, ErrForbidden
// when it lacks it but can view the resource, and ErrNotFound otherwise, so
// that nothing about objects the caller cannot see leaks.
func (s *Service) require(ctx context.Context, caller object.Ref, permission string, resource object.Ref) error {
	ok, err := s.allowed(ctx, caller, permission, resource)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	visible, err := s.allowed(ctx, caller, "view", resource)
	if err != nil {
		return err
	}
	if visible {
		return fmt.Errorf("%w: %s lacks %q on %s", ErrForbidden, caller, permission, resource)
	}
	return fmt.Errorf("%w: %s", ErrNotFound, resource)
}

// RequireManage returns nil when caller has manage on resource, and
// otherwise ErrForbidden or ErrNotFound as for any other operation.
func (s *Service) RequireManage(ctx context.Context, caller, resource object.Ref) error {
	ctx, cancel := context.WithTimeout(ctx, s.limits.Timeout)
	defer cancel()
	return s.require(ctx, caller, "manage", resource)
}
