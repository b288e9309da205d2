// Package grants manages temporary grants: a role on a resource for a
// subject that ends by itself.
package grants

// Service manages temporary grants. It is safe for concurrent use.
type Service struct{}
