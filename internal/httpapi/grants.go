package httpapi

import "net/http"

// registerGrantRoutes adds the temporary grant endpoints.
func (a *api) registerGrantRoutes(mux *http.ServeMux) {}
