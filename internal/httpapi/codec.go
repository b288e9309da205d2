package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

// decode reads r's JSON body into v. It rejects a content type other than
// JSON, a media type parameter other than charset=utf-8, bodies over the
// size limit, unknown fields (matched with case), repeated fields and
// trailing data. v must be a non-nil pointer. On success *v is replaced
// by the decoded value. On failure *v is left unchanged, and decode has
// written the 4xx response and returns false.
func (a *api) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/json" {
		problem.Write(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return false
	}
	// mime.ParseMediaType decodes RFC 2231 parameters (name*=), lets
	// charset* replace charset, and drops one it cannot decode, so the
	// parameters it returns may not be the ones sent.
	if strings.Contains(r.Header.Get("Content-Type"), "*") {
		problem.Write(w, http.StatusUnsupportedMediaType, "Content-Type parameters in the extended form (name*=value) are not supported")
		return false
	}
	if detail := checkMediaTypeParams(params); detail != "" {
		problem.Write(w, http.StatusUnsupportedMediaType, detail)
		return false
	}

	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.maxBody))
	if err != nil {
		status, detail := describeDecodeError(err, a.maxBody)
		problem.Write(w, status, detail)
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		problem.Write(w, http.StatusBadRequest, "request body is empty")
		return false
	}
	// encoding/json would replace each invalid byte with U+FFFD, so a
	// reason would reach the audit log changed.
	if !utf8.Valid(data) {
		problem.Write(w, http.StatusBadRequest, "request body is not valid UTF-8")
		return false
	}
	// The same holds for an escape of half a UTF-16 surrogate pair.
	if hasLoneSurrogate(data) {
		problem.Write(w, http.StatusBadRequest, `request body escapes half of a UTF-16 surrogate pair (\uD800 to \uDFFF without its other half), which is not a character`)
		return false
	}
	if err := checkKeys(data, reflect.TypeOf(v)); err != nil {
		problem.Write(w, http.StatusBadRequest, err.Error())
		return false
	}
	// checkKeys has rejected unknown and repeated keys and trailing data.
	// encoding/json sets fields as it goes, and allocates a pointer field
	// before it finds a value of the wrong type for it, so the body is
	// decoded into a fresh value that replaces *v only on success.
	fresh := reflect.New(reflect.TypeOf(v).Elem())
	if err := json.Unmarshal(data, fresh.Interface()); err != nil {
		status, detail := describeDecodeError(err, a.maxBody)
		problem.Write(w, status, detail)
		return false
	}
	reflect.ValueOf(v).Elem().Set(fresh.Elem())
	return true
}

// checkMediaTypeParams returns the reason to reject the parameters of an
// application/json Content-Type, or "" to accept them. decode reads every
// body as UTF-8, which RFC 8259, section 8.1 requires between systems.
// Section 11 defines no parameters for application/json and lets receivers
// ignore a charset. Gatehouse is stricter on purpose, because a client that
// names another charset has probably encoded the body in it, and reading
// that as UTF-8 could store altered text. Any other parameter is rejected
// too, since Gatehouse cannot honour a parameter that it does not know.
// mime.ParseMediaType has already lowered the case of the names.
func checkMediaTypeParams(params map[string]string) string {
	if charset, ok := params["charset"]; ok && !strings.EqualFold(charset, "utf-8") {
		return fmt.Sprintf("Content-Type charset %q is not supported: send the body as UTF-8, with charset=utf-8 or no charset", charset)
	}
	names := make([]string, 0, len(params))
	for name := range params {
		if name != "charset" {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return fmt.Sprintf("Content-Type parameter %q is not supported: application/json takes no parameters other than charset=utf-8", names[0])
}

func describeDecodeError(err error, limit int64) (int, string) {
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit)
	case errors.Is(err, io.EOF):
		return http.StatusBadRequest, "request body is empty"
	case errors.As(err, &syntaxErr) && syntaxErr.Error() == "unexpected end of JSON input":
		// json.Unmarshal's word for a document cut short.
		return http.StatusBadRequest, "request body is truncated JSON"
	case errors.As(err, &syntaxErr):
		return http.StatusBadRequest, fmt.Sprintf("request body is not valid JSON (at byte %d)", syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadRequest, "request body is truncated JSON"
	case errors.As(err, &typeErr):
		return http.StatusBadRequest, fmt.Sprintf("field %q must be a JSON %s", jsonPath(typeErr.Field), jsonKind(typeErr.Type))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return http.StatusBadRequest, "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return http.StatusBadRequest, "request body is not valid JSON"
}

// jsonPath returns the path of a field in the request body from the path
// that encoding/json reports, which also names the Go types of embedded
// structs. Those are the only elements with capitals: the API's keys are
// lower case.
func jsonPath(field string) string {
	var keys []string
	for key := range strings.SplitSeq(field, ".") {
		if strings.ToLower(key) == key {
			keys = append(keys, key)
		}
	}
	return strings.Join(keys, ".")
}

// jsonKind names the JSON type that a value of Go type t is decoded from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	default:
		return "string"
	}
}

// writeJSON sends v as JSON. Responses are not cacheable unless the handler
// set its own Cache-Control.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	data, err := json.Marshal(v)
	if err != nil {
		// A value that cannot be encoded is a bug; report it as one
		// rather than send an empty body.
		slog.Error("encode response", "error", err)
		problem.Write(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

// hasLoneSurrogate reports whether a JSON text escapes a UTF-16 surrogate
// that is not part of a high-low pair, such as "\ud800" alone.
// encoding/json decodes such an escape to U+FFFD. A backslash outside a
// string is a syntax error that the decoder reports, so the scan need not
// track strings.
func hasLoneSurrogate(data []byte) bool {
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		i++ // the escaped character, which may itself be a backslash
		if i >= len(data) || data[i] != 'u' {
			continue
		}
		r, ok := hex4(data, i+1)
		if !ok {
			continue // a syntax error
		}
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(data) || data[i+1] != '\\' || data[i+2] != 'u' {
				return true
			}
			low, ok := hex4(data, i+3)
			if !ok || low < 0xDC00 || low > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

// hex4 parses the four hexadecimal digits at data[at:at+4].
func hex4(data []byte, at int) (rune, bool) {
	if at+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[at : at+4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}
