package httpapi

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

// Token exchange values of RFC 8693.
const (
	grantTokenExchange  = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess     = "urn:ietf:params:oauth:token-type:access_token"
	tokenTypeJWT        = "urn:ietf:params:oauth:token-type:jwt"
	maxOAuthRequestSize = 16 << 10
)

// oauthError writes an OAuth 2.0 error response (RFC 6749, section 5.2),
// which token and introspection clients expect in place of problem details.
func oauthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
}

// exchangeToken serves POST /oauth2/token: it trades an access token from
// a trusted issuer for a Gatehouse token (RFC 8693). The subject token is
// the only credential, verified like any bearer token.
func (a *api) exchangeToken(w http.ResponseWriter, r *http.Request) {
	if !a.parseForm(w, r) {
		return
	}
	form := r.PostForm
	for _, name := range []string{"grant_type", "subject_token", "subject_token_type", "requested_token_type", "audience", "resource", "scope", "actor_token", "actor_token_type"} {
		if len(form[name]) > 1 {
			oauthError(w, http.StatusBadRequest, "invalid_request", name+" appears more than once")
			return
		}
	}
	switch {
	case form.Get("grant_type") != grantTokenExchange:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be "+grantTokenExchange)
		return
	case form.Get("subject_token") == "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "subject_token is required")
		return
	case form.Get("subject_token_type") != tokenTypeAccess && form.Get("subject_token_type") != tokenTypeJWT:
		oauthError(w, http.StatusBadRequest, "invalid_request", "subject_token_type must be "+tokenTypeAccess)
		return
	case form.Get("requested_token_type") != "" && form.Get("requested_token_type") != tokenTypeAccess:
		oauthError(w, http.StatusBadRequest, "invalid_request", "requested_token_type must be "+tokenTypeAccess)
		return
	case form.Has("actor_token") || form.Has("actor_token_type"):
		oauthError(w, http.StatusBadRequest, "invalid_request", "actor_token is not supported")
		return
	}
	if aud := form.Get("audience"); aud != "" && !slices.Contains(a.tokens.Audiences(), aud) {
		oauthError(w, http.StatusBadRequest, "invalid_target", "audience must be one of the configured audiences")
		return
	}
	if form.Get("resource") != "" {
		oauthError(w, http.StatusBadRequest, "invalid_target", "resource is not supported; name the audience instead")
		return
	}
	if form.Get("scope") != "" {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "scope is not supported: Gatehouse tokens carry no scopes")
		return
	}

	p, err := a.authn.Authenticate(r.Context(), form.Get("subject_token"))
	if err != nil {
		a.metrics.AuthFailures.Inc()
		a.authLog.Info(r.Context(), "subject token rejected", "request_id", RequestID(r.Context()), "reason", err.Error())
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the subject token is missing, malformed, expired or not trusted")
		return
	}
	if p.Issuer == a.tokens.URL() {
		// Exchanging Gatehouse's own tokens would let a session outlive
		// the identity provider's token it started from.
		oauthError(w, http.StatusBadRequest, "invalid_grant", "a Gatehouse token cannot be exchanged; exchange the identity provider's token")
		return
	}

	minted, err := a.tokens.Mint(r.Context(), p.Ref.String(), p.Expiry, form.Get("audience"))
	if err != nil {
		a.logger.WarnContext(r.Context(), "mint token", "request_id", RequestID(r.Context()), "principal", p.Ref.String(), "error", err)
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the token could not be issued; retry later")
		return
	}
	after := map[string]string{
		"token_id":     minted.ID,
		"auth_version": strconv.FormatInt(minted.AuthVersion, 10),
		"expires_at":   minted.Expiry.UTC().Format(time.RFC3339),
	}
	if err := a.authz.RecordEvent(r.Context(), a.caller(r, p, ""), "token.exchange", p.Ref, after); err != nil {
		// An exchange that cannot be recorded is not handed out.
		a.logger.WarnContext(r.Context(), "record token exchange", "request_id", RequestID(r.Context()), "error", err)
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the exchange could not be recorded; retry later")
		return
	}

	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken:     minted.Token,
		IssuedTokenType: tokenTypeAccess,
		TokenType:       "Bearer",
		ExpiresIn:       int64(time.Until(minted.Expiry).Seconds()),
	})
}

// introspect serves POST /oauth2/introspect (RFC 7662) for Gatehouse's own
// tokens. The caller authenticates with a bearer token of its own, as RFC
// 7662, section 2.1 requires. Any token that does not verify now, whether
// expired, stale, signed by an unknown key or not Gatehouse's, is
// {"active": false}.
func (a *api) introspect(w http.ResponseWriter, r *http.Request, caller *authn.Principal) {
	// RFC 7662, section 4: only protected resources, that is apps, may
	// learn about other principals' tokens.
	if caller.Ref.Type != "service" {
		oauthError(w, http.StatusForbidden, "insufficient_scope", "only services may introspect tokens")
		return
	}
	if !a.parseForm(w, r) {
		return
	}
	token := r.PostForm.Get("token")
	if token == "" || len(r.PostForm["token"]) > 1 {
		oauthError(w, http.StatusBadRequest, "invalid_request", "exactly one token is required")
		return
	}
	p, err := a.authn.Authenticate(r.Context(), token)
	if err != nil || p.Issuer != a.tokens.URL() {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	version, err := a.authz.Versions().Get(r.Context(), p.Ref.String())
	if err != nil {
		problem.Write(w, http.StatusServiceUnavailable, "auth versions are unavailable; retry later")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"active":     true,
		"iss":        p.Issuer,
		"sub":        p.Ref.String(),
		"client_id":  p.Ref.String(),
		"token_type": "Bearer",
		"exp":        p.Expiry.Unix(),
		"jti":        p.TokenID,
		"av":         version,
		"aud":        a.tokens.Audiences(),
	})
}

// parseForm reads an application/x-www-form-urlencoded body of bounded
// size and rejects a request with a query. On failure it has written an
// OAuth error.
func (a *api) parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxOAuthRequestSize)
	if ct := r.Header.Get("Content-Type"); !isFormContentType(ct) {
		oauthError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
		return false
	}
	// Checked before ParseForm, which parses the query too and would
	// report a malformed query as a malformed body.
	if len(r.URL.RawQuery) > 0 {
		oauthError(w, http.StatusBadRequest, "invalid_request", "parameters belong in the body, not in the URL query")
		return false
	}
	if err := r.ParseForm(); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			oauthError(w, http.StatusRequestEntityTooLarge, "invalid_request", "request body is too large")
			return false
		}
		oauthError(w, http.StatusBadRequest, "invalid_request", "request body is not a valid form")
		return false
	}
	return true
}

func isFormContentType(ct string) bool {
	mediaType, _, _ := stringsCutSemicolon(ct)
	return mediaType == "application/x-www-form-urlencoded"
}

func (a *api) discovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, a.tokens.Discovery())
}

func (a *api) jwks(w http.ResponseWriter, r *http.Request) {
	set, err := a.tokens.JWKS(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, set)
}
