package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/config"
)

// opRefreshInterval is the key set refresh interval of the provider's
// issuer entry: long enough for a burst of requests to finish within it.
const opRefreshInterval = 2 * time.Second

// opIssuerConfig makes Gatehouse trust p as issuer "op". Client credentials
// tokens carry gty "client-credentials" and map to service principals.
func opIssuerConfig(p *opProvider) config.Issuer {
	return config.Issuer{
		Name:                "op",
		Issuer:              p.issuer,
		Audiences:           []string{opAudience},
		AppTokens:           &config.AppTokens{Claim: "gty", Values: []string{opServiceTokenMark}},
		JWKSRefreshInterval: opRefreshInterval,
	}
}

// me is the body of GET /v1/me.
type me struct {
	Principal string `json:"principal"`
	Issuer    string `json:"issuer"`
	Subject   string `json:"subject"`
	Tenant    string `json:"tenant"`
}

// getMe sends GET /v1/me with token and returns the response, failing the
// test on a 5xx status.
func getMe(t *testing.T, g *gatehouse, token string) response {
	t.Helper()
	r := g.send(t, request{Method: http.MethodGet, Path: "/v1/me", Token: token})
	if r.status >= 500 {
		t.Errorf("got %s, want no server error", r)
	}
	return r
}

// wantPrincipal checks that token authenticates as principal.
func wantPrincipal(t *testing.T, g *gatehouse, token, principal string) {
	t.Helper()
	r := getMe(t, g, token)
	wantStatus(t, r, http.StatusOK)
	var got me
	decodeJSON(t, r, &got)
	if got.Principal != principal {
		t.Errorf("principal: got %q, want %q", got.Principal, principal)
	}
}

// wantRejected checks that token gets Gatehouse's 401 with the
// invalid_token challenge.
func wantRejected(t *testing.T, g *gatehouse, token string) {
	t.Helper()
	r := getMe(t, g, token)
	wantProblem(t, r, http.StatusUnauthorized)
	if got := r.header.Get("WWW-Authenticate"); got == "" || !strings.Contains(got, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate: got %q, want the invalid_token challenge", got)
	}
}

func wantKeyRequests(t *testing.T, p *opProvider, want int32, when string) {
	t.Helper()
	if got := p.keyRequests.Load(); got != want {
		t.Errorf("%s: got %d key set requests at the provider, want %d", when, got, want)
	}
}

func TestOPTokensAuthenticate(t *testing.T) {
	p := startOPProvider(t)
	g := startGatehouse(t, opIssuerConfig(p))

	accessToken, idToken := p.userToken(t, "alice")
	wantPrincipal(t, g, accessToken, "user:op|alice")
	wantPrincipal(t, g, p.serviceToken(t), "service:op|billing")

	// The ID token of the same login carries Gatehouse's audience, but
	// also nonce and at_hash.
	wantRejected(t, g, idToken)

	wantKeyRequests(t, p, 1, "after three tokens")
}

func TestOPKeyRotation(t *testing.T) {
	p := startOPProvider(t)
	g := startGatehouse(t, opIssuerConfig(p))

	oldKey := p.storage.signingKeyID
	oldToken, _ := p.userToken(t, "alice")
	wantPrincipal(t, g, oldToken, "user:op|alice")
	wantKeyRequests(t, p, 1, "after the first token")

	// The provider publishes a new key and signs with it. Gatehouse fetches
	// the key set once, without a restart.
	p.storage.rotateTo(p.storage.addKey(t))
	time.Sleep(opRefreshInterval)
	newToken, _ := p.userToken(t, "bob")
	wantPrincipal(t, g, newToken, "user:op|bob")
	wantPrincipal(t, g, p.serviceToken(t), "service:op|billing")
	wantKeyRequests(t, p, 2, "after rotation")

	// The old key is still published, so its tokens still pass.
	wantPrincipal(t, g, oldToken, "user:op|alice")

	// Once the provider retires the old key and Gatehouse has fetched the
	// set again, the old key's tokens fail.
	p.storage.retire(oldKey)
	p.storage.rotateTo(p.storage.addKey(t))
	time.Sleep(opRefreshInterval)
	wantPrincipal(t, g, p.serviceToken(t), "service:op|billing")
	wantKeyRequests(t, p, 3, "after the second rotation")
	wantRejected(t, g, oldToken)
	wantPrincipal(t, g, newToken, "user:op|bob")
	wantKeyRequests(t, p, 3, "after the retired key's token")
}

func TestOPProviderDown(t *testing.T) {
	p := startOPProvider(t)
	g := startGatehouse(t, opIssuerConfig(p))

	userToken, _ := p.userToken(t, "alice")
	serviceToken := p.serviceToken(t)
	wantPrincipal(t, g, userToken, "user:op|alice")

	// A token signed with a key that Gatehouse has not fetched yet.
	p.storage.rotateTo(p.storage.addKey(t))
	unknownKidToken := p.serviceToken(t)
	wantKeyRequests(t, p, 1, "before the provider stops")

	p.stop()
	time.Sleep(opRefreshInterval)

	// Tokens with known keys keep working. The unknown kid fails with 401,
	// and its one failed fetch holds back the next ones for the interval.
	for range 20 {
		wantPrincipal(t, g, userToken, "user:op|alice")
		wantPrincipal(t, g, serviceToken, "service:op|billing")
		wantRejected(t, g, unknownKidToken)
	}

	p.restart(t)
	wantRejected(t, g, unknownKidToken)
	wantKeyRequests(t, p, 1, "right after the restart, within the interval of the failed fetch")

	time.Sleep(opRefreshInterval)
	wantPrincipal(t, g, unknownKidToken, "service:op|billing")
	wantPrincipal(t, g, userToken, "user:op|alice")
	wantKeyRequests(t, p, 2, "after the interval")
}
