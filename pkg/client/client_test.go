package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/server"
	"github.com/gatehouse-authz/gatehouse/pkg/client"
)

// testServer is an in-process dev Gatehouse with an in-memory store.
type testServer struct {
	url string
	srv *server.Server
}

// startServer starts a dev server on loopback that stops when the test
// ends.
func startServer(t *testing.T) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv, err := server.New(ctx, server.Config{Listener: ln, Dev: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatalf("start server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server stopped with %v", err)
		}
	})
	return &testServer{url: srv.URL(), srv: srv}
}

// clientFor returns a client that authenticates as the dev user or service
// name.
func (s *testServer) clientFor(t *testing.T, name string, service bool) *client.Client {
	t.Helper()
	token, err := s.srv.DevIssuer().Mint(name, service)
	if err != nil {
		t.Fatalf("mint token for %q: %v", name, err)
	}
	c, err := client.New(s.url, client.WithToken(token))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

// mustCreate creates each resource in order, under the parent given with
// it, and fails the test on the first error.
func mustCreate(t *testing.T, c *client.Client, pairs ...[2]string) {
	t.Helper()
	for _, p := range pairs {
		if _, err := c.CreateResource(context.Background(), client.CreateResourceRequest{Resource: p[0], Parent: p[1]}); err != nil {
			t.Fatalf("create %s in %q: %v", p[0], p[1], err)
		}
	}
}

// tree is org:acme → workspace:eng → project:apollo → document:spec.
var tree = [][2]string{
	{"org:acme", ""},
	{"workspace:eng", "org:acme"},
	{"project:apollo", "workspace:eng"},
	{"document:spec", "project:apollo"},
}

func TestClientMethods(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	alice := s.clientFor(t, "alice", false)
	bob := s.clientFor(t, "bob", false)
	billing := s.clientFor(t, "billing", true)

	t.Run("Me", func(t *testing.T) {
		me, err := alice.Me(ctx)
		if err != nil {
			t.Fatalf("Me: %v", err)
		}
		if me.Principal != "user:dev|alice" {
			t.Errorf("Principal = %q, want %q", me.Principal, "user:dev|alice")
		}
		if me.Subject != "alice" {
			t.Errorf("Subject = %q, want %q", me.Subject, "alice")
		}
		if me.Issuer != s.url+"/dev/oidc" {
			t.Errorf("Issuer = %q, want %q", me.Issuer, s.url+"/dev/oidc")
		}
	})

	t.Run("Me service", func(t *testing.T) {
		me, err := billing.Me(ctx)
		if err != nil {
			t.Fatalf("Me: %v", err)
		}
		if me.Principal != "service:dev|billing" {
			t.Errorf("Principal = %q, want %q", me.Principal, "service:dev|billing")
		}
	})

	t.Run("CreateResource", func(t *testing.T) {
		tests := []struct {
			resource, parent, wantRole string
		}{
			{"org:acme", "", "owner"},
			{"workspace:eng", "org:acme", "admin"},
			{"project:apollo", "workspace:eng", "admin"},
			{"document:spec", "project:apollo", "owner"},
			{"group:sre", "org:acme", "admin"},
		}
		for _, tt := range tests {
			got, err := alice.CreateResource(ctx, client.CreateResourceRequest{Resource: tt.resource, Parent: tt.parent})
			if err != nil {
				t.Fatalf("create %s: %v", tt.resource, err)
			}
			want := client.CreateResourceResponse{
				Resource: tt.resource, Parent: tt.parent, Owner: "user:dev|alice",
				Role: tt.wantRole, ConsistencyToken: got.ConsistencyToken,
			}
			if *got != want {
				t.Errorf("create %s = %+v, want %+v", tt.resource, *got, want)
			}
			if got.ConsistencyToken == "" {
				t.Errorf("create %s: empty consistency token", tt.resource)
			}
		}
	})

	t.Run("SetMember", func(t *testing.T) {
		got, err := alice.SetMember(ctx, "project:apollo", "user:dev|bob", "viewer")
		if err != nil {
			t.Fatalf("SetMember viewer: %v", err)
		}
		if got.Role != "viewer" || got.PreviousRole != "" {
			t.Errorf("first SetMember: role %q, previous %q; want viewer, none", got.Role, got.PreviousRole)
		}
		got, err = alice.SetMember(ctx, "project:apollo", "user:dev|bob", "editor")
		if err != nil {
			t.Fatalf("SetMember editor: %v", err)
		}
		want := client.SetMemberResponse{
			Resource: "project:apollo", Subject: "user:dev|bob", Role: "editor",
			PreviousRole: "viewer", ConsistencyToken: got.ConsistencyToken,
		}
		if *got != want {
			t.Errorf("second SetMember = %+v, want %+v", *got, want)
		}

		// The same role again changes nothing, and still returns a token
		// that a check can ask to be at least as fresh as.
		same, err := alice.SetMember(ctx, "project:apollo", "user:dev|bob", "editor")
		if err != nil {
			t.Fatalf("SetMember editor again: %v", err)
		}
		if same.Role != "editor" || same.PreviousRole != "editor" || same.ConsistencyToken == "" {
			t.Errorf("unchanged SetMember = %+v, want role and previous role editor and a token", *same)
		}
		if _, err := alice.Check(ctx, client.CheckRequest{
			Subject: "user:dev|bob", Permission: "edit", Resource: "project:apollo", ConsistencyToken: same.ConsistencyToken,
		}); err != nil {
			t.Errorf("check at the unchanged SetMember's token: %v", err)
		}
		token, err := alice.RemoveMember(ctx, "project:apollo", "user:dev|nobody")
		if err != nil {
			t.Fatalf("RemoveMember of no role: %v", err)
		}
		if token == "" {
			t.Error("RemoveMember of no role returned no token")
		}

		if _, err := alice.SetMember(ctx, "org:acme", "service:dev|billing", "app"); err != nil {
			t.Fatalf("SetMember app: %v", err)
		}
	})

	t.Run("ListMembers", func(t *testing.T) {
		got, err := alice.ListMembers(ctx, client.ListMembersRequest{Resource: "project:apollo"})
		if err != nil {
			t.Fatalf("ListMembers: %v", err)
		}
		want := []client.Member{{Subject: "user:dev|alice", Role: "admin"}, {Subject: "user:dev|bob", Role: "editor"}}
		if !sameMembers(got.Members, want) {
			t.Errorf("members = %+v, want %+v", got.Members, want)
		}
		if got.NextPageToken != "" {
			t.Errorf("NextPageToken = %q, want none", got.NextPageToken)
		}
	})

	t.Run("Check", func(t *testing.T) {
		tests := []struct {
			name   string
			caller *client.Client
			req    client.CheckRequest
			want   bool
		}{
			{"caller may edit", bob, client.CheckRequest{Permission: "edit", Resource: "document:spec"}, true},
			{"caller may not delete", bob, client.CheckRequest{Permission: "delete", Resource: "document:spec"}, false},
			{"about another subject", alice, client.CheckRequest{Subject: "user:dev|bob", Permission: "edit", Resource: "document:spec"}, true},
			{"service with app role", billing, client.CheckRequest{Subject: "user:dev|bob", Permission: "view", Resource: "document:spec"}, true},
			{"minimize latency", alice, client.CheckRequest{Permission: "manage", Resource: "org:acme", Consistency: client.MinimizeLatency}, true},
			{"full consistency", alice, client.CheckRequest{Permission: "manage", Resource: "org:acme", Consistency: client.FullConsistency}, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := tt.caller.Check(ctx, tt.req)
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if got.Allowed != tt.want {
					t.Errorf("Allowed = %v, want %v", got.Allowed, tt.want)
				}
				if tt.req.Consistency != client.MinimizeLatency && got.ConsistencyToken == "" {
					t.Errorf("empty consistency token")
				}
			})
		}
	})

	t.Run("Check with consistency token", func(t *testing.T) {
		set, err := alice.SetMember(ctx, "document:spec", "user:dev|carol", "viewer")
		if err != nil {
			t.Fatalf("SetMember: %v", err)
		}
		got, err := alice.Check(ctx, client.CheckRequest{
			Subject: "user:dev|carol", Permission: "view", Resource: "document:spec",
			ConsistencyToken: set.ConsistencyToken,
		})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if !got.Allowed {
			t.Errorf("Allowed = false after the write the token names")
		}
	})

	t.Run("Allowed", func(t *testing.T) {
		if !bob.Allowed(ctx, "", "view", "document:spec") {
			t.Errorf("Allowed(bob, view, document:spec) = false, want true")
		}
		if bob.Allowed(ctx, "", "manage", "document:spec") {
			t.Errorf("Allowed(bob, manage, document:spec) = true, want false")
		}
		// bob may not ask about alice, so the 403 becomes false.
		if bob.Allowed(ctx, "user:dev|alice", "view", "document:spec") {
			t.Errorf("Allowed about another subject without inspect = true, want false")
		}
	})

	t.Run("CheckBulk", func(t *testing.T) {
		got, err := bob.CheckBulk(ctx, client.CheckBulkRequest{Checks: []client.CheckItem{
			{Permission: "view", Resource: "document:spec"},
			{Permission: "delete", Resource: "document:spec"},
			{Subject: "user:dev|alice", Permission: "view", Resource: "document:spec"},
			{Permission: "fly", Resource: "document:spec"},
			{Subject: "user:dev|alice", Permission: "view", Resource: "org:acme"},
		}})
		if err != nil {
			t.Fatalf("CheckBulk: %v", err)
		}
		if len(got.Results) != 5 {
			t.Fatalf("got %d results, want 5", len(got.Results))
		}
		if r := got.Results[0]; !r.Allowed || r.Error != nil {
			t.Errorf("result 0 = %+v, want allowed", r)
		}
		if r := got.Results[1]; r.Allowed || r.Error != nil {
			t.Errorf("result 1 = %+v, want denied without error", r)
		}
		if r := got.Results[2]; r.Allowed || !client.IsForbidden(r.Error) {
			t.Errorf("result 2 = %+v, want 403", r)
		}
		if r := got.Results[3]; r.Allowed || r.Error == nil || r.Error.Status != http.StatusBadRequest {
			t.Errorf("result 3 = %+v, want 400", r)
		}
		if r := got.Results[4]; r.Allowed || !client.IsNotFound(r.Error) {
			t.Errorf("result 4 = %+v, want 404", r)
		}
	})

	t.Run("LookupResources", func(t *testing.T) {
		got, err := bob.LookupResources(ctx, client.LookupResourcesRequest{Permission: "edit", ResourceType: "document"})
		if err != nil {
			t.Fatalf("LookupResources: %v", err)
		}
		if !slices.Equal(got.Resources, []string{"document:spec"}) {
			t.Errorf("resources = %v, want [document:spec]", got.Resources)
		}
	})

	t.Run("LookupResources about another subject", func(t *testing.T) {
		got, err := alice.LookupResources(ctx, client.LookupResourcesRequest{
			Subject: "user:dev|bob", Permission: "view", ResourceType: "project",
		})
		if err != nil {
			t.Fatalf("LookupResources: %v", err)
		}
		if !slices.Equal(got.Resources, []string{"project:apollo"}) {
			t.Errorf("resources = %v, want [project:apollo]", got.Resources)
		}
	})

	t.Run("LookupSubjects", func(t *testing.T) {
		got, err := alice.LookupSubjects(ctx, client.LookupSubjectsRequest{
			Resource: "document:spec", Permission: "edit", SubjectType: "user",
		})
		if err != nil {
			t.Fatalf("LookupSubjects: %v", err)
		}
		want := []string{"user:dev|alice", "user:dev|bob"}
		if !slices.Equal(got.Subjects, want) {
			t.Errorf("subjects = %v, want %v", got.Subjects, want)
		}
	})

	t.Run("RemoveMember", func(t *testing.T) {
		token, err := alice.RemoveMember(ctx, "project:apollo", "user:dev|bob")
		if err != nil {
			t.Fatalf("RemoveMember: %v", err)
		}
		if token == "" {
			t.Errorf("empty consistency token")
		}
		if bob.Allowed(ctx, "", "view", "document:spec") {
			t.Errorf("bob still views document:spec after removal")
		}
	})

	t.Run("DeleteResource", func(t *testing.T) {
		token, err := alice.DeleteResource(ctx, "workspace:eng")
		if err != nil {
			t.Fatalf("DeleteResource: %v", err)
		}
		if token == "" {
			t.Errorf("empty consistency token")
		}
		_, err = alice.Check(ctx, client.CheckRequest{Subject: "user:dev|bob", Permission: "view", Resource: "document:spec"})
		if !client.IsNotFound(err) {
			t.Errorf("check on a document below the deleted workspace: got %v, want 404", err)
		}
	})

	t.Run("Healthz and Ready", func(t *testing.T) {
		anonymous, err := client.New(s.url)
		if err != nil {
			t.Fatalf("new client: %v", err)
		}
		if err := anonymous.Healthz(ctx); err != nil {
			t.Errorf("Healthz: %v", err)
		}
		if err := anonymous.Ready(ctx); err != nil {
			t.Errorf("Ready: %v", err)
		}
	})
}

func sameMembers(got, want []client.Member) bool {
	key := func(m client.Member) string { return m.Subject + "#" + m.Role }
	g, w := make([]string, len(got)), make([]string, len(want))
	for i, m := range got {
		g[i] = key(m)
	}
	for i, m := range want {
		w[i] = key(m)
	}
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

func TestErrorDecoding(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	alice := s.clientFor(t, "alice", false)
	bob := s.clientFor(t, "bob", false)
	mustCreate(t, alice, tree...)
	if _, err := alice.SetMember(ctx, "document:spec", "user:dev|bob", "viewer"); err != nil {
		t.Fatalf("SetMember: %v", err)
	}
	anonymous, err := client.New(s.url)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	forged, err := client.New(s.url, client.WithToken("not-a-jwt"))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}

	tests := []struct {
		name       string
		call       func() error
		wantStatus int
		wantTitle  string
		wantDetail string
		predicate  func(error) bool
		wantAuth   string
	}{
		{
			name:       "404 missing resource",
			call:       func() error { _, err := alice.DeleteResource(ctx, "document:nope"); return err },
			wantStatus: 404, wantTitle: "Not Found", wantDetail: "not found: document:nope",
			predicate: client.IsNotFound,
		},
		{
			name: "404 invisible resource",
			call: func() error {
				_, err := bob.ListMembers(ctx, client.ListMembersRequest{Resource: "workspace:eng"})
				return err
			},
			wantStatus: 404, wantTitle: "Not Found", wantDetail: "not found: workspace:eng",
			predicate: client.IsNotFound,
		},
		{
			name: "403 check about another subject",
			call: func() error {
				_, err := bob.Check(ctx, client.CheckRequest{Subject: "user:dev|alice", Permission: "view", Resource: "document:spec"})
				return err
			},
			wantStatus: 403, wantTitle: "Forbidden", wantDetail: `lacks "inspect" on document:spec`,
			predicate: client.IsForbidden,
		},
		{
			name:       "403 delete without permission",
			call:       func() error { _, err := bob.DeleteResource(ctx, "document:spec"); return err },
			wantStatus: 403, wantTitle: "Forbidden", wantDetail: `lacks "delete" on document:spec`,
			predicate: client.IsForbidden,
		},
		{
			name: "409 taken id",
			call: func() error {
				_, err := alice.CreateResource(ctx, client.CreateResourceRequest{Resource: "org:acme"})
				return err
			},
			wantStatus: 409, wantTitle: "Conflict", wantDetail: "org:acme already exists",
			predicate: client.IsConflict,
		},
		{
			name:       "409 last owner",
			call:       func() error { _, err := alice.RemoveMember(ctx, "org:acme", "user:dev|alice"); return err },
			wantStatus: 409, wantTitle: "Conflict", wantDetail: "no owner left",
			predicate: client.IsConflict,
		},
		{
			name: "400 unknown permission",
			call: func() error {
				_, err := alice.Check(ctx, client.CheckRequest{Permission: "fly", Resource: "document:spec"})
				return err
			},
			wantStatus: 400, wantTitle: "Bad Request", wantDetail: `permission "fly" is not one of`,
		},
		{
			name: "400 malformed resource",
			call: func() error {
				_, err := alice.CreateResource(ctx, client.CreateResourceRequest{Resource: "org:has space"})
				return err
			},
			wantStatus: 400, wantTitle: "Bad Request", wantDetail: "resource:",
		},
		{
			name: "400 page size too large",
			call: func() error {
				_, err := alice.ListMembers(ctx, client.ListMembersRequest{Resource: "org:acme", PageSize: 1001})
				return err
			},
			wantStatus: 400, wantTitle: "Bad Request", wantDetail: "page_size must be between 1 and 1000",
		},
		{
			name: "400 token with minimize latency",
			call: func() error {
				_, err := alice.Check(ctx, client.CheckRequest{
					Permission: "view", Resource: "document:spec",
					ConsistencyToken: "abc", Consistency: client.MinimizeLatency,
				})
				return err
			},
			wantStatus: 400, wantTitle: "Bad Request", wantDetail: "exclude each other",
		},
		{
			name: "400 invalid consistency token",
			call: func() error {
				_, err := alice.Check(ctx, client.CheckRequest{Permission: "view", Resource: "document:spec", ConsistencyToken: "abc"})
				return err
			},
			wantStatus: 400, wantTitle: "Bad Request", wantDetail: "consistency_token is not valid",
		},
		{
			name:       "401 without token",
			call:       func() error { _, err := anonymous.Me(ctx); return err },
			wantStatus: 401, wantTitle: "Unauthorized", wantDetail: "the access token is missing",
			predicate: client.IsUnauthorized, wantAuth: `Bearer realm="gatehouse"`,
		},
		{
			name:       "401 invalid token",
			call:       func() error { _, err := forged.Me(ctx); return err },
			wantStatus: 401, wantTitle: "Unauthorized", wantDetail: "the access token is missing",
			predicate: client.IsUnauthorized, wantAuth: `Bearer realm="gatehouse", error="invalid_token"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var e *client.Error
			if !errors.As(err, &e) {
				t.Fatalf("got error %v (%T), want *client.Error", err, err)
			}
			if e.Status != tt.wantStatus {
				t.Errorf("Status = %d, want %d", e.Status, tt.wantStatus)
			}
			if e.Title != tt.wantTitle {
				t.Errorf("Title = %q, want %q", e.Title, tt.wantTitle)
			}
			if !strings.Contains(e.Detail, tt.wantDetail) {
				t.Errorf("Detail = %q, want it to contain %q", e.Detail, tt.wantDetail)
			}
			if e.RequestID == "" {
				t.Errorf("RequestID is empty")
			}
			if !strings.HasPrefix(e.WWWAuthenticate, tt.wantAuth) || (tt.wantAuth == "" && e.WWWAuthenticate != "") {
				t.Errorf("WWWAuthenticate = %q, want prefix %q", e.WWWAuthenticate, tt.wantAuth)
			}
			if tt.predicate != nil && !tt.predicate(err) {
				t.Errorf("predicate for %d returned false", tt.wantStatus)
			}
			if !strings.Contains(err.Error(), e.RequestID) {
				t.Errorf("Error() = %q lacks the request id", err.Error())
			}
		})
	}
}

func TestPredicatesMatchOnlyTheirStatus(t *testing.T) {
	predicates := map[int]func(error) bool{
		401: client.IsUnauthorized, 403: client.IsForbidden, 404: client.IsNotFound,
		409: client.IsConflict, 503: client.IsUnavailable,
	}
	for status, predicate := range predicates {
		for other := range predicates {
			err := error(&client.Error{Status: other})
			if got := predicate(err); got != (status == other) {
				t.Errorf("predicate for %d on a %d error = %v", status, other, got)
			}
		}
		if predicate(errors.New("connection refused")) {
			t.Errorf("predicate for %d matched a plain error", status)
		}
		if predicate(nil) {
			t.Errorf("predicate for %d matched nil", status)
		}
	}
}

func TestListMembersPaging(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	alice := s.clientFor(t, "alice", false)
	mustCreate(t, alice, tree...)
	want := []client.Member{{Subject: "user:dev|alice", Role: "admin"}}
	for _, name := range []string{"bob", "carol", "dave"} {
		if _, err := alice.SetMember(ctx, "project:apollo", "user:dev|"+name, "viewer"); err != nil {
			t.Fatalf("SetMember %s: %v", name, err)
		}
		want = append(want, client.Member{Subject: "user:dev|" + name, Role: "viewer"})
	}

	t.Run("page by page", func(t *testing.T) {
		var got []client.Member
		req := client.ListMembersRequest{Resource: "project:apollo", PageSize: 1}
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("more than 10 pages for 4 members")
			}
			page, err := alice.ListMembers(ctx, req)
			if err != nil {
				t.Fatalf("page %d: %v", pages, err)
			}
			if len(page.Members) > 1 {
				t.Errorf("page %d has %d members, want at most 1", pages, len(page.Members))
			}
			got = append(got, page.Members...)
			if page.NextPageToken == "" {
				break
			}
			req.PageToken = page.NextPageToken
		}
		if !sameMembers(got, want) {
			t.Errorf("members = %+v, want %+v", got, want)
		}
	})

	t.Run("iterator", func(t *testing.T) {
		var got []client.Member
		for m, err := range alice.Members(ctx, client.ListMembersRequest{Resource: "project:apollo", PageSize: 1}) {
			if err != nil {
				t.Fatalf("Members: %v", err)
			}
			got = append(got, m)
		}
		if !sameMembers(got, want) {
			t.Errorf("members = %+v, want %+v", got, want)
		}
	})

	t.Run("iterator stops early", func(t *testing.T) {
		n := 0
		for _, err := range alice.Members(ctx, client.ListMembersRequest{Resource: "project:apollo", PageSize: 1}) {
			if err != nil {
				t.Fatalf("Members: %v", err)
			}
			n++
			if n == 2 {
				break
			}
		}
		if n != 2 {
			t.Errorf("iterated %d members, want 2", n)
		}
	})

	t.Run("iterator yields error", func(t *testing.T) {
		var errs []error
		for _, err := range alice.Members(ctx, client.ListMembersRequest{Resource: "project:nope"}) {
			errs = append(errs, err)
		}
		if len(errs) != 1 || !client.IsNotFound(errs[0]) {
			t.Errorf("got %v, want one 404", errs)
		}
	})
}

func TestLookupPaging(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	alice := s.clientFor(t, "alice", false)
	mustCreate(t, alice, tree[:3]...)
	want := []string{"document:d1", "document:d2", "document:d3", "document:d4"}
	for _, doc := range want {
		mustCreate(t, alice, [2]string{doc, "project:apollo"})
	}
	for _, name := range []string{"bob", "carol"} {
		if _, err := alice.SetMember(ctx, "project:apollo", "user:dev|"+name, "viewer"); err != nil {
			t.Fatalf("SetMember %s: %v", name, err)
		}
	}

	// bob views the documents through one path, his project role, so every
	// document comes exactly once.
	t.Run("resources page by page", func(t *testing.T) {
		bob := s.clientFor(t, "bob", false)
		got := lookupAllPages(t, bob, client.LookupResourcesRequest{Permission: "view", ResourceType: "document", PageSize: 1}, 20)
		if !slices.Equal(got, want) {
			t.Errorf("resources = %v, want %v", got, want)
		}
	})

	// NOTE: alice views each document through several paths (document
	// owner, project, workspace and org roles), and the server returns a
	// resource once per path when pages are smaller than the result: 65
	// pages of size 1 for these 4 documents. This test checks only that
	// paging ends and covers every document.
	t.Run("resources page by page with repeats", func(t *testing.T) {
		got := lookupAllPages(t, alice, client.LookupResourcesRequest{Permission: "view", ResourceType: "document", PageSize: 1}, 200)
		if len(got) > len(want) {
			t.Logf("the server returned %d resources for %d documents", len(got), len(want))
		}
		slices.Sort(got)
		got = slices.Compact(got)
		if !slices.Equal(got, want) {
			t.Errorf("distinct resources = %v, want %v", got, want)
		}
	})

	t.Run("resources iterator", func(t *testing.T) {
		var got []string
		for r, err := range alice.Resources(ctx, client.LookupResourcesRequest{Permission: "view", ResourceType: "document", PageSize: 1}) {
			if err != nil {
				t.Fatalf("Resources: %v", err)
			}
			got = append(got, r)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("resources = %v, want %v", got, want)
		}
	})

	t.Run("subjects iterator", func(t *testing.T) {
		var got []string
		for subject, err := range alice.Subjects(ctx, client.LookupSubjectsRequest{
			Resource: "document:d1", Permission: "view", SubjectType: "user", PageSize: 1,
		}) {
			if err != nil {
				t.Fatalf("Subjects: %v", err)
			}
			got = append(got, subject)
		}
		wantSubjects := []string{"user:dev|alice", "user:dev|bob", "user:dev|carol"}
		if !slices.Equal(got, wantSubjects) {
			t.Errorf("subjects = %v, want %v", got, wantSubjects)
		}
	})
}

// lookupAllPages follows NextPageToken for at most maxPages pages and
// returns every resource in the order received.
func lookupAllPages(t *testing.T, c *client.Client, req client.LookupResourcesRequest, maxPages int) []string {
	t.Helper()
	var got []string
	for pages := 0; ; pages++ {
		if pages == maxPages {
			t.Fatalf("paging did not end within %d pages; got %v so far", maxPages, got)
		}
		page, err := c.LookupResources(context.Background(), req)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(page.Resources) > req.PageSize {
			t.Errorf("page %d has %d resources, want at most %d", pages, len(page.Resources), req.PageSize)
		}
		got = append(got, page.Resources...)
		if page.NextPageToken == "" {
			return got
		}
		req.PageToken = page.NextPageToken
	}
}

func TestEncodedSubjectInPath(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	alice := s.clientFor(t, "alice", false)
	mustCreate(t, alice, tree...)

	// A subject that is not [A-Za-z0-9_-]{1,255} is encoded as "=" and
	// base64url, which the member URLs must carry intact.
	email := s.clientFor(t, "erin@example.com", false)
	me, err := email.Me(ctx)
	if err != nil {
		t.Fatalf("Me: %v", err)
	}
	if want := "user:dev|=ZXJpbkBleGFtcGxlLmNvbQ"; me.Principal != want {
		t.Fatalf("Principal = %q, want %q", me.Principal, want)
	}
	if _, err := alice.SetMember(ctx, "document:spec", me.Principal, "editor"); err != nil {
		t.Fatalf("SetMember: %v", err)
	}
	if !email.Allowed(ctx, "", "edit", "document:spec") {
		t.Errorf("erin cannot edit after SetMember")
	}
	if _, err := alice.RemoveMember(ctx, "document:spec", me.Principal); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	if email.Allowed(ctx, "", "view", "document:spec") {
		t.Errorf("erin can still view after RemoveMember")
	}
}

func TestConcurrentChecks(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	alice := s.clientFor(t, "alice", false)
	mustCreate(t, alice, tree...)

	var wg sync.WaitGroup
	var denied atomic.Int32
	for range 20 {
		wg.Go(func() {
			if !alice.Allowed(ctx, "", "manage", "document:spec") {
				denied.Add(1)
			}
		})
	}
	wg.Wait()
	if n := denied.Load(); n != 0 {
		t.Errorf("%d of 20 concurrent checks denied, want 0", n)
	}
}

func TestNewValidatesBaseURL(t *testing.T) {
	tests := []struct {
		name, url string
		ok        bool
	}{
		{"http loopback", "http://127.0.0.1:8080", true},
		{"https with path prefix", "https://gatehouse.example.com/authz/", true},
		{"no scheme", "gatehouse.example.com", false},
		{"ftp scheme", "ftp://gatehouse.example.com", false},
		{"no host", "http://", false},
		{"query", "https://gatehouse.example.com/?a=b", false},
		{"user info", "https://u:p@gatehouse.example.com", false},
		{"unparsable", "http://[::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.New(tt.url)
			if (err == nil) != tt.ok {
				t.Errorf("New(%q) error = %v, want ok = %v", tt.url, err, tt.ok)
			}
		})
	}
}

func TestRejectsMalformedRefsBeforeSending(t *testing.T) {
	var requests atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests.Add(1) }))
	t.Cleanup(ts.Close)
	c, err := client.New(ts.URL, client.WithToken("t"))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	ctx := context.Background()

	calls := map[string]func() error{
		"resource without colon": func() error { _, err := c.DeleteResource(ctx, "document"); return err },
		"dot-dot id":             func() error { _, err := c.DeleteResource(ctx, "document:.."); return err },
		"empty type":             func() error { _, err := c.DeleteResource(ctx, ":d1"); return err },
		"subject without colon":  func() error { _, err := c.SetMember(ctx, "document:d1", "alice", "viewer"); return err },
		"dot-dot subject":        func() error { _, err := c.RemoveMember(ctx, "document:d1", ".."); return err },
	}
	for name, call := range calls {
		if err := call(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("server received %d requests, want 0", n)
	}
}

func TestPathEscaping(t *testing.T) {
	var gotPath string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.EscapedPath()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(ts.Close)
	c, err := client.New(ts.URL+"/prefix/", client.WithToken("t"))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	if _, err := c.RemoveMember(context.Background(), "document:a/b", "user:corp|=YQ?x"); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	want := "/prefix/v1/resources/document/a%2Fb/members/user:corp%7C=YQ%3Fx"
	if gotPath != want {
		t.Errorf("path = %q, want %q", gotPath, want)
	}
}

func TestTokenSource(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()

	t.Run("called per request", func(t *testing.T) {
		var calls atomic.Int32
		c, err := client.New(s.url, client.WithTokenSource(func(context.Context) (string, error) {
			calls.Add(1)
			return s.srv.DevIssuer().Mint("alice", false)
		}))
		if err != nil {
			t.Fatalf("new client: %v", err)
		}
		for range 2 {
			if _, err := c.Me(ctx); err != nil {
				t.Fatalf("Me: %v", err)
			}
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("token source called %d times, want 2", n)
		}
	})

	t.Run("error stops the request", func(t *testing.T) {
		errNoToken := errors.New("no token")
		c, err := client.New(s.url, client.WithTokenSource(func(context.Context) (string, error) { return "", errNoToken }))
		if err != nil {
			t.Fatalf("new client: %v", err)
		}
		_, err = c.Me(ctx)
		if !errors.Is(err, errNoToken) {
			t.Errorf("Me error = %v, want it to wrap %v", err, errNoToken)
		}
	})

	t.Run("empty token rejected", func(t *testing.T) {
		c, err := client.New(s.url, client.WithToken(""))
		if err != nil {
			t.Fatalf("new client: %v", err)
		}
		if _, err := c.Me(ctx); err == nil || client.IsUnauthorized(err) {
			t.Errorf("Me error = %v, want a client-side error", err)
		}
	})
}

func TestUserAgent(t *testing.T) {
	var got string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("User-Agent")
		io.WriteString(w, `{"status":"ok"}`)
	}))
	t.Cleanup(ts.Close)
	c, err := client.New(ts.URL, client.WithUserAgent("billing/1.2"))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	if err := c.Healthz(context.Background()); err != nil {
		t.Fatalf("Healthz: %v", err)
	}
	if got != "billing/1.2" {
		t.Errorf("User-Agent = %q, want %q", got, "billing/1.2")
	}
}

func TestResponseHandling(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		check   func(t *testing.T, err error)
	}{
		{
			name: "body over limit",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"principal":"`)
				io.WriteString(w, strings.Repeat("a", 9<<20))
				io.WriteString(w, `"}`)
			},
			check: func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "larger than") {
					t.Errorf("error = %v, want a size error", err)
				}
			},
		},
		{
			name: "error without problem details",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.Header().Set("X-Request-Id", "proxy-1")
				w.WriteHeader(http.StatusBadGateway)
				io.WriteString(w, "<html>bad gateway</html>")
			},
			check: func(t *testing.T, err error) {
				var e *client.Error
				if !errors.As(err, &e) {
					t.Fatalf("error = %v, want *client.Error", err)
				}
				want := client.Error{Status: 502, Title: "Bad Gateway", RequestID: "proxy-1"}
				if *e != want {
					t.Errorf("error = %+v, want %+v", *e, want)
				}
			},
		},
		{
			name: "503 is unavailable",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, `{"title":"Service Unavailable","status":503,"detail":"retry later","request_id":"r1"}`)
			},
			check: func(t *testing.T, err error) {
				if !client.IsUnavailable(err) {
					t.Errorf("error = %v, want 503", err)
				}
			},
		},
		{
			name: "invalid JSON",
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"principal":`)
			},
			check: func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "decode response") {
					t.Errorf("error = %v, want a decode error", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.handler)
			t.Cleanup(ts.Close)
			c, err := client.New(ts.URL, client.WithToken("t"))
			if err != nil {
				t.Fatalf("new client: %v", err)
			}
			_, err = c.Me(context.Background())
			tt.check(t, err)
		})
	}
}

func TestContextBoundsRequest(t *testing.T) {
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		close(release)
		ts.Close()
	})
	c, err := client.New(ts.URL, client.WithToken("t"))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()

	start := time.Now()
	_, err = c.Check(ctx, client.CheckRequest{Permission: "view", Resource: "document:d1"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Check returned after %s, want about 100ms", elapsed)
	}
	if c.Allowed(ctx, "", "view", "document:d1") {
		t.Errorf("Allowed = true with an expired context")
	}
}
