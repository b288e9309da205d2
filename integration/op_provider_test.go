package integration

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// The OpenID provider below runs github.com/zitadel/oidc/v3/pkg/op, an
// OpenID Certified provider library, on loopback. Its discovery document,
// key set and tokens all come from that library. The test code supplies only
// the in-memory storage that op requires, with one confidential web client
// for the authorization code flow and one service client for the client
// credentials grant.

const (
	opWebClientID      = "web"
	opWebClientSecret  = "web-secret"
	opServiceClientID  = "billing"
	opServiceSecret    = "billing-secret"
	opRedirectURI      = "http://127.0.0.1/callback"
	opAudience         = "gatehouse"
	opAccessTokenTTL   = 5 * time.Minute
	opServiceTokenMark = "client-credentials"
)

// opProvider is a running zitadel OpenID provider with its storage, and the
// listener it serves on, which tests can stop and start again on the same
// port.
type opProvider struct {
	issuer   string
	addr     string
	storage  *opStorage
	provider *op.Provider

	mu     sync.Mutex
	server *http.Server // nil while stopped

	// keyRequests counts requests to the key set endpoint.
	keyRequests atomic.Int32
}

func startOPProvider(t *testing.T) *opProvider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &opProvider{addr: ln.Addr().String(), storage: newOPStorage(t)}
	p.issuer = "http://" + p.addr

	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		t.Fatal(err)
	}
	config := &op.Config{
		CryptoKey:                cryptoKey,
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		SupportedUILocales:       []language.Tag{language.English},
		DefaultLogoutRedirectURI: opRedirectURI,
	}
	// WithAllowInsecure permits the http issuer URL, which Gatehouse accepts
	// only for loopback hosts.
	provider, err := op.NewOpenIDProvider(p.issuer, config, p.storage, op.WithAllowInsecure())
	if err != nil {
		ln.Close()
		t.Fatalf("op.NewOpenIDProvider: %v", err)
	}
	p.provider = provider

	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

// handler counts key set requests and passes everything to the provider.
func (p *opProvider) handler() http.Handler {
	keysPath := "/" + strings.TrimPrefix(p.provider.KeysEndpoint().Relative(), "/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == keysPath {
			p.keyRequests.Add(1)
		}
		p.provider.ServeHTTP(w, r)
	})
}

func (p *opProvider) serve(ln net.Listener) {
	server := &http.Server{Handler: p.handler(), ReadHeaderTimeout: 10 * time.Second}
	p.mu.Lock()
	p.server = server
	p.mu.Unlock()
	go func() { _ = server.Serve(ln) }()
}

// stop closes the listener and every connection. Requests to the issuer
// then fail with "connection refused".
func (p *opProvider) stop() {
	p.mu.Lock()
	server := p.server
	p.server = nil
	p.mu.Unlock()
	if server != nil {
		_ = server.Close()
	}
}

// restart listens again on the same address.
func (p *opProvider) restart(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	// The port was just released, so a retry covers a slow release.
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// userToken runs the authorization code flow with PKCE for user and
// returns the access token and the ID token that op issued.
func (p *opProvider) userToken(t *testing.T, user string) (accessToken, idToken string) {
	t.Helper()
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	verifier := randomHex(t, 32)

	// 1. The authorization request redirects to the client's login page.
	query := url.Values{
		"client_id":             {opWebClientID},
		"response_type":         {"code"},
		"scope":                 {"openid profile"},
		"redirect_uri":          {opRedirectURI},
		"state":                 {"state-1"},
		"nonce":                 {"nonce-1"},
		"code_challenge":        {oidc.NewSHACodeChallenge(verifier)},
		"code_challenge_method": {"S256"},
	}
	location := redirectTo(t, client, p.provider.AuthorizationEndpoint().Absolute(p.issuer)+"?"+query.Encode())
	requestID := location.Query().Get("authRequestID")
	if requestID == "" {
		t.Fatalf("authorization request redirected to %q, want the login page with authRequestID", location)
	}

	// 2. The login page would authenticate the user; the test marks the
	// request as done and follows op's callback, which issues the code.
	p.storage.completeLogin(t, requestID, user)
	location = redirectTo(t, client, op.AuthCallbackURL(p.provider)(op.ContextWithIssuer(context.Background(), p.issuer), requestID))
	code := location.Query().Get("code")
	if code == "" || location.Query().Get("state") != "state-1" {
		t.Fatalf("callback redirected to %q, want the redirect URI with a code and the state", location)
	}

	// 3. The client redeems the code.
	tokens := p.tokenRequest(t, opWebClientID, opWebClientSecret, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {opRedirectURI},
		"code_verifier": {verifier},
	})
	if tokens.IDToken == "" {
		t.Fatal("token response has no id_token")
	}
	return tokens.AccessToken, tokens.IDToken
}

// serviceToken runs the client credentials grant for the service client.
func (p *opProvider) serviceToken(t *testing.T) string {
	t.Helper()
	return p.tokenRequest(t, opServiceClientID, opServiceSecret, url.Values{
		"grant_type": {"client_credentials"},
		"scope":      {"gatehouse.check"},
	}).AccessToken
}

func (p *opProvider) tokenRequest(t *testing.T, clientID, secret string, form url.Values) *oidc.AccessTokenResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.provider.TokenEndpoint().Absolute(p.issuer), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))

	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	var tokens oidc.AccessTokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tokens); err != nil {
		t.Fatalf("decode token response (status %d): %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || tokens.AccessToken == "" {
		t.Fatalf("token request: status %d, response %+v", resp.StatusCode, tokens)
	}
	return &tokens
}

func redirectTo(t *testing.T, client *http.Client, rawURL string) *url.URL {
	t.Helper()
	resp, err := client.Get(rawURL)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("GET %s: status %d, want a redirect", rawURL, resp.StatusCode)
	}
	location, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("GET %s: invalid Location: %v", rawURL, err)
	}
	return location
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// opStorage is the in-memory op.Storage and op.ClientCredentialsStorage of
// the test provider. Grants that the tests do not use return errors.
type opStorage struct {
	mu           sync.Mutex
	requests     map[string]*opAuthRequest // by id
	codes        map[string]string         // code to request id
	keys         []opKey                   // published, in order of creation
	keysCreated  int
	signingKeyID string
}

var (
	_ op.Storage                        = (*opStorage)(nil)
	_ op.ClientCredentialsStorage       = (*opStorage)(nil)
	_ op.CanGetPrivateClaimsFromRequest = (*opStorage)(nil)
)

var errOPUnsupported = errors.New("not supported by the test provider")

func newOPStorage(t *testing.T) *opStorage {
	s := &opStorage{requests: map[string]*opAuthRequest{}, codes: map[string]string{}}
	s.signingKeyID = s.addKey(t)
	return s
}

// addKey generates an RSA key, publishes it and returns its id. It does not
// sign with it until rotateTo.
func (s *opStorage) addKey(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keysCreated++
	k := opKey{id: fmt.Sprintf("op-key-%d", s.keysCreated), key: key}
	s.keys = append(s.keys, k)
	return k.id
}

// rotateTo signs new tokens with the published key id.
func (s *opStorage) rotateTo(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signingKeyID = id
}

// retire stops publishing the key id.
func (s *opStorage) retire(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = slices.DeleteFunc(s.keys, func(k opKey) bool { return k.id == id })
}

func (s *opStorage) completeLogin(t *testing.T, requestID, user string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[requestID]
	if !ok {
		t.Fatalf("no auth request %q", requestID)
	}
	req.subject = user
	req.authTime = time.Now()
	req.done = true
}

// opKey is one RSA signing key, both op.SigningKey and op.Key.
type opKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k opKey) ID() string                                  { return k.id }
func (k opKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k opKey) Algorithm() jose.SignatureAlgorithm          { return jose.RS256 }
func (k opKey) Use() string                                 { return "sig" }

// Key returns the private key, for op.SigningKey.
func (k opKey) Key() any { return k.key }

// opPublicKey is an opKey as op.Key, whose Key is the public key that op
// publishes in its key set.
type opPublicKey struct{ opKey }

func (k opPublicKey) Key() any { return &k.key.PublicKey }

func (s *opStorage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if k.id == s.signingKeyID {
			return k, nil
		}
	}
	return nil, fmt.Errorf("signing key %q is not published", s.signingKeyID)
}

func (s *opStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *opStorage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]op.Key, 0, len(s.keys))
	for _, k := range s.keys {
		keys = append(keys, opPublicKey{k})
	}
	return keys, nil
}

// Authorization code flow.

func (s *opStorage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprintf("request-%d", len(s.requests)+1)
	r := &opAuthRequest{id: id, req: *req}
	if req.CodeChallenge != "" {
		r.challenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	s.requests[id] = r
	return r, nil
}

func (s *opStorage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok {
		return nil, fmt.Errorf("auth request %q not found", id)
	}
	copied := *r
	return &copied, nil
}

func (s *opStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code not found")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *opStorage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

func (s *opStorage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for code, requestID := range s.codes {
		if requestID == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// Tokens.

func (s *opStorage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	return "at-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", ""), time.Now().Add(opAccessTokenTTL), nil
}

func (s *opStorage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errOPUnsupported
}

func (s *opStorage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, errOPUnsupported
}

func (s *opStorage) TerminateSession(context.Context, string, string) error { return nil }

func (s *opStorage) RevokeToken(context.Context, string, string, string) *oidc.Error { return nil }

func (s *opStorage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

// GetPrivateClaimsFromRequest adds the granted scopes as "scope" (RFC 9068,
// section 2.2.3), which op leaves out of JWT access tokens, and marks client
// credentials tokens with gty, as Auth0 does.
func (s *opStorage) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, scopes []string) (map[string]any, error) {
	claims := map[string]any{"scope": strings.Join(append([]string{"openid"}, scopes...), " ")}
	if _, ok := req.(*opClientCredentialsRequest); ok {
		claims["gty"] = opServiceTokenMark
	}
	return claims, nil
}

// Clients.

func (s *opStorage) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	switch clientID {
	case opWebClientID:
		return &opClient{id: opWebClientID, grants: []oidc.GrantType{oidc.GrantTypeCode}}, nil
	case opServiceClientID:
		return &opClient{id: opServiceClientID, grants: []oidc.GrantType{oidc.GrantTypeClientCredentials}}, nil
	}
	return nil, fmt.Errorf("client %q not found", clientID)
}

func (s *opStorage) AuthorizeClientIDSecret(_ context.Context, clientID, secret string) error {
	want := map[string]string{opWebClientID: opWebClientSecret, opServiceClientID: opServiceSecret}[clientID]
	if want == "" || secret != want {
		return errors.New("invalid client credentials")
	}
	return nil
}

func (s *opStorage) ClientCredentials(ctx context.Context, clientID, secret string) (op.Client, error) {
	if clientID != opServiceClientID {
		return nil, fmt.Errorf("client %q may not use client credentials", clientID)
	}
	if err := s.AuthorizeClientIDSecret(ctx, clientID, secret); err != nil {
		return nil, err
	}
	return s.GetClientByClientID(ctx, clientID)
}

func (s *opStorage) ClientCredentialsTokenRequest(_ context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	return &opClientCredentialsRequest{subject: clientID, scopes: scopes}, nil
}

// User info, introspection and JWT profile: not used by Gatehouse.

func (s *opStorage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *opStorage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errOPUnsupported
}

func (s *opStorage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errOPUnsupported
}

func (s *opStorage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *opStorage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errOPUnsupported
}

func (s *opStorage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errOPUnsupported
}

func (s *opStorage) Health(context.Context) error { return nil }

// opAuthRequest is one authorization request, op.AuthRequest.
type opAuthRequest struct {
	id        string
	req       oidc.AuthRequest
	challenge *oidc.CodeChallenge
	subject   string
	authTime  time.Time
	done      bool
}

func (r *opAuthRequest) GetID() string                         { return r.id }
func (r *opAuthRequest) GetACR() string                        { return "" }
func (r *opAuthRequest) GetAMR() []string                      { return []string{"pwd"} }
func (r *opAuthRequest) GetAudience() []string                 { return []string{r.req.ClientID, opAudience} }
func (r *opAuthRequest) GetAuthTime() time.Time                { return r.authTime }
func (r *opAuthRequest) GetClientID() string                   { return r.req.ClientID }
func (r *opAuthRequest) GetCodeChallenge() *oidc.CodeChallenge { return r.challenge }
func (r *opAuthRequest) GetNonce() string                      { return r.req.Nonce }
func (r *opAuthRequest) GetRedirectURI() string                { return r.req.RedirectURI }
func (r *opAuthRequest) GetResponseType() oidc.ResponseType    { return r.req.ResponseType }
func (r *opAuthRequest) GetResponseMode() oidc.ResponseMode    { return r.req.ResponseMode }
func (r *opAuthRequest) GetScopes() []string                   { return r.req.Scopes }
func (r *opAuthRequest) GetState() string                      { return r.req.State }
func (r *opAuthRequest) GetSubject() string                    { return r.subject }
func (r *opAuthRequest) Done() bool                            { return r.done }

// opClientCredentialsRequest is the op.TokenRequest of a client credentials
// grant: the client is the subject.
type opClientCredentialsRequest struct {
	subject string
	scopes  []string
}

func (r *opClientCredentialsRequest) GetSubject() string    { return r.subject }
func (r *opClientCredentialsRequest) GetAudience() []string { return []string{opAudience} }
func (r *opClientCredentialsRequest) GetScopes() []string   { return r.scopes }

// opClient is a confidential client, op.Client, that receives JWT access
// tokens.
type opClient struct {
	id     string
	grants []oidc.GrantType
}

func (c *opClient) GetID() string                       { return c.id }
func (c *opClient) RedirectURIs() []string              { return []string{opRedirectURI} }
func (c *opClient) PostLogoutRedirectURIs() []string    { return nil }
func (c *opClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *opClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *opClient) GrantTypes() []oidc.GrantType { return c.grants }
func (c *opClient) LoginURL(id string) string {
	return "http://127.0.0.1/login?authRequestID=" + url.QueryEscape(id)
}
func (c *opClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *opClient) IDTokenLifetime() time.Duration      { return opAccessTokenTTL }

// DevMode allows the http redirect URI on loopback.
func (c *opClient) DevMode() bool { return true }
func (c *opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}
func (c *opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}
func (c *opClient) IsScopeAllowed(string) bool           { return true }
func (c *opClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *opClient) ClockSkew() time.Duration             { return 0 }
