package middleware_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/gatehouse-authz/gatehouse/internal/server"
	"github.com/gatehouse-authz/gatehouse/pkg/client"
	"github.com/gatehouse-authz/gatehouse/pkg/middleware"
)

// exampleServer is an in-process `gatehouse serve --dev` for the examples,
// with service:dev|gateway allowed to follow the auth version stream.
type exampleServer struct {
	srv  *server.Server
	stop func()
}

func startExampleServer() *exampleServer {
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.New(ctx, server.Config{
		Listener: ln,
		Dev:      true,
		Gateways: []string{"service:dev|gateway"},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Run(ctx)
	}()
	return &exampleServer{srv: srv, stop: func() { cancel(); <-done }}
}

// idpToken mints a dev identity provider token, as a real identity
// provider would issue one.
func (e *exampleServer) idpToken(name string, service bool) string {
	token, err := e.srv.DevIssuer().Mint(name, service)
	if err != nil {
		log.Fatal(err)
	}
	return token
}

// gatehouseToken exchanges the identity provider token of the dev user
// name for a Gatehouse access token (RFC 8693).
func (e *exampleServer) gatehouseToken(name string) string {
	resp, err := http.PostForm(e.srv.URL()+"/oauth2/token", url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {e.idpToken(name, false)},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		log.Fatal(err)
	}
	return body.AccessToken
}

// call sends GET path with token to h and prints the status, and the body
// of a 200 response.
func call(h http.Handler, path, token string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		fmt.Printf("%s: %d\n", path, rec.Code)
		return
	}
	body, _ := io.ReadAll(rec.Body)
	fmt.Printf("%s: %d %s\n", path, rec.Code, body)
}

// This example protects every route of a mux with Gatehouse tokens. The
// gateway's credentials let the Verifier follow the auth version stream.
func Example() {
	dev := startExampleServer()
	defer dev.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	gatewayToken := dev.idpToken("gateway", true)
	verifier, err := middleware.New(ctx, middleware.Config{
		GatehouseURL: dev.srv.URL(),
		StreamToken:  func(context.Context) (string, error) { return gatewayToken, nil },
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		p, _ := middleware.PrincipalFrom(r.Context())
		fmt.Fprint(w, p.ID)
	})
	h := verifier.Handler(mux)

	call(h, "/whoami", dev.gatehouseToken("alice"))
	call(h, "/whoami", "not-a-token")
	// Output:
	// /whoami: 200 user:dev|alice
	// /whoami: 401
}

// This example lets only the editors of a document reach its route. The
// app's service holds the "app" role on the org, which lets it ask
// Gatehouse about its users.
func ExampleRequirePermission() {
	dev := startExampleServer()
	defer dev.stop()
	ctx := context.Background()

	// bob owns the org acme and a document in it, and lets alice view it.
	bob, err := client.New(dev.srv.URL(), client.WithToken(dev.idpToken("bob", false)))
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range []client.CreateResourceRequest{
		{Resource: "org:acme"},
		{Resource: "workspace:eng", Parent: "org:acme"},
		{Resource: "project:apollo", Parent: "workspace:eng"},
		{Resource: "document:spec", Parent: "project:apollo"},
	} {
		if _, err := bob.CreateResource(ctx, r); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := bob.SetMember(ctx, "document:spec", "user:dev|alice", "viewer"); err != nil {
		log.Fatal(err)
	}
	if _, err := bob.SetMember(ctx, "org:acme", "service:dev|docs", "app"); err != nil {
		log.Fatal(err)
	}

	verifier, err := middleware.New(ctx, middleware.Config{GatehouseURL: dev.srv.URL(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer verifier.Close()
	app, err := client.New(dev.srv.URL(), client.WithToken(dev.idpToken("docs", true)))
	if err != nil {
		log.Fatal(err)
	}

	document := func(r *http.Request) string { return "document:" + r.PathValue("id") }
	mux := http.NewServeMux()
	show := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "contents") })
	mux.Handle("GET /documents/{id}", middleware.RequirePermission(app, "view", document)(show))
	mux.Handle("GET /documents/{id}/edit", middleware.RequirePermission(app, "edit", document)(show))
	h := verifier.Handler(mux)

	alice := dev.gatehouseToken("alice")
	call(h, "/documents/spec", alice)
	call(h, "/documents/spec/edit", alice)
	// Output:
	// /documents/spec: 200 contents
	// /documents/spec/edit: 403
}
