package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/object"
	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

func stringsCutSemicolon(s string) (string, string, bool) {
	before, after, found := strings.Cut(s, ";")
	return strings.ToLower(strings.TrimSpace(before)), after, found
}

// isGateway reports whether p may read every principal's auth version.
func (a *api) isGateway(p *authn.Principal) bool {
	return slices.Contains(a.gateways, p.Ref.String())
}

// authVersion serves GET /v1/principals/{principal}/auth-version to the
// principal itself and to configured gateways.
func (a *api) authVersion(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	principal, err := object.ParseSubject(r.PathValue("principal"))
	if err != nil || !principal.IsPrincipal() {
		problem.Write(w, http.StatusBadRequest, "principal must be a user or a service, such as user:corp|alice")
		return
	}
	if principal != p.Ref && !a.isGateway(p) {
		problem.Write(w, http.StatusForbidden, "only the principal itself and configured gateways may read an auth version")
		return
	}
	version, err := a.authz.Versions().Get(r.Context(), principal.String())
	if err != nil {
		problem.Write(w, http.StatusServiceUnavailable, "auth versions are unavailable; retry later")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"principal": principal.String(), "version": version})
}

// revokeSessions serves POST /v1/principals/{principal}/revoke-sessions.
func (a *api) revokeSessions(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	principal, err := object.ParseSubject(r.PathValue("principal"))
	if err != nil || !principal.IsPrincipal() {
		problem.Write(w, http.StatusBadRequest, "principal must be a user or a service, such as user:corp|alice")
		return
	}
	reason, ok := queryReason(w, r)
	if !ok {
		return
	}
	version, err := a.authz.RevokeSessions(r.Context(), a.caller(r, p, reason), principal)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if principal != p.Ref {
		// The version counts changes in every org the principal belongs
		// to, so only the principal itself learns it.
		writeJSON(w, http.StatusOK, map[string]any{"principal": principal.String()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"principal": principal.String(), "version": version})
}

// sseHeartbeat keeps idle streams open through proxies.
const sseHeartbeat = 15 * time.Second

// streamAuthVersions serves GET /v1/auth-versions/stream to configured
// gateways: a server-sent event per raised version, from any instance.
func (a *api) streamAuthVersions(w http.ResponseWriter, r *http.Request, p *authn.Principal) {
	if !a.isGateway(p) {
		problem.Write(w, http.StatusForbidden, "only configured gateways may follow auth versions")
		return
	}
	rc := http.NewResponseController(w)
	// The server's write timeout would cut the stream; it ends with the
	// client or the server instead.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil {
		a.logger.DebugContext(r.Context(), "clear write deadline for event stream", "error", err)
	}

	changes, stop := a.authz.Versions().Subscribe()
	defer stop()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": connected\n\n")
	_ = rc.Flush()

	heartbeat := time.NewTicker(sseHeartbeat)
	defer heartbeat.Stop()
	// The stream lives no longer than the token that opened it.
	expired := time.NewTimer(time.Until(p.Expiry))
	defer expired.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-expired.C:
			fmt.Fprint(w, "event: reset\ndata: {\"reason\":\"token expired\"}\n\n")
			_ = rc.Flush()
			return
		case <-heartbeat.C:
			// The stream lives no longer than the caller's right to it: a
			// revoked, stale or expired token ends it.
			if raw, ok := bearerToken(r); !ok || !a.stillValid(r, raw) {
				fmt.Fprint(w, "event: reset\ndata: {\"reason\":\"token no longer valid\"}\n\n")
				_ = rc.Flush()
				return
			}
			fmt.Fprint(w, ": heartbeat\n\n")
		case c, ok := <-changes:
			if !ok {
				// Too slow to keep up: the client reconnects and rereads.
				fmt.Fprint(w, "event: reset\ndata: {}\n\n")
				_ = rc.Flush()
				return
			}
			data, _ := json.Marshal(c)
			fmt.Fprintf(w, "event: auth-version\ndata: %s\n\n", data)
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// stillValid reports whether raw still authenticates the caller of r.
func (a *api) stillValid(r *http.Request, raw string) bool {
	_, err := a.authn.Authenticate(r.Context(), raw)
	return err == nil
}
