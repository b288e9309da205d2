package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type decodeTarget struct {
	Name  string `json:"name"`
	Inner struct {
		Role string `json:"role"`
	} `json:"inner"`
}

func TestDecodeRejects(t *testing.T) {
	a := &api{maxBody: 64}
	tests := []struct {
		name, body string
		status     int
		detail     string // a part of the problem's detail
	}{
		{"empty", "  ", http.StatusBadRequest, "request body is empty"},
		{"truncated", `{"name":"x"`, http.StatusBadRequest, "truncated JSON"},
		{"not JSON", `{"name":x}`, http.StatusBadRequest, "not valid JSON"},
		{"two objects", `{"name":"x"}{"name":"y"}`, http.StatusBadRequest, "a single JSON object"},
		{"null", ` null`, http.StatusBadRequest, "must be a JSON object"},
		{"array", `[{"name":"x"}]`, http.StatusBadRequest, "must be a JSON object"},
		{"string", `"x"`, http.StatusBadRequest, "must be a JSON object"},
		{"trailing text", `{"name":"x"} x`, http.StatusBadRequest, "a single JSON object"},
		{"unknown field", `{"name":"x","admin":true}`, http.StatusBadRequest, `unknown field "admin"`},
		{"unknown nested field", `{"inner":{"role":"r","admin":true}}`, http.StatusBadRequest, `unknown field "admin"`},
		{"case folded key", `{"Name":"x"}`, http.StatusBadRequest, `unknown field "Name"`},
		{"repeated key", `{"name":"x","name":"y"}`, http.StatusBadRequest, "appears more than once"},
		{"wrong type", `{"name":1}`, http.StatusBadRequest, `field "name" must be a JSON string`},
		{"wrong nested type", `{"inner":{"role":[]}}`, http.StatusBadRequest, `field "inner.role" must be a JSON string`},
		{"array for an object", `{"inner":[]}`, http.StatusBadRequest, `field "inner" must be a JSON object`},
		{"invalid UTF-8", "{\"name\":\"\xff\xfe\"}", http.StatusBadRequest, "not valid UTF-8"},
		{"too large", `{"name":"` + strings.Repeat("x", 100) + `"}`, http.StatusRequestEntityTooLarge, "larger than 64 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			var v decodeTarget
			if a.decode(w, r, &v) {
				t.Fatalf("decode accepted %s", tt.body)
			}
			var p struct{ Detail string }
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if w.Code != tt.status || !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("got %d %q, want %d with %q", w.Code, p.Detail, tt.status, tt.detail)
			}
		})
	}
}

func TestJSONPathDropsGoTypeNames(t *testing.T) {
	for field, want := range map[string]string{
		"checks.checkItem.subject": "checks.subject",
		"page_size":                "page_size",
		"":                         "",
	} {
		if got := jsonPath(field); got != want {
			t.Errorf("jsonPath(%q) = %q, want %q", field, got, want)
		}
	}
}

func TestDecodeAccepts(t *testing.T) {
	a := &api{maxBody: 1024}
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(` {"name":"x","inner":{"role":"viewer"}} `+"\n"))
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	var v decodeTarget
	if !a.decode(httptest.NewRecorder(), r, &v) {
		t.Fatal("decode rejected a valid body")
	}
	if v.Name != "x" || v.Inner.Role != "viewer" {
		t.Errorf("decoded %+v", v)
	}
}
