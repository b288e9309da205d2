// Package httpapi serves Gatehouse's HTTP API: JSON in and out, RFC 9457
// problem details for errors, and a bearer access token on every /v1
// request.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gatehouse-authz/gatehouse/internal/audit"
	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/authz"
	"github.com/gatehouse-authz/gatehouse/internal/grants"
	"github.com/gatehouse-authz/gatehouse/internal/links"
	"github.com/gatehouse-authz/gatehouse/internal/metrics"
	"github.com/gatehouse-authz/gatehouse/internal/problem"
	"github.com/gatehouse-authz/gatehouse/internal/tokens"
)

// Authenticator verifies bearer tokens.
type Authenticator interface {
	Authenticate(ctx context.Context, rawToken string) (*authn.Principal, error)
}

// Readiness reports whether the service can serve requests.
type Readiness interface {
	Ready(ctx context.Context) error
}

// Config configures the API handler.
type Config struct {
	// Authz runs the operations. Required.
	Authz *authz.Service

	// Authn verifies bearer tokens. Required.
	Authn Authenticator

	// Ready backs /readyz. Required.
	Ready Readiness

	// Metrics receives request and check metrics. Required.
	Metrics *metrics.Metrics

	// Logger receives one line per failed request. Default: slog.Default().
	Logger *slog.Logger

	// MaxBodyBytes bounds request bodies. Default: 64 KiB.
	MaxBodyBytes int64

	// Extra mounts more handlers, by ServeMux pattern, such as the dev
	// issuer's. They take no query parameters: a request with any gets
	// 400 before the handler runs. Default: none.
	Extra map[string]http.Handler

	// Decisions, when set, receives a sample of check decisions.
	// Default: nil, no decision log.
	Decisions *DecisionLog

	// Tokens issues Gatehouse's own tokens. Default: nil, which turns token
	// exchange, introspection and the issuer's discovery off.
	Tokens *tokens.Issuer

	// Gateways may read every principal's auth version and follow the
	// stream of changes. Default: none.
	Gateways []string

	// Grants serves the temporary grant endpoints. Default: nil, none.
	Grants *grants.Service

	// Links serves the share link endpoints. Default: nil, none.
	Links *links.Service

	// Audit serves GET /v1/audit. Required.
	Audit audit.Log

	// PlatformAuditors may read every org's audit events. Default: none.
	PlatformAuditors []string

	// TrustedProxies are the networks whose X-Forwarded-For header is
	// believed when recording client addresses. Default: none, so the
	// direct peer is the client.
	TrustedProxies []netip.Prefix
}

type api struct {
	grants   *grants.Service
	links    *links.Service
	tokens   *tokens.Issuer
	gateways []string

	authLog   *rateLimitedLog
	decisions *DecisionLog

	audit            audit.Log
	platformAuditors []string
	trustedProxies   []netip.Prefix

	authz   *authz.Service
	authn   Authenticator
	ready   Readiness
	metrics *metrics.Metrics
	logger  *slog.Logger
	maxBody int64
}

// New returns the API handler.
func New(cfg Config) http.Handler {
	a := &api{
		authz: cfg.Authz, authn: cfg.Authn, ready: cfg.Ready, metrics: cfg.Metrics,
		logger: cfg.Logger, maxBody: cfg.MaxBodyBytes,
		audit: cfg.Audit, platformAuditors: cfg.PlatformAuditors, trustedProxies: cfg.TrustedProxies,
		tokens: cfg.Tokens, gateways: cfg.Gateways,
		grants: cfg.Grants, links: cfg.Links,
	}
	if a.logger == nil {
		a.logger = slog.Default()
	}
	if a.maxBody <= 0 {
		a.maxBody = 64 << 10
	}
	// Token failures are counted in metrics; the log keeps a sample of at
	// most 10 reasons a second.
	a.authLog = newRateLimitedLog(a.logger, 10, time.Second)
	a.decisions = cfg.Decisions

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", a.metrics.Handler())

	mux.Handle("GET /v1/me", a.authenticated(a.me))
	mux.Handle("POST /v1/resources", a.authenticated(a.createResource))
	mux.Handle("DELETE /v1/resources/{type}/{id}", a.authenticated(a.deleteResource))
	mux.Handle("GET /v1/resources/{type}/{id}/members", a.authenticated(a.listMembers))
	mux.Handle("GET /v1/resources/{type}/{id}/members/{subject}", a.authenticated(a.getMember))
	mux.Handle("PUT /v1/resources/{type}/{id}/members/{subject}", a.authenticated(a.setMember))
	mux.Handle("DELETE /v1/resources/{type}/{id}/members/{subject}", a.authenticated(a.removeMember))
	mux.Handle("POST /v1/check", a.authenticated(a.check))
	mux.Handle("POST /v1/check/bulk", a.authenticated(a.checkBulk))
	mux.Handle("POST /v1/lookup/resources", a.authenticated(a.lookupResources))
	mux.Handle("POST /v1/lookup/subjects", a.authenticated(a.lookupSubjects))
	mux.Handle("GET /v1/audit", a.authenticated(a.listAudit))
	mux.Handle("GET /v1/principals/{principal}/auth-version", a.authenticated(a.authVersion))
	mux.Handle("POST /v1/principals/{principal}/revoke-sessions", a.authenticated(a.revokeSessions))
	mux.Handle("GET /v1/auth-versions/stream", a.authenticated(a.streamAuthVersions))
	if a.tokens != nil {
		mux.HandleFunc("POST /oauth2/token", a.exchangeToken)
		mux.Handle("POST /oauth2/introspect", a.authenticated(a.introspect))
		mux.HandleFunc("GET /.well-known/openid-configuration", a.discovery)
		mux.HandleFunc("GET /.well-known/jwks.json", a.jwks)
	}
	if a.grants != nil {
		a.registerGrantRoutes(mux)
	}
	if a.links != nil {
		a.registerLinkRoutes(mux)
	}
	for pattern, h := range cfg.Extra {
		mux.Handle(pattern, h)
	}
	return a.observe(serveRoutes(mux))
}

// serveRoutes serves requests with mux after checking their path and query
// (see checkPath and checkQuery). It responds to requests that match no
// route with problem details: 405 with an Allow header when the path exists
// for other methods (RFC 9110, section 15.5.6), 404 otherwise.
func serveRoutes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !checkPath(w, r) {
			return
		}
		h, pattern := mux.Handler(r)
		if pattern != "" {
			// Set as mux.ServeHTTP would, so that metrics count a rejected
			// query under its route.
			r.Pattern = pattern
			if !checkQuery(w, r, pattern) {
				return
			}
			// A GET's parameters go in the query; a body would be dropped
			// unread, like a DELETE's (see queryReason).
			if (r.Method == http.MethodGet || r.Method == http.MethodHead) && hasBody(r) {
				problem.Write(w, http.StatusBadRequest, r.Method+" requests take no body; send parameters in the query")
				return
			}
			mux.ServeHTTP(w, r)
			return
		}
		// The mux's own handler decides between 404 and 405; capture its
		// status and restate it as a problem.
		capture := &headerCapture{header: http.Header{}, status: http.StatusOK}
		h.ServeHTTP(capture, r)
		if capture.status == http.StatusMethodNotAllowed {
			allow := capture.header.Get("Allow")
			w.Header().Set("Allow", allow)
			problem.Write(w, http.StatusMethodNotAllowed, "method "+methodInDetail(r.Method)+" is not allowed on "+clip(r.URL.EscapedPath(), maxEchoInDetail)+"; allowed: "+allow)
			return
		}
		// The escaped path, because the decoded one may name another
		// endpoint: "/v1/resources/document%2Fd1" would read as
		// "/v1/resources/document/d1".
		problem.Write(w, http.StatusNotFound, "no such endpoint: "+methodInDetail(r.Method)+" "+clip(r.URL.EscapedPath(), maxEchoInDetail))
	})
}

// maxMethodInDetail and maxEchoInDetail bound how many bytes of a
// request's method, and of its path or a parameter name, a problem detail
// repeats. net/http accepts any of them up to the header limit (64 KiB).
const (
	maxMethodInDetail = 32
	maxEchoInDetail   = 256
)

// methodInDetail returns method as problem details name it.
func methodInDetail(method string) string { return clip(method, maxMethodInDetail) }

// clip returns s whole when it has at most max bytes, else its first
// bytes, cut before a character and before a percent-encoded byte, and
// its length.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	switch {
	case cut >= 1 && s[cut-1] == '%':
		cut--
	case cut >= 2 && s[cut-2] == '%':
		cut -= 2
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:cut], len(s))
}

// headerCapture is a ResponseWriter that keeps the status and headers and
// discards the body.
type headerCapture struct {
	header http.Header
	status int
}

func (c *headerCapture) Header() http.Header         { return c.header }
func (c *headerCapture) Write(b []byte) (int, error) { return len(b), nil }
func (c *headerCapture) WriteHeader(status int)      { c.status = status }

func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.ready.Ready(ctx); err != nil {
		a.logger.WarnContext(ctx, "not ready", "error", err)
		w.Header().Set("Retry-After", "1")
		problem.Write(w, http.StatusServiceUnavailable, "not ready")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// requestIDPattern accepts caller-chosen request ids that are safe to log.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// observe assigns a request id, recovers from panics, logs failures and
// records metrics for every request.
func (a *api) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !requestIDPattern.MatchString(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		ctx := contextWithRequestID(r.Context(), id)
		r = r.WithContext(ctx)

		defer func() {
			if p := recover(); p != nil {
				a.logger.ErrorContext(ctx, "panic serving request", "request_id", id, "panic", p, "path", r.URL.Path)
				if !rec.wrote {
					problem.Write(rec, http.StatusInternalServerError, "internal error")
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			a.metrics.Requests.WithLabelValues(route, metrics.MethodLabel(r.Method), strconv.Itoa(rec.status)).Inc()
			a.metrics.Latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(rec, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Flush lets streaming handlers flush through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type requestIDKey struct{}

func contextWithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the id of the request that ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
