package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// maxErrorBodyBytes bounds how much of an error response is read.
const maxErrorBodyBytes = 64 << 10

// Error is a non-2xx response from Gatehouse, decoded from its RFC 9457
// problem details body (application/problem+json). It is also the Error of
// a failed item of a bulk check.
type Error struct {
	// Status is the HTTP status code.
	Status int `json:"status"`

	// Title is the reason phrase of Status, such as "Not Found".
	Title string `json:"title"`

	// Detail explains the failure to the caller, such as
	// `not found: document:d1`. It may be empty.
	Detail string `json:"detail,omitempty"`

	// RequestID identifies the request in the server's logs, from the body
	// or else the X-Request-Id header. Quote it when reporting a problem.
	RequestID string `json:"request_id,omitempty"`

	// WWWAuthenticate is the WWW-Authenticate header of a 401 response,
	// such as `Bearer realm="gatehouse", error="invalid_token", ...`.
	WWWAuthenticate string `json:"-"`
}

// Error returns the status, title, detail and request id in one line.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gatehouse: %d %s", e.Status, e.Title)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.RequestID != "" {
		b.WriteString(" (request_id " + e.RequestID + ")")
	}
	return b.String()
}

// IsNotFound reports whether err is a 404 *Error: the object does not
// exist, or the caller cannot see it. Gatehouse does not tell the two apart.
func IsNotFound(err error) bool { return hasStatus(err, http.StatusNotFound) }

// IsForbidden reports whether err is a 403 *Error: the caller can see the
// object but lacks the permission the operation needs.
func IsForbidden(err error) bool { return hasStatus(err, http.StatusForbidden) }

// IsConflict reports whether err is a 409 *Error, such as an id that is
// taken or the removal of an org's last owner.
func IsConflict(err error) bool { return hasStatus(err, http.StatusConflict) }

// IsUnauthorized reports whether err is a 401 *Error: the access token is
// missing, malformed, expired or not trusted.
func IsUnauthorized(err error) bool { return hasStatus(err, http.StatusUnauthorized) }

// IsUnavailable reports whether err is a 503 *Error, which a caller may
// retry after a short wait. It does not match network errors, which callers
// detect with errors.Is and net.Error themselves.
func IsUnavailable(err error) bool { return hasStatus(err, http.StatusServiceUnavailable) }

func hasStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// decodeError builds the *Error for a non-2xx response. A body that is not
// problem details, such as a proxy's HTML page, leaves Detail empty.
func decodeError(resp *http.Response) *Error {
	e := &Error{
		Status:          resp.StatusCode,
		WWWAuthenticate: resp.Header.Get("WWW-Authenticate"),
	}
	if isProblemJSON(resp.Header.Get("Content-Type")) {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
		var p Error
		if json.Unmarshal(body, &p) == nil {
			e.Title, e.Detail, e.RequestID = p.Title, p.Detail, p.RequestID
		}
	}
	if e.Title == "" {
		e.Title = http.StatusText(resp.StatusCode)
	}
	if e.RequestID == "" {
		e.RequestID = resp.Header.Get("X-Request-Id")
	}
	return e
}

func isProblemJSON(contentType string) bool {
	mediaType, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mediaType == "application/problem+json" || mediaType == "application/json")
}
