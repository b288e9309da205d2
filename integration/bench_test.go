package integration

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse-authz/gatehouse/internal/server"
)

// BenchmarkCheckHTTP measures POST /v1/check with real token
// verification, on the in-memory datastore: over loopback HTTP with
// requests in parallel, the whole path an app pays for, and through the
// handler alone, without the network. BenchmarkCheck in internal/engine
// measures SpiceDB alone.
func BenchmarkCheckHTTP(b *testing.B) {
	srv := runGatehouse(b, server.Config{}, "").srv

	token, err := srv.DevIssuer().Mint("alice", false)
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	post := func(path string, body any) int {
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, srv.URL()+path, bytes.NewReader(data))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var sink bytes.Buffer
		_, _ = sink.ReadFrom(resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, body := range []map[string]string{
		{"resource": "org:bench"},
		{"resource": "workspace:bw", "parent": "org:bench"},
		{"resource": "project:bp", "parent": "workspace:bw"},
		{"resource": "document:bd", "parent": "project:bp"},
	} {
		if status := post("/v1/resources", body); status != http.StatusCreated {
			b.Fatalf("create %v: status %d", body, status)
		}
	}
	check := map[string]string{"permission": "edit", "resource": "document:bd"}

	b.Run("loopback", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if status := post("/v1/check", check); status != http.StatusOK {
					b.Fatalf("check: status %d", status)
				}
			}
		})
	})
	b.Run("handler", func(b *testing.B) {
		body, _ := json.Marshal(check)
		handler := srv.Handler()
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest(http.MethodPost, "/v1/check", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("check: status %d", rec.Code)
			}
		}
	})
}
