package middleware

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

// Messages of rejected requests. Every invalid token gets the same one, so
// that a client cannot probe which check failed. A stale token gets its own
// so that the client knows to exchange its identity provider token again.
const (
	invalidTokenMessage = "the access token is missing, malformed, expired or not trusted"
	staleTokenMessage   = "token is stale; exchange it again"
	unavailableMessage  = "the access token's freshness cannot be checked right now; retry later"
)

// Handler returns a handler that verifies the request's bearer token with
// Verify and calls next with the Principal in the request context (see
// PrincipalFrom).
//
// It responds itself, with RFC 9457 problem details, when the token is
// missing (401 with the challenge of RFC 6750, section 3.1), invalid or
// stale (401 with error="invalid_token"), or its freshness cannot be
// determined (503 with Retry-After). It reads the token only from the
// Authorization header, never from a form or the URL (RFC 6750, sections
// 2.2 and 2.3).
func (v *Verifier) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			problem.Write(w, http.StatusUnauthorized, invalidTokenMessage)
			return
		}

		p, err := v.Verify(r.Context(), raw)
		switch {
		case errors.Is(err, ErrUnavailable):
			v.unavailableErrors.log(v.logger, slog.LevelWarn, "cannot check token freshness", "error", err)
			w.Header().Set("Retry-After", "1")
			problem.Write(w, http.StatusServiceUnavailable, unavailableMessage)
			return
		case errors.Is(err, ErrStale):
			v.logger.DebugContext(r.Context(), "stale token rejected", "reason", err.Error())
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+staleTokenMessage+`"`)
			problem.Write(w, http.StatusUnauthorized, staleTokenMessage)
			return
		case err != nil:
			v.logger.DebugContext(r.Context(), "token rejected", "reason", err.Error())
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+invalidTokenMessage+`"`)
			problem.Write(w, http.StatusUnauthorized, invalidTokenMessage)
			return
		}

		next.ServeHTTP(w, r.WithContext(ContextWithPrincipal(r.Context(), p)))
	})
}

// bearerToken returns the token of the request's single "Authorization:
// Bearer" header. The scheme is case-insensitive (RFC 9110, section 11.1).
func bearerToken(r *http.Request) (string, bool) {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
