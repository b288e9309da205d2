package middleware

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/gatehouse-authz/gatehouse/internal/problem"
	"github.com/gatehouse-authz/gatehouse/pkg/client"
)

const (
	forbiddenMessage      = "the caller lacks the permission that this request needs"
	checkFailedMessage    = "the permission check failed; retry later"
	noPrincipalMessage    = "the request could not be authorized"
	checkRetryAfterSecond = "1"
)

// RequirePermission returns middleware that calls next only when Gatehouse
// returns a definite yes to POST /v1/check. The check asks whether the
// request's principal has permission (such as "edit") on the resource that
// resource returns for the request (such as "document:d1").
//
// It must run behind Verifier.Handler, which stores the principal. c asks
// the check, so its token must identify a principal that may ask about
// others: one with "inspect" on the resources, which "manage" and a
// service's org "app" role include.
//
// It fails closed. A deny, an empty resource, and a check that Gatehouse
// rejects as invalid, forbidden or not found get 403. Any other failure,
// such as a network error, a 5xx, or Gatehouse rejecting c's token, gets
// 503 with Retry-After, and is logged with slog.Default(). A request
// without a principal gets 500, because that is a wiring error.
//
// RequirePermission panics if c or resource is nil.
func RequirePermission(c *client.Client, permission string, resource func(*http.Request) string) func(http.Handler) http.Handler {
	if c == nil || resource == nil {
		panic("middleware: RequirePermission needs a non-nil client and resource function")
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			logger := slog.Default()

			p, ok := PrincipalFrom(ctx)
			if !ok || p.ID == "" {
				// An empty subject would ask about c's own principal.
				logger.ErrorContext(ctx, "RequirePermission has no verified principal; wrap it in Verifier.Handler")
				problem.Write(w, http.StatusInternalServerError, noPrincipalMessage)
				return
			}
			target := resource(r)
			if target == "" {
				problem.Write(w, http.StatusForbidden, forbiddenMessage)
				return
			}

			resp, err := c.Check(ctx, client.CheckRequest{Subject: p.ID, Permission: permission, Resource: target})
			switch {
			case err == nil && resp.Allowed:
				next.ServeHTTP(w, r)
			case err == nil:
				problem.Write(w, http.StatusForbidden, forbiddenMessage)
			case isDenyingError(err):
				logger.DebugContext(ctx, "permission check rejected", "principal", p.ID, "permission", permission, "resource", target, "error", err)
				problem.Write(w, http.StatusForbidden, forbiddenMessage)
			default:
				logger.WarnContext(ctx, "permission check failed", "principal", p.ID, "permission", permission, "resource", target, "error", err)
				w.Header().Set("Retry-After", checkRetryAfterSecond)
				problem.Write(w, http.StatusServiceUnavailable, checkFailedMessage)
			}
		})
	}
}

// isDenyingError reports whether err is Gatehouse's response that the
// check cannot be asked: invalid (400), forbidden (403) or not found
// (404). A retry of such a check would fail the same way.
func isDenyingError(err error) bool {
	var e *client.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Status == http.StatusBadRequest || e.Status == http.StatusForbidden || e.Status == http.StatusNotFound
}
