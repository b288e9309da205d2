package authz

import (
	"slices"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// Permissions are the permissions callers may check on every resource type.
var Permissions = []string{"view", "edit", "delete", "share", "manage", "create"}

// rolesByType lists the direct roles of each resource type, strongest first.
var rolesByType = map[string][]string{
	object.TypeOrg:       {"owner", "admin", "member", "app"},
	object.TypeWorkspace: {"admin", "editor", "viewer"},
	object.TypeProject:   {"admin", "editor", "viewer"},
	object.TypeDocument:  {"owner", "editor", "viewer"},
	object.TypeGroup:     {"admin", "member"},
}

// creatorRole is the role the creator (or the named owner) of a new
// resource receives.
var creatorRole = map[string]string{
	object.TypeOrg:       "owner",
	object.TypeWorkspace: "admin",
	object.TypeProject:   "admin",
	object.TypeDocument:  "owner",
	object.TypeGroup:     "admin",
}

// Roles returns the roles a resource of type t can grant.
func Roles(t string) []string { return rolesByType[t] }

func validRole(resourceType, role string) bool {
	return slices.Contains(rolesByType[resourceType], role)
}

func validPermission(p string) bool { return slices.Contains(Permissions, p) }

// subjectRelation returns the relation a subject is written with: a group
// stands for its members.
func subjectRelation(subject object.Ref) string {
	if subject.Type == object.TypeGroup {
		return "member"
	}
	return ""
}
