// Package problem writes RFC 9457 problem details responses.
package problem

import (
	"encoding/json"
	"net/http"
)

// ContentType is the media type of a problem details document (RFC 9457, section 3).
const ContentType = "application/problem+json"

// Details is an RFC 9457 problem details document. Type is left empty, which
// RFC 9457 section 4.2.1 reads as "about:blank": the status code is the type.
type Details struct {
	Type     string `json:"type,omitempty"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`

	// RequestID lets an operator find the server-side log line for this response.
	RequestID string `json:"request_id,omitempty"`
}

// Write sends a problem details response with the given status. The title is
// the standard reason phrase of the status; detail is shown to the client, so
// it must not contain secrets or internal error text.
func Write(w http.ResponseWriter, status int, detail string) {
	WriteDetails(w, Details{Status: status, Detail: detail})
}

// WriteDetails sends d as the response. An empty Title becomes the status's
// reason phrase.
func WriteDetails(w http.ResponseWriter, d Details) {
	if d.Title == "" {
		d.Title = http.StatusText(d.Status)
	}
	if d.RequestID == "" {
		d.RequestID = w.Header().Get("X-Request-Id")
	}

	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(d.Status)
	_ = json.NewEncoder(w).Encode(d)
}
