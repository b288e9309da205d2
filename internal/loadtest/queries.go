package loadtest

import (
	"fmt"
	"math/rand/v2"
)

// CheckQuery is one check question with the oracle's answer.
type CheckQuery struct {
	// User is the subject's id, such as "dev|u1".
	User       string
	Permission string
	Resource   Object
	Expected   bool

	// CrossTenant marks a subject who belongs to another org than the
	// resource, or to none.
	CrossTenant bool
}

// QueryMix counts the queries of a set by kind.
type QueryMix struct {
	Allows, Denies, CrossTenantDenies int
}

func (m QueryMix) String() string {
	return fmt.Sprintf("%d allowed, %d denied (%d of them cross-tenant)", m.Allows, m.Denies, m.CrossTenantDenies)
}

// checkPermissions are the permissions callers check, weighted towards
// view and edit as an app's traffic would be.
var checkPermissions = []string{"view", "view", "view", "view", "edit", "edit", "share", "delete", "manage", "create"}

// resourceTypeWeights are the shares of each resource type in the queries.
var resourceTypeWeights = []struct {
	typ    string
	weight float64
}{
	{typeDocument, 0.60}, {typeProject, 0.20}, {typeWorkspace, 0.10}, {typeOrg, 0.05}, {typeGroup, 0.05},
}

// GenerateQueries returns n check queries on ds, half of them allowed and
// half denied by the oracle. About a third of the denies name a user of
// another org or of none. The same seed gives the same queries.
func GenerateQueries(ds *Dataset, oracle *Oracle, n int, seed int64) ([]CheckQuery, QueryMix, error) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x717565726965))
	orgs := ds.Objects[typeOrg]
	wantAllows, wantDenies := n/2, n-n/2
	var allows, denies []CheckQuery
	var mix QueryMix

	for attempt := 0; len(allows) < wantAllows || len(denies) < wantDenies; attempt++ {
		if attempt > 50*n {
			return nil, mix, fmt.Errorf("generated only %d allowed and %d denied queries of %d in %d attempts", len(allows), len(denies), n, attempt)
		}
		resource := randomResource(ds, rng)
		resourceOrg := ds.OrgOf[resource]
		q := CheckQuery{Permission: checkPermissions[rng.IntN(len(checkPermissions))], Resource: resource}

		// Half the time, pick a user named by a role on the resource or
		// above it, who is likely allowed. Otherwise pick a user of the
		// same org, of another org or of none, who is likely denied.
		switch p := rng.Float64(); {
		case p < 0.5:
			named := oracle.namedUsers(resource)
			if len(named) == 0 {
				continue
			}
			q.User = named[rng.IntN(len(named))]
		case p < 0.7:
			q.User = pickFrom(rng, ds.OrgUsers[resourceOrg])
		case p < 0.9:
			q.User = pickFrom(rng, ds.OrgUsers[pickFrom(rng, orgs)])
		default:
			q.User = pickFrom(rng, ds.Outsiders)
		}
		if q.User == ds.Admin || q.User == "" {
			continue // the benchmark's own caller
		}
		q.CrossTenant = ds.OrgOf[user(q.User)] != resourceOrg
		q.Expected = oracle.Check(resource, q.Permission, q.User)

		switch {
		case q.Expected && len(allows) < wantAllows:
			allows = append(allows, q)
			mix.Allows++
		case !q.Expected && len(denies) < wantDenies:
			denies = append(denies, q)
			mix.Denies++
			if q.CrossTenant {
				mix.CrossTenantDenies++
			}
		}
	}

	// Shuffle, so that no worker gets a run of allowed or denied queries.
	queries := make([]CheckQuery, 0, n)
	queries = append(queries, allows...)
	queries = append(queries, denies...)
	rng.Shuffle(len(queries), func(i, j int) { queries[i], queries[j] = queries[j], queries[i] })
	return queries, mix, nil
}

func randomResource(ds *Dataset, rng *rand.Rand) Object {
	p := rng.Float64()
	for _, w := range resourceTypeWeights {
		if p < w.weight && len(ds.Objects[w.typ]) > 0 {
			return Object{Type: w.typ, ID: pickFrom(rng, ds.Objects[w.typ])}
		}
		p -= w.weight
	}
	return Object{Type: typeDocument, ID: pickFrom(rng, ds.Objects[typeDocument])}
}

func pickFrom(rng *rand.Rand, ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return ids[rng.IntN(len(ids))]
}
