// Package links manages share links: secret tokens that give a role on a
// resource to whoever holds or redeems them.
//
// A link L with role R on resource X is stored as SpiceDB relationships:
// X#R@link:L#holder for the users who redeem it (link:L#holder@user:U), and,
// for audience "anyone", X#R@link:L for anonymous holders of the token.
// Every one of them carries the link's expiration, if it has one. Ending a
// link deletes the relationships from X, which ends every holder's access
// at once. The token itself is never stored: the Store keeps its SHA-256
// digest.
package links

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/expiry"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// Roles a link may grant.
const (
	RoleViewer = "viewer"
	RoleEditor = "editor"
)

// Audiences of a link.
const (
	// AudienceAnyone lets anonymous holders of the token use it through a
	// check, and any authenticated user redeem it.
	AudienceAnyone = "anyone"

	// AudienceOrg lets only principals who can view the resource's org
	// redeem it, and gives anonymous holders nothing.
	AudienceOrg = "org"
)

// States of a link as the API reports them. The Store keeps only active,
// revoked and expired; exhausted is an active link whose uses reached its
// maximum.
const (
	StateActive    = "active"
	StateRevoked   = "revoked"
	StateExpired   = "expired"
	StateExhausted = "exhausted"
)

// Audit actions.
const (
	ActionCreate = "link.create"
	ActionRedeem = "link.redeem"
	ActionRevoke = "link.revoke"
)

// MaxUsesLimit is the largest max_uses a link may have.
const MaxUsesLimit = 1000000

// Errors that callers branch on.
var (
	// ErrTokenNotFound means a token names no link that the caller may
	// use. Unknown, revoked, expired, used-up and other-audience tokens all
	// return it, so that the response reveals nothing about the token.
	ErrTokenNotFound = errors.New("link token not found")

	// ErrLinkNotFound means no link has the requested id.
	ErrLinkNotFound = fmt.Errorf("%w: link", authz.ErrNotFound)
)

// RateLimitedError means the client sent too many unknown tokens and must
// wait RetryAfter before it may look up another.
type RateLimitedError struct {
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many unknown link tokens; retry after %s", e.RetryAfter.Round(time.Second))
}

// Link is a share link as stored, without its token.
type Link struct {
	ID        string
	TokenHash []byte
	Resource  object.Ref
	Org       object.Ref
	Role      string
	Audience  string
	ExpiresAt *time.Time // nil: the link does not expire
	MaxUses   int        // 0: unlimited redemptions
	Uses      int
	CreatedBy string
	CreatedAt time.Time
	State     string // StateActive, StateRevoked or StateExpired
}

// StateAt returns the state of l as the API reports it at now: expired as
// soon as its end passes, even before the scheduler records it, and
// exhausted when an active link has no redemptions left.
func (l Link) StateAt(now time.Time) string {
	if l.State != StateActive {
		return l.State
	}
	if l.ExpiresAt != nil && !now.Before(*l.ExpiresAt) {
		return StateExpired
	}
	if l.MaxUses > 0 && l.Uses >= l.MaxUses {
		return StateExhausted
	}
	return StateActive
}

// Config configures a Service.
type Config struct {
	// Authz supplies the engine, permission checks, auth versions and the
	// audit log. Required.
	Authz *authz.Service

	// Store keeps the link records. Required: NewMemoryStore or
	// NewPostgresStore.
	Store Store

	// Logger receives the scheduler's events. Default: slog.Default().
	Logger *slog.Logger

	// Now is the clock. Default: time.Now.
	Now func() time.Time

	// SweepInterval is how often Run looks for expired links and for links
	// whose resource was deleted. Default: 30s.
	SweepInterval time.Duration

	// FailureBurst is how many unknown tokens one client IP may send in a
	// row before it is rate limited. Default: 10.
	FailureBurst int

	// FailureRefill is how long one more unknown token takes to be allowed
	// again. Default: 6s, so 10 a minute.
	FailureRefill time.Duration
}

// Service manages share links. It is safe for concurrent use.
type Service struct {
	authz    *authz.Service
	store    Store
	logger   *slog.Logger
	now      func() time.Time
	interval time.Duration
	failures *limiter
	misses   prometheus.Counter
	lead     expiry.Lead // lead before expires_at at which the scheduler ends links

	// redeeming serializes, within this process, the redemptions of one
	// link by one user (see Redeem), by a hash of the pair.
	redeeming [redeemStripes]sync.Mutex
}

// redeemStripes is the number of locks that Redeem spreads links and users
// over.
const redeemStripes = 64

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Authz == nil || cfg.Store == nil {
		return nil, errors.New("links: Authz and Store are required")
	}
	s := &Service{
		authz:    cfg.Authz,
		store:    cfg.Store,
		logger:   cfg.Logger,
		now:      cfg.Now,
		interval: cfg.SweepInterval,
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.interval <= 0 {
		s.interval = 30 * time.Second
	}
	burst, refill := cfg.FailureBurst, cfg.FailureRefill
	if burst <= 0 {
		burst = 10
	}
	if refill <= 0 {
		refill = 6 * time.Second
	}
	s.failures = newLimiter(burst, refill, s.now)
	s.misses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_link_token_misses_total",
		Help: "Link tokens that named no link, in redemptions and anonymous checks.",
	})
	return s, nil
}

// RegisterMetrics registers the Service's metrics on reg. Registering
// twice on the same registry is not an error.
func (s *Service) RegisterMetrics(reg prometheus.Registerer) error {
	err := reg.Register(s.misses)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		return nil
	}
	return err
}

// State returns l's state as the API reports it now; see Link.StateAt.
func (s *Service) State(l Link) string { return l.StateAt(s.now()) }
