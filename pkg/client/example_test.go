package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"

	"github.com/gatehouse-authz/gatehouse/internal/server"
	"github.com/gatehouse-authz/gatehouse/pkg/client"
)

// devServer is an in-process `gatehouse serve --dev` for the examples.
type devServer struct {
	url  string
	srv  *server.Server
	stop func()
}

// startDevServer starts a dev server on a free loopback port. Its dev issuer
// mints tokens for any name, which only a dev server may do.
func startDevServer() *devServer {
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := server.New(ctx, server.Config{Listener: ln, Dev: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Run(ctx)
	}()
	return &devServer{url: srv.URL(), srv: srv, stop: func() { cancel(); <-done }}
}

// client returns a client authenticated as the dev user name, or as the dev
// service name when service is true.
func (d *devServer) client(name string, service bool) *client.Client {
	token, err := d.srv.DevIssuer().Mint(name, service)
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New(d.url, client.WithToken(token))
	if err != nil {
		log.Fatal(err)
	}
	return c
}

// This quickstart builds a small tenant, shares a project and asks
// Gatehouse what a user may do.
func Example() {
	dev := startDevServer()
	defer dev.stop()
	ctx := context.Background()

	// alice founds the org acme and builds a tree in it. Each creator
	// receives the managing role of what it creates.
	alice := dev.client("alice", false)
	for _, r := range []client.CreateResourceRequest{
		{Resource: "org:acme"},
		{Resource: "workspace:eng", Parent: "org:acme"},
		{Resource: "project:apollo", Parent: "workspace:eng"},
		{Resource: "document:spec", Parent: "project:apollo"},
	} {
		if _, err := alice.CreateResource(ctx, r); err != nil {
			log.Fatal(err)
		}
	}

	// She makes bob a viewer of the project, and so of its documents.
	if _, err := alice.SetMember(ctx, "project:apollo", "user:dev|bob", "viewer"); err != nil {
		log.Fatal(err)
	}

	// bob asks about himself.
	bob := dev.client("bob", false)
	fmt.Println("bob may view document:spec:", bob.Allowed(ctx, "", "view", "document:spec"))
	fmt.Println("bob may edit document:spec:", bob.Allowed(ctx, "", "edit", "document:spec"))

	page, err := bob.LookupResources(ctx, client.LookupResourcesRequest{Permission: "view", ResourceType: "document"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("documents bob may view:", page.Resources)
	// Output:
	// bob may view document:spec: true
	// bob may edit document:spec: false
	// documents bob may view: [document:spec]
}

func ExampleClient_CreateResource() {
	dev := startDevServer()
	defer dev.stop()
	ctx := context.Background()
	alice := dev.client("alice", false)

	org, err := alice.CreateResource(ctx, client.CreateResourceRequest{Resource: "org:acme"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(org.Resource, org.Owner, org.Role)

	ws, err := alice.CreateResource(ctx, client.CreateResourceRequest{Resource: "workspace:eng", Parent: "org:acme"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ws.Resource, "in", ws.Parent, ws.Owner, ws.Role)

	// Ids are unique per type across all orgs.
	_, err = alice.CreateResource(ctx, client.CreateResourceRequest{Resource: "workspace:eng", Parent: "org:acme"})
	fmt.Println("taken:", client.IsConflict(err))
	// Output:
	// org:acme user:dev|alice owner
	// workspace:eng in org:acme user:dev|alice admin
	// taken: true
}

func ExampleClient_Check() {
	dev := startDevServer()
	defer dev.stop()
	ctx := context.Background()

	alice := dev.client("alice", false)
	for _, r := range []client.CreateResourceRequest{
		{Resource: "org:acme"},
		{Resource: "workspace:eng", Parent: "org:acme"},
		{Resource: "project:apollo", Parent: "workspace:eng"},
		{Resource: "document:spec", Parent: "project:apollo"},
	} {
		if _, err := alice.CreateResource(ctx, r); err != nil {
			log.Fatal(err)
		}
	}
	change, err := alice.SetMember(ctx, "document:spec", "user:dev|bob", "editor")
	if err != nil {
		log.Fatal(err)
	}

	// alice manages the document, so she may ask about bob. The consistency
	// token makes the check see the write above. Without a token, the
	// default full consistency sees it too.
	resp, err := alice.Check(ctx, client.CheckRequest{
		Subject:          "user:dev|bob",
		Permission:       "edit",
		Resource:         "document:spec",
		ConsistencyToken: change.ConsistencyToken,
	})
	if err != nil {
		// No answer is a deny.
		fmt.Println("deny:", err)
		return
	}
	fmt.Println("bob may edit:", resp.Allowed)

	// bob may ask about himself, but not about alice.
	bob := dev.client("bob", false)
	_, err = bob.Check(ctx, client.CheckRequest{Subject: "user:dev|alice", Permission: "delete", Resource: "document:spec"})
	fmt.Println("bob asking about alice is forbidden:", client.IsForbidden(err))
	// Output:
	// bob may edit: true
	// bob asking about alice is forbidden: true
}

func ExampleClient_LookupResources() {
	dev := startDevServer()
	defer dev.stop()
	ctx := context.Background()

	alice := dev.client("alice", false)
	for _, r := range []client.CreateResourceRequest{
		{Resource: "org:acme"},
		{Resource: "workspace:eng", Parent: "org:acme"},
		{Resource: "project:apollo", Parent: "workspace:eng"},
		{Resource: "document:d1", Parent: "project:apollo"},
		{Resource: "document:d2", Parent: "project:apollo"},
		{Resource: "document:d3", Parent: "project:apollo"},
	} {
		if _, err := alice.CreateResource(ctx, r); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := alice.SetMember(ctx, "project:apollo", "user:dev|bob", "viewer"); err != nil {
		log.Fatal(err)
	}

	// Page through bob's documents two at a time.
	bob := dev.client("bob", false)
	req := client.LookupResourcesRequest{Permission: "view", ResourceType: "document", PageSize: 2}
	for {
		page, err := bob.LookupResources(ctx, req)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(page.Resources)
		if page.NextPageToken == "" {
			break
		}
		req.PageToken = page.NextPageToken
	}

	// Resources does the same paging and skips repeated resources.
	n := 0
	for _, err := range bob.Resources(ctx, client.LookupResourcesRequest{Permission: "view", ResourceType: "document"}) {
		if err != nil {
			log.Fatal(err)
		}
		n++
	}
	fmt.Println(n, "documents")
	// Output:
	// [document:d1 document:d2]
	// [document:d3]
	// 3 documents
}
