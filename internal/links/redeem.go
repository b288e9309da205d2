package links

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"

	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// lookup returns the link of token for a request from client. Unknown
// tokens drain client's bucket of the failure limiter; once it is empty,
// every lookup from client fails with *RateLimitedError until it refills.
func (s *Service) lookup(ctx context.Context, client, token string) (Link, error) {
	if wait := s.failures.wait(client); wait > 0 {
		return Link{}, &RateLimitedError{RetryAfter: wait}
	}

	l, err := Link{}, errNoLink
	if wellFormed(token) {
		l, err = s.store.ByTokenHash(ctx, hashToken(token))
	}
	if errors.Is(err, errNoLink) {
		s.failures.miss(client)
		s.misses.Inc()
		s.logger.DebugContext(ctx, "unknown link token", "client_ip", client)
		return Link{}, ErrTokenNotFound
	}
	return l, err
}

// Redemption is the role on a resource that a redeemed link gives its
// holder, until ExpiresAt when set.
type Redemption struct {
	Resource  object.Ref
	Role      string
	ExpiresAt *time.Time
}

// Redeem makes caller, a user, a holder of token's link, until the link
// ends. Redeeming a link twice counts once, and a repeat by a user who
// still holds the link writes nothing, records no audit event and raises
// no auth version. Every reason a token cannot be redeemed (unknown,
// revoked, expired, used up, resource deleted, or an org link and a caller
// outside the org) returns ErrTokenNotFound, so the response does not tell
// them apart.
func (s *Service) Redeem(ctx context.Context, caller authz.Caller, token string) (Redemption, error) {
	if caller.Ref.Type != object.TypeUser {
		return Redemption{}, fmt.Errorf("%w: only users can redeem share links, not %s", authz.ErrForbidden, caller.Ref)
	}
	l, err := s.lookup(ctx, caller.ClientIP, token)
	if err != nil {
		return Redemption{}, err
	}
	principal := caller.Ref.String()

	// Cheap checks on the record first; the store's counter decides in the
	// end, under concurrency.
	state := l.StateAt(s.now())
	if state != StateActive && state != StateExhausted {
		return Redemption{}, ErrTokenNotFound
	}
	if state == StateExhausted {
		redeemed, err := s.store.Redeemed(ctx, l.ID, principal)
		if err != nil {
			return Redemption{}, err
		}
		if !redeemed {
			return Redemption{}, ErrTokenNotFound
		}
	}

	// The resource must still grant the link: deleting the resource
	// deleted that relationship, and re-creating it did not bring it back.
	if l, err = s.noticeOrphan(ctx, l); err != nil {
		return Redemption{}, err
	}
	if l.State != StateActive {
		return Redemption{}, ErrTokenNotFound
	}
	if l.Audience == AudienceOrg {
		member, err := s.authz.Allowed(ctx, caller.Ref, "view", l.Org)
		if err != nil {
			return Redemption{}, err
		}
		if !member {
			return Redemption{}, ErrTokenNotFound
		}
	}

	// Concurrent redemptions of this link by this user would each find no
	// holder yet and record an event. Taken one at a time, the later ones
	// find the holder that the first wrote.
	mu := &s.redeeming[redeemStripe(l.ID, principal)]
	mu.Lock()
	defer mu.Unlock()

	// A holder whose redemption was counted gains nothing by redeeming
	// again. The Store alone cannot tell, because a process that stopped
	// after counting may have left no holder relationship.
	isHolder, err := s.hasHolder(ctx, l, caller.Ref)
	if err != nil {
		return Redemption{}, err
	}
	if isHolder {
		redeemed, err := s.store.Redeemed(ctx, l.ID, principal)
		if err != nil {
			return Redemption{}, err
		}
		if redeemed {
			return Redemption{Resource: l.Resource, Role: l.Role, ExpiresAt: l.ExpiresAt}, nil
		}
	}

	// NOTE: the lock above is per process. Two concurrent first
	// redemptions by one user through two Gatehouse processes both find no
	// holder relationship, so both write it and record an event. The Store
	// still counts one use.
	holderState := map[string]string{"link": l.ID, "role": l.Role}
	before := map[string]string{}
	if isHolder {
		// The relationship is there but the redemption was not counted,
		// so this one counts a use and changes no access.
		before = holderState
	}
	change, err := s.authz.Begin(ctx, caller, authz.Change{
		Org: l.Org, Action: ActionRedeem, Resource: l.Resource, Subject: caller.Ref,
		Before: before, After: holderState,
	})
	if err != nil {
		return Redemption{}, err
	}
	counted, err := s.store.Redeem(ctx, l.ID, principal, s.now())
	if err != nil {
		change.Failed(ctx)
		if errors.Is(err, errUsedUp) {
			return Redemption{}, ErrTokenNotFound
		}
		return Redemption{}, err
	}
	var zed string
	err = s.authz.WithBumps(ctx, []string{principal}, func() error {
		var err error
		// Only l.Resource, in l.Org, names the link.
		zed, err = s.authz.Engine().Write(engine.ForOrg(ctx, l.Org.ID), []*v1.RelationshipUpdate{{
			Operation:    v1.RelationshipUpdate_OPERATION_TOUCH,
			Relationship: relationship(linkRef(l.ID), holderRelation, caller.Ref, "", expiration(l)),
		}}, nil)
		return err
	})
	if err != nil {
		change.Failed(ctx)
		if counted {
			if undoErr := s.store.Unredeem(context.WithoutCancel(ctx), l.ID, principal); undoErr != nil {
				s.logger.ErrorContext(ctx, "undo the count of a failed redemption; the link has one use fewer left",
					"link_id", l.ID, "error", undoErr)
			}
		}
		return Redemption{}, err
	}
	change.Applied(ctx, zed)
	return Redemption{Resource: l.Resource, Role: l.Role, ExpiresAt: l.ExpiresAt}, nil
}

// CheckToken checks whether an anonymous holder of token has permission
// on resource, as subject link:L of token's link L. Only links with
// audience "anyone" can allow. Every other token, known or not, is a deny. Reaching max_uses does not end anonymous access. The caller
// needs no permission of its own, because the token is the credential.
// Only unknown tokens count against client's failure limit.
func (s *Service) CheckToken(ctx context.Context, client, token, permission string, resource object.Ref, consistency engine.Consistency) (engine.Decision, error) {
	if !slices.Contains(authz.Permissions, permission) {
		return engine.Decision{}, invalid("permission %q is not one of %v", permission, authz.Permissions)
	}
	if !object.IsResourceType(resource.Type) {
		return engine.Decision{}, invalid("resource type %q cannot be checked", resource.Type)
	}

	l, err := s.lookup(ctx, client, token)
	if errors.Is(err, ErrTokenNotFound) {
		return engine.Decision{}, nil
	}
	if err != nil {
		return engine.Decision{}, err
	}
	state := l.StateAt(s.now())
	if l.Audience != AudienceAnyone || (state != StateActive && state != StateExhausted) {
		return engine.Decision{}, nil
	}

	d, err := s.authz.Engine().Check(ctx, engine.CheckRequest{
		Resource: resource, Permission: permission, Subject: linkRef(l.ID), Consistency: consistency,
	})
	if errors.Is(err, engine.ErrMaxDepth) {
		return engine.Decision{}, nil
	}
	if err != nil {
		return engine.Decision{}, err
	}
	return engine.Decision{Allowed: d.Allowed, Token: d.Token}, nil
}

// redeemStripe picks the lock of Service.redeeming for one link and user.
func redeemStripe(linkID, principal string) int {
	h := fnv.New32a()
	h.Write([]byte(linkID))
	h.Write([]byte{0})
	h.Write([]byte(principal))
	return int(h.Sum32() % redeemStripes)
}
