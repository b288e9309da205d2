package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/audit"
	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

// problemFor maps an error from authz or engine to the response a client
// receives. Messages of invalid requests and conflicts are shown, because they
// describe the client's own input; internal errors are not.
func problemFor(err error) problem.Details {
	switch {
	case errors.Is(err, authz.ErrInvalid):
		return problem.Details{Status: http.StatusBadRequest, Detail: clientMessage(err, authz.ErrInvalid)}
	case errors.Is(err, engine.ErrInvalidConsistencyToken):
		return problem.Details{Status: http.StatusBadRequest, Detail: "consistency_token is not valid or too old; retry without it"}
	case errors.Is(err, authz.ErrNotFound):
		return problem.Details{Status: http.StatusNotFound, Detail: clientMessage(err, authz.ErrNotFound)}
	case errors.Is(err, authz.ErrForbidden):
		return problem.Details{Status: http.StatusForbidden, Detail: clientMessage(err, authz.ErrForbidden)}
	case errors.Is(err, authz.ErrConflict):
		return problem.Details{Status: http.StatusConflict, Detail: clientMessage(err, authz.ErrConflict)}
	case errors.Is(err, audit.ErrUnavailable):
		return problem.Details{Status: http.StatusServiceUnavailable, Detail: "the audit log could not record the change, so it was not made; retry later"}
	case errors.Is(err, authz.ErrVersionsUnavailable):
		return problem.Details{Status: http.StatusServiceUnavailable, Detail: "auth versions could not be raised, so the change was not made; retry later"}
	case errors.Is(err, engine.ErrMaxDepth):
		return problem.Details{Status: http.StatusConflict, Detail: "the question needs more nested steps than allowed, for example through a loop of group memberships"}
	case errors.Is(err, engine.ErrUnavailable):
		return problem.Details{Status: http.StatusServiceUnavailable, Detail: "the authorization engine did not respond in time; retry later"}
	}
	return problem.Details{Status: http.StatusInternalServerError, Detail: "internal error"}
}

// clientMessage returns err's text from the sentinel on, which is the part
// written for the client.
func clientMessage(err, sentinel error) string {
	msg := err.Error()
	if i := strings.Index(msg, sentinel.Error()); i >= 0 {
		return msg[i:]
	}
	return sentinel.Error()
}

// fail writes the problem for err and logs it: server-side failures at
// error level with the full error, client errors at debug.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	d := problemFor(err)
	if d.Status == http.StatusInternalServerError && !a.isReady(r.Context()) {
		// A failure while the datastore is down is an outage, not a bug:
		// the client may retry, and no decision was made.
		d = problem.Details{Status: http.StatusServiceUnavailable, Detail: "the datastore is unavailable; retry later"}
	}
	if d.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	level := a.logger.DebugContext
	switch {
	case d.Status == http.StatusServiceUnavailable:
		level = a.logger.WarnContext
	case d.Status >= 500:
		level = a.logger.ErrorContext
	}
	level(r.Context(), "request failed", "request_id", RequestID(r.Context()), "status", d.Status, "error", err.Error())
	problem.WriteDetails(w, d)
}

// isReady probes readiness with a short deadline of its own.
func (a *api) isReady(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	return a.ready.Ready(ctx) == nil
}
