package httpapi

// The tests in this file send hostile bodies to decode, for every request
// type that a handler decodes. Each must be a 4xx that leaves the target
// unchanged. Every body that encoding/json writes for the type must still
// be accepted.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// rvTarget is one request type and a string field of it at the top level.
type rvTarget struct {
	name  string
	new   func() any
	field string
}

func rvTargets() []rvTarget {
	return []rvTarget{
		{"check", func() any { return &checkRequest{} }, "subject"},
		{"bulk", func() any { return &bulkRequest{} }, "consistency_token"},
		{"lookup resources", func() any { return &lookupResourcesRequest{} }, "subject"},
		{"lookup subjects", func() any { return &lookupSubjectsRequest{} }, "resource"},
		{"grant", func() any { return &grantRequest{} }, "subject"},
		{"create link", func() any { return &createLinkRequest{} }, "resource"},
		{"redeem link", func() any { return &redeemLinkRequest{} }, "token"},
		{"create", func() any { return &createRequest{} }, "resource"},
		{"member", func() any { return &memberRequest{} }, "role"},
	}
}

func rvDecode(t *testing.T, maxBody int64, body string, v any) (bool, int, string) {
	t.Helper()
	a := &api{maxBody: maxBody}
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	ok := a.decode(w, r, v)
	var p struct{ Detail string }
	if !ok {
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatalf("problem body %q: %v", w.Body.String(), err)
		}
	}
	return ok, w.Code, p.Detail
}

// rvEscape writes the first letter of key as a \u escape of letter.
func rvEscape(key string, letter rune) string {
	return fmt.Sprintf(`\u%04x`, letter) + key[1:]
}

func TestAttackDecodeHostileBodies(t *testing.T) {
	const limit = 64 << 10
	for _, target := range rvTargets() {
		t.Run(target.name, func(t *testing.T) {
			k := target.field
			upper := strings.ToUpper(k[:1]) + k[1:]
			bodies := map[string]string{
				"repeated key":                   fmt.Sprintf(`{%q:"a",%q:"b"}`, k, k),
				"repeated key, one escaped":      fmt.Sprintf(`{%q:"a","%s":"b"}`, k, rvEscape(k, rune(k[0]))),
				"key differing in case":          fmt.Sprintf(`{%q:"a"}`, upper),
				"escaped key folding to a field": fmt.Sprintf(`{"%s":"a"}`, rvEscape(k, rune(upper[0]))),
				"key and its case variant":       fmt.Sprintf(`{%q:"a",%q:"b"}`, k, upper),
				"unknown key":                    fmt.Sprintf(`{%q:"a","is_admin":true}`, k),
				"trailing garbage":               fmt.Sprintf(`{%q:"a"} garbage`, k),
				"second object":                  fmt.Sprintf(`{%q:"a"}{%q:"b"}`, k, k),
				"trailing null":                  fmt.Sprintf(`{%q:"a"} null`, k),
				"trailing bracket":               fmt.Sprintf(`{%q:"a"}]`, k),
				"trailing NUL":                   fmt.Sprintf(`{%q:"a"}`, k) + "\x00",
				"empty":                          ``,
				"whitespace":                     " \n\t ",
				"number in a string field":       fmt.Sprintf(`{%q:12}`, k),
				"object in a string field":       fmt.Sprintf(`{%q:{"a":1,"a":2}}`, k),
				"array at the top":               fmt.Sprintf(`[{%q:"a"}]`, k),
				"string at the top":              `"a"`,
				"deeply nested arrays":           fmt.Sprintf(`{%q:`, k) + strings.Repeat("[", 30000) + strings.Repeat("]", 30000) + `}`,
				"deep nesting, unknown key":      `{"x":` + strings.Repeat("[", 30000) + strings.Repeat("]", 30000) + `}`,
				"too large":                      fmt.Sprintf(`{%q:"%s"}`, k, strings.Repeat("x", limit)),
				"byte order mark":                "\ufeff" + fmt.Sprintf(`{%q:"a"}`, k),
				"truncated":                      fmt.Sprintf(`{%q:"a"`, k),
				"invalid UTF-8 keys repeated":    "{\"" + k + "\xff\":1,\"" + k + "\xfe\":2}",
			}
			if folded := strings.NewReplacer("s", "\u017f", "k", "\u212a").Replace(k); folded != k {
				// encoding/json folds these to s and k when it matches keys.
				bodies["key with a Unicode case fold"] = fmt.Sprintf(`{%q:"a"}`, folded)
			}
			for name, body := range bodies {
				v := target.new()
				ok, code, detail := rvDecode(t, limit, body, v)
				if ok {
					t.Errorf("%s: decode accepted %.80q as %+v", name, body, v)
					continue
				}
				if code < 400 || code >= 500 || detail == "" {
					t.Errorf("%s: status %d, detail %q; want a 4xx with a detail", name, code, detail)
				}
				if !reflect.DeepEqual(v, target.new()) {
					t.Errorf("%s: rejected body changed the target: %+v", name, v)
				}
			}
		})
	}
}

// TestAttackDecodeNestedHostileBodies repeats and folds keys inside the
// items of a bulk request.
func TestAttackDecodeNestedHostileBodies(t *testing.T) {
	for name, body := range map[string]string{
		"repeated key in an item":      `{"checks":[{"subject":"user:a","subject":"user:b","permission":"view","resource":"org:o"}]}`,
		"case-folded key in an item":   `{"checks":[{"Subject":"user:a","permission":"view","resource":"org:o"}]}`,
		"unknown key in the 2nd item":  `{"checks":[{"subject":"user:a","permission":"view","resource":"org:o"},{"subject":"user:a","admin":1}]}`,
		"escaped repeated item key":    `{"checks":[{"permission":"view","\u0070ermission":"edit"}]}`,
		"repeated top key after items": `{"checks":[],"checks":[{"subject":"user:a"}]}`,
	} {
		var v bulkRequest
		ok, code, detail := rvDecode(t, 64<<10, body, &v)
		if ok || code != http.StatusBadRequest || detail == "" {
			t.Errorf("%s: accepted %v, status %d, detail %q; want a 400", name, ok, code, detail)
		}
	}
}

// TestAttackDecodeAcceptsMarshalled marshals a filled value of every
// request type, and checks that decode accepts it and reads it back, also
// with its first key written as \u escapes.
func TestAttackDecodeAcceptsMarshalled(t *testing.T) {
	for _, target := range rvTargets() {
		t.Run(target.name, func(t *testing.T) {
			want := target.new()
			rvFill(reflect.ValueOf(want).Elem())
			data, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			for _, body := range []string{string(data), " " + string(data) + " \r\n", strings.Replace(string(data), `"`+target.field+`"`, `"`+rvEscape(target.field, rune(target.field[0]))+`"`, 1)} {
				got := target.new()
				ok, code, detail := rvDecode(t, 64<<10, body, got)
				if !ok {
					t.Errorf("decode rejected %s: %d %s", body, code, detail)
					continue
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("decode of %s = %+v, want %+v", body, got, want)
				}
			}
		})
	}
}

// rvFill sets every exported field it can reach to a value other than zero.
func rvFill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() || v.Type().Field(i).Anonymous {
				rvFill(f)
			}
		}
	case reflect.String:
		if v.CanSet() {
			v.SetString("s")
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		if v.CanSet() {
			v.SetInt(3)
		}
	case reflect.Bool:
		if v.CanSet() {
			v.SetBool(true)
		}
	case reflect.Pointer:
		if v.CanSet() {
			v.Set(reflect.New(v.Type().Elem()))
			rvFill(v.Elem())
		}
	case reflect.Slice:
		if v.CanSet() {
			v.Set(reflect.MakeSlice(v.Type(), 2, 2))
			for i := range 2 {
				rvFill(v.Index(i))
			}
		}
	}
}

// TestAttackDecodeNullBody logs that decode accepts a JSON null as an empty
// request, as it did before the change. The check handler then rejects it
// with "permission is required".
func TestAttackDecodeNullBody(t *testing.T) {
	var v checkRequest
	ok, code, detail := rvDecode(t, 64<<10, "null", &v)
	t.Logf("null body: accepted %v, status %d, detail %q", ok, code, detail)
}
