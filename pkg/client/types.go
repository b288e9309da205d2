package client

import "time"

// Values of the Consistency field of read requests.
const (
	// FullConsistency is the default: the answer reflects every write that
	// has returned, by any caller.
	FullConsistency = "full"

	// MinimizeLatency accepts an answer from a cached snapshot that can be a
	// few seconds old, so it may miss recent writes. It cannot be combined
	// with a ConsistencyToken.
	MinimizeLatency = "minimize_latency"
)

// Me is the principal that the client's access token identifies, as
// returned by GET /v1/me.
type Me struct {
	// Principal is the subject string of the caller, such as
	// "user:corp|alice" or "service:corp|billing".
	Principal string `json:"principal"`

	// Issuer is the token's "iss" claim.
	Issuer string `json:"issuer"`

	// Subject is the token's subject claim, as the issuer wrote it.
	Subject string `json:"subject"`

	// Tenant is the value of the issuer's configured tenant claim, or empty
	// when none is configured.
	Tenant string `json:"tenant,omitempty"`
}

// CreateResourceRequest is the body of POST /v1/resources.
type CreateResourceRequest struct {
	// Resource is the new resource, such as "document:d1". Required.
	Resource string `json:"resource"`

	// Parent is the resource to create it in: an org for a workspace or a
	// group, a workspace for a project, a project for a document. Empty for
	// an org, required otherwise.
	Parent string `json:"parent,omitempty"`

	// Owner receives the creator role in place of the caller. Only a
	// service may name a principal other than itself. Default: the caller.
	Owner string `json:"owner,omitempty"`
}

// CreateResourceResponse describes a resource that CreateResource created.
type CreateResourceResponse struct {
	Resource string `json:"resource"`
	Parent   string `json:"parent,omitempty"`

	// Owner is the principal that received Role on the new resource.
	Owner string `json:"owner"`

	// Role is the creator role: "owner" on an org or a document, "admin"
	// on a workspace, project or group.
	Role string `json:"role"`

	// ConsistencyToken names the snapshot that contains the new resource.
	ConsistencyToken string `json:"consistency_token"`
}

// SetMemberResponse describes the role change that SetMember made.
type SetMemberResponse struct {
	Resource string `json:"resource"`
	Subject  string `json:"subject"`
	Role     string `json:"role"`

	// PreviousRole is the direct role that Role replaced, or empty when the
	// subject held none on the resource.
	PreviousRole string `json:"previous_role,omitempty"`

	// ConsistencyToken names the snapshot that contains the change.
	ConsistencyToken string `json:"consistency_token"`
}

// ListMembersRequest selects one page of a resource's direct members.
type ListMembersRequest struct {
	// Resource is the resource whose members to list, such as
	// "project:p1". Required.
	Resource string

	// PageSize is the maximum number of entries read for the page, 1 to
	// 1000. Default (0): 100.
	PageSize int

	// PageToken is the NextPageToken of the previous page, or empty for the
	// first page.
	PageToken string
}

// Member is one subject's direct role on a resource.
type Member struct {
	// Subject is a user, a service, or a group (standing for its members).
	Subject string `json:"subject"`
	Role    string `json:"role"`

	// ExpiresAt is set for a role that ends by itself.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// ListMembersResponse is one page of a resource's direct members.
//
// A page can hold fewer members than the page size, even none, while
// NextPageToken is set, because the server counts relationships that are
// not roles (such as the link to the parent) towards the page size.
type ListMembersResponse struct {
	Members []Member `json:"members"`

	// NextPageToken continues the listing, or is empty after the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// CheckRequest is the body of POST /v1/check.
type CheckRequest struct {
	// Subject is the user, service or group ("group:<id>" stands for its
	// members) to check. Empty means the caller itself, because the client
	// omits the field. (The server rejects an empty string sent as such.)
	// An app that fills Subject from a user id should reject an empty id
	// before it calls, or it gets the caller's own decision. To check
	// another subject, the caller needs "inspect" on Resource.
	Subject string `json:"subject,omitempty"`

	// Permission is one of view, edit, delete, share, manage, create.
	// Required.
	Permission string `json:"permission"`

	// Resource is the resource to check, such as "document:d1". Required.
	Resource string `json:"resource"`

	// ConsistencyToken requests a decision at a snapshot at least as fresh
	// as the one the token names. Default: none.
	ConsistencyToken string `json:"consistency_token,omitempty"`

	// Consistency is FullConsistency or MinimizeLatency. Default (empty):
	// FullConsistency.
	Consistency string `json:"consistency,omitempty"`
}

// CheckResponse is the server's decision on a CheckRequest.
type CheckResponse struct {
	// Allowed is true only for a definite yes. A permission that holds only
	// under a condition is reported as false.
	Allowed bool `json:"allowed"`

	// ConsistencyToken names the snapshot the check was answered at.
	ConsistencyToken string `json:"consistency_token,omitempty"`
}

// CheckItem is one check of a bulk request. Its fields mean what they mean
// in CheckRequest.
type CheckItem struct {
	Subject    string `json:"subject,omitempty"`
	Permission string `json:"permission"`
	Resource   string `json:"resource"`
}

// CheckBulkRequest is the body of POST /v1/check/bulk. All checks are
// answered at one snapshot.
type CheckBulkRequest struct {
	// Checks holds 1 to 100 checks.
	Checks []CheckItem `json:"checks"`

	// ConsistencyToken and Consistency apply to every check; see
	// CheckRequest.
	ConsistencyToken string `json:"consistency_token,omitempty"`
	Consistency      string `json:"consistency,omitempty"`
}

// CheckBulkResponse holds one result per check, in the order of the
// request.
type CheckBulkResponse struct {
	Results []CheckBulkResult `json:"results"`
}

// CheckBulkResult is the answer to one check of a bulk request. When Error
// is set, that check could not be answered (it was invalid, the caller may
// not ask it, or it failed), and it must be treated as a deny.
type CheckBulkResult struct {
	// Allowed is true only for a definite yes, and never when Error is set.
	Allowed          bool   `json:"allowed"`
	ConsistencyToken string `json:"consistency_token,omitempty"`

	// Error describes why this check has no answer. Its Status is 400, 403,
	// 404 or 503, and its RequestID is empty. The predicates such as
	// IsForbidden accept it.
	Error *Error `json:"error,omitempty"`
}

// LookupResourcesRequest is the body of POST /v1/lookup/resources.
type LookupResourcesRequest struct {
	// Subject is the user, service or group to look up for. Empty means the
	// caller itself. About another subject, the server returns only the
	// resources on which the caller has "inspect".
	Subject string `json:"subject,omitempty"`

	// Permission is one of view, edit, delete, share, manage, create.
	// Required.
	Permission string `json:"permission"`

	// ResourceType is one of org, workspace, project, document, group.
	// Required.
	ResourceType string `json:"resource_type"`

	// PageSize is 1 to 1000. Default (0): 100.
	PageSize int `json:"page_size,omitempty"`

	// PageToken is the NextPageToken of the previous page, or empty for the
	// first page.
	PageToken string `json:"page_token,omitempty"`

	// ConsistencyToken and Consistency choose the snapshot; see
	// CheckRequest.
	ConsistencyToken string `json:"consistency_token,omitempty"`
	Consistency      string `json:"consistency,omitempty"`
}

// LookupResourcesResponse is one page of resources, such as
// "document:d1". A page can be shorter than the page size while
// NextPageToken is set.
type LookupResourcesResponse struct {
	Resources []string `json:"resources"`

	// NextPageToken continues the lookup, or is empty after the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// LookupSubjectsRequest is the body of POST /v1/lookup/subjects. The caller
// needs "inspect" on Resource.
type LookupSubjectsRequest struct {
	// Resource is the resource to look up, such as "document:d1". Required.
	Resource string `json:"resource"`

	// Permission is one of view, edit, delete, share, manage, create.
	// Required.
	Permission string `json:"permission"`

	// SubjectType is one of user, service, group. Required.
	SubjectType string `json:"subject_type"`

	// PageSize is 1 to 1000. Default (0): 100.
	PageSize int `json:"page_size,omitempty"`

	// PageToken is the NextPageToken of the previous page, or empty for the
	// first page.
	PageToken string `json:"page_token,omitempty"`

	// ConsistencyToken and Consistency choose the snapshot; see
	// CheckRequest.
	ConsistencyToken string `json:"consistency_token,omitempty"`
	Consistency      string `json:"consistency,omitempty"`
}

// LookupSubjectsResponse is one page of subjects, sorted by id, such as
// "user:corp|alice".
type LookupSubjectsResponse struct {
	Subjects []string `json:"subjects"`

	// NextPageToken continues the lookup, or is empty after the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}
