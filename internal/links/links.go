// Package links manages share links: secret tokens that give a role on a
// resource to whoever holds or redeems them.
package links

// Service manages share links. It is safe for concurrent use.
type Service struct{}
