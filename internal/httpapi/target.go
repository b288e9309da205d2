package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse-authz/gatehouse/internal/problem"
)

// queryParameters lists, by route pattern, the query parameters that the
// route's handler reads. A request with a parameter that its route does not
// list, or with one parameter given twice, gets 400 before the handler
// runs, so no handler reads a value that the caller did not mean. A route
// missing here takes no query parameters. Each key must equal the pattern
// that New, registerGrantRoutes or registerLinkRoutes registers.
var queryParameters = map[string][]string{
	"GET /v1/resources/{type}/{id}/members":              {"page_size", "page_token"},
	"DELETE /v1/resources/{type}/{id}":                   {"reason"},
	"DELETE /v1/resources/{type}/{id}/members/{subject}": {"reason"},
	"POST /v1/principals/{principal}/revoke-sessions":    {"reason"},
	"GET /v1/audit":          {"org", "resource", "actor", "action", "since", "until", "page_size", "page_token"},
	"GET /v1/grants":         {"resource", "subject", "state", "break_glass", "page_size", "page_token"},
	"DELETE /v1/grants/{id}": {"reason"},
	"GET /v1/links":          {"resource", "page_size", "page_token"},
	"DELETE /v1/links/{id}":  {"reason"},
}

// oauthRoutes check their own query, because their clients expect errors in
// the OAuth 2.0 format (RFC 6749, section 5.2) rather than problem details.
// parseForm rejects any query on them.
var oauthRoutes = map[string]bool{
	"POST /oauth2/token":      true,
	"POST /oauth2/introspect": true,
}

// checkPath rejects a request whose path has "." or ".." segments or
// empty segments ("//"). net/http's ServeMux would respond to it with a
// bare 307 redirect to the cleaned path. It compares the escaped path, as the mux
// does, so an encoded dot ("%2E") is left for the handler's id checks.
// CONNECT requests are exempt because the mux does not clean their path.
// On failure it has written the 400 response and returns false.
func checkPath(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodConnect {
		return true
	}
	escaped := r.URL.EscapedPath()
	clean := cleanPath(escaped)
	if clean == escaped {
		return true
	}
	problem.Write(w, http.StatusBadRequest, fmt.Sprintf(`path %q is not canonical: remove ".", ".." and empty segments, as in %q`, clip(escaped, maxEchoInDetail), clip(clean, maxEchoInDetail)))
	return false
}

// cleanPath returns p as net/http's ServeMux cleans it before routing:
// with a leading slash, without "." and ".." segments or repeated slashes,
// and with its trailing slash kept.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean
}

// checkQuery rejects a query string that url.ParseQuery cannot parse
// (r.URL.Query would drop the bad pair), a parameter that the route of
// pattern does not take, and a parameter given more than once (r.URL.Query
// would use the first). On failure it has written the 400 response and
// returns false.
func checkQuery(w http.ResponseWriter, r *http.Request, pattern string) bool {
	if r.URL.RawQuery == "" || oauthRoutes[pattern] {
		return true
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "query string is malformed: "+err.Error())
		return false
	}

	accepted := queryParameters[pattern]
	names := make([]string, 0, len(query))
	for name := range query {
		names = append(names, name)
	}
	// Sorted, so that a request with several bad parameters always gets the
	// same message.
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(accepted, name) {
			problem.Write(w, http.StatusBadRequest, unknownParameterDetail(name, accepted))
			return false
		}
		if len(query[name]) > 1 {
			problem.Write(w, http.StatusBadRequest, fmt.Sprintf("query parameter %s appears more than once", clip(strconv.Quote(name), maxEchoInDetail)))
			return false
		}
	}
	return true
}

func unknownParameterDetail(name string, accepted []string) string {
	// Quoted first, so that the limit holds for the escapes of control
	// bytes too.
	quoted := clip(strconv.Quote(name), maxEchoInDetail)
	if len(accepted) == 0 {
		return fmt.Sprintf("unknown query parameter %s: this endpoint takes no query parameters", quoted)
	}
	sorted := slices.Sorted(slices.Values(accepted))
	return fmt.Sprintf("unknown query parameter %s; accepted: %s", quoted, strings.Join(sorted, ", "))
}
