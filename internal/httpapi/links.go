package httpapi

import "net/http"

// registerLinkRoutes adds the share link endpoints.
func (a *api) registerLinkRoutes(mux *http.ServeMux) {}
