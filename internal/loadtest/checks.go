package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
)

// bulkSize is the number of checks per bulk request, Gatehouse's maximum.
const bulkSize = 100

// checkSet is a set of check queries, encoded in advance for both systems
// so that the load generator spends little CPU of its own per request.
type checkSet struct {
	queries []CheckQuery
	json    [][]byte
	proto   []*v1.CheckPermissionRequest

	// bulks are groups of bulkSize query indexes, with their bodies.
	bulks     [][]int
	bulkJSON  [][]byte
	bulkProto []*v1.CheckBulkPermissionsRequest

	next     atomic.Uint64
	repeated atomic.Uint64 // position in the repeated working set

	// sent marks the queries that Gatehouse's cold scenarios have sent,
	// and repeats counts those sent again. Gatehouse's result cache may
	// serve a repeat, so a cold scenario with many is not cold.
	sent    []atomic.Bool
	repeats atomic.Int64
}

type checkBody struct {
	Subject    string `json:"subject"`
	Permission string `json:"permission"`
	Resource   string `json:"resource"`
}

func newCheckSet(queries []CheckQuery) (*checkSet, error) {
	s := &checkSet{queries: queries, sent: make([]atomic.Bool, len(queries))}
	for _, q := range queries {
		body, err := json.Marshal(checkBody{Subject: "user:" + q.User, Permission: q.Permission, Resource: q.Resource.String()})
		if err != nil {
			return nil, err
		}
		s.json = append(s.json, body)
		s.proto = append(s.proto, &v1.CheckPermissionRequest{
			Consistency: fullyConsistent(),
			Resource:    objectRef(q.Resource),
			Permission:  q.Permission,
			Subject:     userRef(q.User),
		})
	}

	// Each bulk takes the next bulkSize queries, wrapping around; the
	// queries are shuffled already.
	for start := 0; start < len(queries); start += bulkSize {
		var indexes []int
		var items []checkBody
		var protoItems []*v1.CheckBulkPermissionsRequestItem
		for i := range bulkSize {
			n := (start + i) % len(queries)
			q := queries[n]
			indexes = append(indexes, n)
			items = append(items, checkBody{Subject: "user:" + q.User, Permission: q.Permission, Resource: q.Resource.String()})
			protoItems = append(protoItems, &v1.CheckBulkPermissionsRequestItem{
				Resource: objectRef(q.Resource), Permission: q.Permission, Subject: userRef(q.User),
			})
		}
		body, err := json.Marshal(map[string]any{"checks": items})
		if err != nil {
			return nil, err
		}
		s.bulks = append(s.bulks, indexes)
		s.bulkJSON = append(s.bulkJSON, body)
		s.bulkProto = append(s.bulkProto, &v1.CheckBulkPermissionsRequest{Consistency: fullyConsistent(), Items: protoItems})
	}
	return s, nil
}

// nextIndex returns the index of the next query, cycling through the set.
func (s *checkSet) nextIndex() int { return int(s.next.Add(1) % uint64(len(s.queries))) }

// nextBulk returns the index of the next bulk: the first whole one after
// the position of the cold scenarios, which it moves past the bulk. Bulks
// then ask the questions that follow the single checks' ones.
func (s *checkSet) nextBulk() int {
	for {
		position := s.next.Load()
		start := (position + bulkSize) / bulkSize * bulkSize // past position, as nextIndex adds first
		if s.next.CompareAndSwap(position, start+bulkSize-1) {
			return int(start / bulkSize % uint64(len(s.bulks)))
		}
	}
}

// recordSent records that a cold scenario sent query i to Gatehouse.
func (s *checkSet) recordSent(i int) {
	if s.sent[i].Swap(true) {
		s.repeats.Add(1)
	}
}

// repeatedQuestions is how many distinct queries the repeated-check
// scenarios cycle through: a small working set, as when the same users open
// the same documents again and again.
const repeatedQuestions = 500

func (s *checkSet) nextRepeated() int {
	return int(s.repeated.Add(1) % uint64(min(repeatedQuestions, len(s.queries))))
}

// rawRepeatedCheck is rawCheck on the repeated working set.
func (r *run) rawRepeatedCheck(ctx context.Context, _ int) (int, int, error) {
	return r.rawCheckAt(ctx, r.checks.nextRepeated())
}

// gatehouseRepeatedCheck is gatehouseCheck on the repeated working set.
func (r *run) gatehouseRepeatedCheck(ctx context.Context, _ int) (int, int, error) {
	return r.gatehouseCheckAt(ctx, r.checks.nextRepeated())
}

// rawCheck runs one check through the raw SpiceDB client.
func (r *run) rawCheck(ctx context.Context, _ int) (int, int, error) {
	return r.rawCheckAt(ctx, r.checks.nextIndex())
}

func (r *run) rawCheckAt(ctx context.Context, i int) (int, int, error) {
	resp, err := r.raw.Client.CheckPermission(ctx, r.checks.proto[i])
	if err != nil {
		return 1, 0, err
	}
	return 1, r.wrongAnswer("SpiceDB", i, hasPermission(resp.GetPermissionship())), nil
}

// gatehouseCheck runs one check through POST /v1/check as the app service.
func (r *run) gatehouseCheck(ctx context.Context, _ int) (int, int, error) {
	i := r.checks.nextIndex()
	r.checks.recordSent(i)
	return r.gatehouseCheckAt(ctx, i)
}

func (r *run) gatehouseCheckAt(ctx context.Context, i int) (int, int, error) {
	var out struct {
		Allowed bool `json:"allowed"`
	}
	if err := r.gh.call(ctx, r.app, http.MethodPost, "/v1/check", r.checks.json[i], http.StatusOK, &out); err != nil {
		return 1, 0, err
	}
	return 1, r.wrongAnswer("Gatehouse", i, out.Allowed), nil
}

// wrongAnswer returns 1, and logs the query, when allowed differs from
// the oracle's expected result for query i. Otherwise it returns 0.
func (r *run) wrongAnswer(system string, i int, allowed bool) int {
	q := r.checks.queries[i]
	if allowed == q.Expected {
		return 0
	}
	r.logger.Error("wrong answer", "system", system, "subject", "user:"+q.User, "permission", q.Permission, "resource", q.Resource.String(), "allowed", allowed, "expected", q.Expected)
	return 1
}

// gatehouseBulk runs bulkSize checks through POST /v1/check/bulk. An item
// with an error counts as an error, not as a wrong answer.
func (r *run) gatehouseBulk(ctx context.Context, _ int) (int, int, error) {
	b := r.checks.nextBulk()
	for _, i := range r.checks.bulks[b] {
		r.checks.recordSent(i)
	}
	var out struct {
		Results []struct {
			Allowed bool            `json:"allowed"`
			Error   json.RawMessage `json:"error"`
		} `json:"results"`
	}
	if err := r.gh.call(ctx, r.app, http.MethodPost, "/v1/check/bulk", r.checks.bulkJSON[b], http.StatusOK, &out); err != nil {
		return bulkSize, 0, err
	}
	if len(out.Results) != bulkSize {
		return bulkSize, 0, fmt.Errorf("bulk check returned %d results for %d checks", len(out.Results), bulkSize)
	}
	wrong, failed := 0, 0
	for n, res := range out.Results {
		switch {
		case res.Error != nil:
			failed++
		default:
			wrong += r.wrongAnswer("Gatehouse bulk", r.checks.bulks[b][n], res.Allowed)
		}
	}
	if failed > 0 {
		return bulkSize, wrong, fmt.Errorf("%d of %d bulk check items failed", failed, bulkSize)
	}
	return bulkSize, wrong, nil
}

// rawBulk runs bulkSize checks through SpiceDB's CheckBulkPermissions.
func (r *run) rawBulk(ctx context.Context, _ int) (int, int, error) {
	b := r.checks.nextBulk()
	resp, err := r.raw.Client.CheckBulkPermissions(ctx, r.checks.bulkProto[b])
	if err != nil {
		return bulkSize, 0, err
	}
	pairs := resp.GetPairs()
	if len(pairs) != bulkSize {
		return bulkSize, 0, fmt.Errorf("bulk check returned %d results for %d checks", len(pairs), bulkSize)
	}
	wrong, failed := 0, 0
	for n, pair := range pairs {
		if pair.GetError() != nil {
			failed++
			continue
		}
		wrong += r.wrongAnswer("SpiceDB bulk", r.checks.bulks[b][n], hasPermission(pair.GetItem().GetPermissionship()))
	}
	if failed > 0 {
		return bulkSize, wrong, fmt.Errorf("%d of %d bulk check items failed", failed, bulkSize)
	}
	return bulkSize, wrong, nil
}

func hasPermission(p v1.CheckPermissionResponse_Permissionship) bool {
	return p == v1.CheckPermissionResponse_PERMISSIONSHIP_HAS_PERMISSION
}

func wrongIf(b bool) int {
	if b {
		return 1
	}
	return 0
}
