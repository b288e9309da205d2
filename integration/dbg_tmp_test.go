package integration

import (
	"net/http"
	"testing"
)

func TestDbgTmp(t *testing.T) {
	ts := newTenants(t)
	for _, ps := range []int{1, 4, 5, 16, 50, 100} {
		var all []string
		tok := ""
		pages := 0
		for {
			body := map[string]any{"permission": "view", "resource_type": "document", "page_size": ps}
			if tok != "" {
				body["page_token"] = tok
			}
			r := ts.alice.do(t, http.MethodPost, "/v1/lookup/resources", body)
			var out struct {
				Resources     []string `json:"resources"`
				NextPageToken string   `json:"next_page_token"`
			}
			decodeJSON(t, r, &out)
			pages++
			all = append(all, out.Resources...)
			if out.NextPageToken == "" || pages > 20 {
				break
			}
			tok = out.NextPageToken
		}
		t.Logf("ps=%d pages=%d %v", ps, pages, all)
	}
}
