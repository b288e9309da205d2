package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

// tokenMessage is the one message every token failure gets, so that clients
// cannot probe which check failed; the reason goes to the log.
const tokenMessage = "the access token is missing, malformed, expired or not trusted"

// staleMessage is the 401 message for a Gatehouse token minted before its principal's
// relationships or sessions changed.
const staleMessage = "the token is stale because the principal's access changed after it was issued; exchange a new one"

// authenticated runs next with the verified principal of the request's
// bearer token in the context, or responds 401.
func (a *api) authenticated(next func(http.ResponseWriter, *http.Request, *authn.Principal)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearerToken(r)
		if !ok {
			a.metrics.AuthFailures.Inc()
			// RFC 6750, section 3.1: a request without credentials gets
			// the challenge without an error code.
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
			problem.Write(w, http.StatusUnauthorized, tokenMessage)
			return
		}
		p, err := a.authn.Authenticate(r.Context(), raw)
		if err != nil {
			a.metrics.AuthFailures.Inc()
			a.authLog.Info(r.Context(), "token rejected", "request_id", RequestID(r.Context()), "reason", err.Error())
			message := tokenMessage
			if errors.Is(err, authn.ErrStaleToken) {
				// Only a correctly signed Gatehouse token can be stale, so
				// the message reveals nothing to a forger.
				message = staleMessage
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="invalid_token", error_description="`+message+`"`)
			problem.Write(w, http.StatusUnauthorized, message)
			return
		}
		r = r.WithContext(authn.ContextWithPrincipal(r.Context(), p))
		next(w, r, p)
	})
}

// bearerToken returns the token of an "Authorization: Bearer" header. The
// scheme is case-insensitive (RFC 9110, section 11.1).
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
