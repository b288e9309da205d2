package config

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/object"
)

// Grants bounds temporary grants.
type Grants struct {
	// MaxDuration is the longest grant (from its start to its end) per
	// role name, such as {default: 720h, admin: 24h}. The key "default"
	// applies to roles without their own entry. Default: 720h (30 days)
	// for every role.
	MaxDuration map[string]time.Duration `yaml:"max_duration"`

	// BreakGlassMaxDuration is the longest break-glass grant. Default: 1h.
	BreakGlassMaxDuration time.Duration `yaml:"breakglass_max_duration"`
}

// grantRoleNames are the keys that Grants.MaxDuration accepts: "default"
// and the role names that a temporary grant can give on some resource type.
var grantRoleNames = []string{"default", "admin", "member", "owner", "editor", "viewer"}

// validateGrants reports invalid grant limits and break-glass principals.
func (f *File) validateGrants(report func(key, format string, args ...any)) {
	keys := make([]string, 0, len(f.Grants.MaxDuration))
	for role := range f.Grants.MaxDuration {
		keys = append(keys, role)
	}
	sort.Strings(keys)
	for _, role := range keys {
		key := "grants.max_duration." + role
		valid := false
		for _, name := range grantRoleNames {
			valid = valid || name == role
		}
		if !valid {
			report(key, "%q is not a role that temporary grants give; use one of %v", role, grantRoleNames)
		}
		if d := f.Grants.MaxDuration[role]; d <= 0 {
			report(key, "%s must be a positive duration, such as 24h", d)
		}
	}
	if f.Grants.BreakGlassMaxDuration < 0 {
		report("grants.breakglass_max_duration", "%s must be a positive duration, such as 1h", f.Grants.BreakGlassMaxDuration)
	}
	for i, p := range f.Platform.BreakGlass {
		if _, err := object.ParseSubject(p); err != nil || strings.HasPrefix(p, object.TypeGroup+":") {
			report("platform.breakglass["+strconv.Itoa(i)+"]", "%q must be a principal such as user:corp|alice", p)
		}
	}
}
