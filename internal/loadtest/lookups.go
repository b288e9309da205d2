package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
)

// maxPageSize is the largest page of a Gatehouse lookup.
const maxPageSize = 1000

// maxPages bounds one pass through a lookup's pages, so that a server that
// keeps returning page tokens cannot hold the benchmark forever.
const maxPages = 10000

type lookupBody struct {
	Subject      string `json:"subject"`
	Permission   string `json:"permission"`
	ResourceType string `json:"resource_type"`
	PageSize     int    `json:"page_size"`
	PageToken    string `json:"page_token,omitempty"`
}

type lookupPage struct {
	Resources     []string `json:"resources"`
	NextPageToken string   `json:"next_page_token"`
}

// gatehouseLookupPage requests one page of the documents that the user can
// view, as the app service.
func (r *run) gatehouseLookupPage(ctx context.Context, userID, pageToken string) (lookupPage, error) {
	body, err := json.Marshal(lookupBody{
		Subject: "user:" + userID, Permission: "view", ResourceType: typeDocument,
		PageSize: maxPageSize, PageToken: pageToken,
	})
	if err != nil {
		return lookupPage{}, err
	}
	var page lookupPage
	err = r.gh.call(ctx, r.app, http.MethodPost, "/v1/lookup/resources", body, http.StatusOK, &page)
	return page, err
}

// lookupFirstPage returns an operation that requests the first page and
// compares it with the first maxPageSize of the oracle's documents.
func (r *run) lookupFirstPage(userID string) operation {
	want := documentRefs(r.lookupExpected[userID])
	want = want[:min(len(want), maxPageSize)]
	return func(ctx context.Context, _ int) (int, int, error) {
		page, err := r.gatehouseLookupPage(ctx, userID, "")
		if err != nil {
			return 1, 0, err
		}
		return 1, wrongIf(!slices.Equal(page.Resources, want)), nil
	}
}

// lookupAllPages returns an operation that pages through every result and
// compares their union with the oracle's documents. A resource repeated on
// a later page counts as a wrong answer, because the API promises each
// resource once.
func (r *run) lookupAllPages(userID string) operation {
	want := documentRefs(r.lookupExpected[userID])
	return func(ctx context.Context, _ int) (int, int, error) {
		var got []string
		token := ""
		for range maxPages {
			page, err := r.gatehouseLookupPage(ctx, userID, token)
			if err != nil {
				return 1, 0, fmt.Errorf("page %d: %w", len(got)/maxPageSize+1, err)
			}
			got = append(got, page.Resources...)
			if page.NextPageToken == "" {
				slices.Sort(got)
				return 1, wrongIf(!slices.Equal(got, want)), nil
			}
			token = page.NextPageToken
		}
		return 1, 0, fmt.Errorf("more than %d pages", maxPages)
	}
}

// rawLookup returns an operation that streams SpiceDB's LookupResources
// for user and compares the set of ids with the oracle's. SpiceDB may
// report a resource once per path that reaches it, so repeats are removed
// before comparing.
func (r *run) rawLookup(userID string) operation {
	want := r.lookupExpected[userID]
	req := &v1.LookupResourcesRequest{
		Consistency:        fullyConsistent(),
		ResourceObjectType: typeDocument,
		Permission:         "view",
		Subject:            userRef(userID),
	}
	return func(ctx context.Context, _ int) (int, int, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := r.raw.Client.LookupResources(ctx, req)
		if err != nil {
			return 1, 0, err
		}
		var got []string
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return 1, 0, err
			}
			if resp.GetPermissionship() == v1.LookupPermissionship_LOOKUP_PERMISSIONSHIP_HAS_PERMISSION {
				got = append(got, resp.GetResourceObjectId())
			}
		}
		slices.Sort(got)
		got = slices.Compact(got)
		return 1, wrongIf(!slices.Equal(got, want)), nil
	}
}

func documentRefs(ids []string) []string {
	refs := make([]string, len(ids))
	for i, id := range ids {
		refs[i] = typeDocument + ":" + id
	}
	return refs
}
