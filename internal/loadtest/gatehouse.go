package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/engine"
	"github.com/gatehouse-authz/gatehouse/internal/server"
)

// gatehouseServer is a Gatehouse server running in this process in dev
// mode, on a loopback port. The benchmark's server process runs it.
type gatehouseServer struct {
	srv    *server.Server
	url    string
	cancel context.CancelFunc
	done   chan error
}

// startGatehouse starts Gatehouse on the memory datastore, or on
// PostgreSQL at databaseURL (migrating it first). Its logs go to logger.
func startGatehouse(ctx context.Context, databaseURL string, logger *slog.Logger) (*gatehouseServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	cfg := server.Config{Listener: ln, Dev: true, Logger: logger}
	if databaseURL != "" {
		cfg.Datastore = server.DatastorePostgres
		cfg.Postgres = engine.PostgresConfig{URL: databaseURL}
		cfg.Migrate = true
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("start gatehouse: %w", err)
	}
	g := &gatehouseServer{srv: srv, url: srv.URL(), cancel: cancel, done: make(chan error, 1)}
	go func() { g.done <- srv.Run(runCtx) }()
	return g, nil
}

// Close stops the server and waits for it.
func (g *gatehouseServer) Close() error {
	g.cancel()
	return <-g.done
}

// gatehouse is an HTTP client of a Gatehouse server in dev mode.
type gatehouse struct {
	url    string
	client *http.Client
}

// newGatehouseClient returns a client of the Gatehouse at baseURL that
// keeps up to maxConns idle connections.
func newGatehouseClient(baseURL string, maxConns int) *gatehouse {
	return &gatehouse{
		url: baseURL,
		client: &http.Client{
			Timeout: 5 * time.Minute,
			Transport: &http.Transport{
				MaxIdleConns:        maxConns,
				MaxIdleConnsPerHost: maxConns,
				IdleConnTimeout:     time.Minute,
				DisableCompression:  true,
			},
		},
	}
}

// Close closes the client's idle connections.
func (g *gatehouse) Close() { g.client.CloseIdleConnections() }

// mint returns a dev issuer token for the user, or the service, named
// name, from the server's POST /dev/token.
func (g *gatehouse) mint(ctx context.Context, name string, service bool) (string, error) {
	field := "subject"
	if service {
		field = "service"
	}
	body, err := json.Marshal(map[string]string{field: name})
	if err != nil {
		return "", err
	}
	return g.postForToken(ctx, "/dev/token", "application/json", body, "mint a dev token")
}

// postForToken posts body to path and returns the access_token of the
// response. action names the request in errors.
func (g *gatehouse) postForToken(ctx context.Context, path, contentType string, body []byte, action string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url+path, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", contentType)
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := g.send(req, http.StatusOK, &out); err != nil {
		return "", fmt.Errorf("%s: %w", action, err)
	}
	if out.AccessToken == "" {
		return "", fmt.Errorf("%s: response has no access_token", action)
	}
	return out.AccessToken, nil
}

// httpStatusError is a response with an unexpected status.
type httpStatusError struct {
	status int
	body   string
}

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("status %d: %s", e.status, e.body)
}

// do sends body (JSON bytes, or nil) with the token and decodes a response
// with status want into out, when out is not nil.
func (g *gatehouse) do(ctx context.Context, method, path, token string, body []byte, want int, out any) error {
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.url+path, reader)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return g.send(req, want, out)
}

func (g *gatehouse) send(req *http.Request, want int, out any) error {
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return &httpStatusError{status: resp.StatusCode, body: string(bytes.TrimSpace(data))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// exchange trades a dev issuer token for a Gatehouse token (RFC 8693) and
// returns the new token.
func (g *gatehouse) exchange(ctx context.Context, subjectToken string) (string, error) {
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subjectToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
	}
	return g.postForToken(ctx, "/oauth2/token", "application/x-www-form-urlencoded", []byte(form.Encode()), "token exchange")
}

// tokenRefreshAge is how long a Gatehouse token is used before a fresh one
// is exchanged. Gatehouse tokens live 15 minutes by default, and the dev
// issuer's one hour, so every token is replaced well before it expires.
const tokenRefreshAge = 5 * time.Minute

// tokenSource hands out a current Gatehouse token for one principal,
// exchanging a new dev issuer token for it when the last is older than
// tokenRefreshAge. It is safe for concurrent use; the fast path takes no
// lock.
type tokenSource struct {
	g       *gatehouse
	name    string // the dev issuer subject, such as "bench-app"
	service bool

	current atomic.Pointer[issuedToken]
	mu      sync.Mutex

	// rejected counts the tokens that Gatehouse rejected with 401. A Gatehouse
	// token goes stale when its principal's relationships change, which
	// the benchmark never does to its callers, so it should stay 0.
	rejected atomic.Int64
}

type issuedToken struct {
	token  string
	issued time.Time
}

func newTokenSource(ctx context.Context, g *gatehouse, principal string) (*tokenSource, error) {
	kind, name, _ := strings.Cut(principal, ":")
	_, name, _ = strings.Cut(name, "|")
	ts := &tokenSource{g: g, name: name, service: kind == typeService}
	if _, err := ts.refresh(ctx, nil); err != nil {
		return nil, err
	}
	return ts, nil
}

// Token returns the current token, exchanging a new one when it is due.
func (ts *tokenSource) Token(ctx context.Context) (string, error) {
	cur := ts.current.Load()
	if time.Since(cur.issued) < tokenRefreshAge {
		return cur.token, nil
	}
	return ts.refresh(ctx, cur)
}

// Renew replaces the token after Gatehouse rejected it, unless another
// caller did so already.
func (ts *tokenSource) Renew(ctx context.Context, rejected string) (string, error) {
	cur := ts.current.Load()
	if cur.token != rejected {
		return cur.token, nil
	}
	ts.rejected.Add(1)
	return ts.refresh(ctx, cur)
}

func (ts *tokenSource) refresh(ctx context.Context, seen *issuedToken) (string, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if cur := ts.current.Load(); cur != seen {
		return cur.token, nil // another caller refreshed meanwhile
	}
	devToken, err := ts.g.mint(ctx, ts.name, ts.service)
	if err != nil {
		return "", err
	}
	token, err := ts.g.exchange(ctx, devToken)
	if err != nil {
		return "", err
	}
	ts.current.Store(&issuedToken{token: token, issued: time.Now()})
	return token, nil
}

// call sends a request with ts's token and retries once with a new token
// when Gatehouse responds with 401, which happens when the token went
// stale.
func (g *gatehouse) call(ctx context.Context, ts *tokenSource, method, path string, body []byte, want int, out any) error {
	token, err := ts.Token(ctx)
	if err != nil {
		return err
	}
	err = g.do(ctx, method, path, token, body, want, out)
	var status *httpStatusError
	if errors.As(err, &status) && status.status == http.StatusUnauthorized {
		if token, err = ts.Renew(ctx, token); err != nil {
			return err
		}
		err = g.do(ctx, method, path, token, body, want, out)
	}
	return err
}
