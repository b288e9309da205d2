package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
)

// ChurnStats counts what the background access changes did and how often
// a system's answer disagreed with the change just made.
type ChurnStats struct {
	RoleChanges int64
	GrantsEnded int64

	// Verifications counts the answers that matched the change.
	Verifications int64

	// WrongGatehouse and WrongSpiceDB count answers that contradict a
	// change that had returned (or a grant that had ended).
	WrongGatehouse int64
	WrongSpiceDB   int64
	Errors         int64
}

// add returns the sum of s and o.
func (s ChurnStats) add(o ChurnStats) ChurnStats {
	return ChurnStats{
		RoleChanges: s.RoleChanges + o.RoleChanges, GrantsEnded: s.GrantsEnded + o.GrantsEnded,
		Verifications: s.Verifications + o.Verifications, WrongGatehouse: s.WrongGatehouse + o.WrongGatehouse,
		WrongSpiceDB: s.WrongSpiceDB + o.WrongSpiceDB, Errors: s.Errors + o.Errors,
	}
}

// grantEndMargin is how long after a grant's expires_at the loop checks
// that access has ended. maxGrantLead is how early Gatehouse's scheduler
// may end a grant, 2 s at most by docs/grants.md, so that a write makes a
// new revision before the caches could serve an allow past the end.
const (
	grantEndMargin = 200 * time.Millisecond
	maxGrantLead   = 2 * time.Second
)

// churn changes access through Gatehouse's HTTP API while the check
// scenarios run, and verifies each change through both systems at full
// consistency. It only touches users that no check query names ("churn"
// users), so the queries' expected answers stay valid.
type churn struct {
	r        *run
	interval time.Duration
	rng      *rand.Rand

	roleChanges, grantsEnded, verifications atomic.Int64
	wrongGatehouse, wrongSpiceDB, errors    atomic.Int64
}

// startChurn starts the two loops (role changes and temporary grants) and
// returns a function that stops them and returns the counts. Stopping lets
// each loop finish its current change, so the role it gave is removed and
// the grant it created is past its end when the function returns. Only the
// end of ctx abandons a change halfway, which could leave a write to commit
// during the next scenario.
func (r *run) startChurn(ctx context.Context, interval time.Duration) func() ChurnStats {
	c := &churn{r: r, interval: interval, rng: rand.New(rand.NewPCG(uint64(r.ds.Seed), 0x636875726e))}
	projects := r.ds.Objects[typeProject]
	// Both loops pick from their own list, so they need no shared rng.
	var roleTargets, grantTargets []string
	for range 64 {
		roleTargets = append(roleTargets, pickFrom(c.rng, projects))
		grantTargets = append(grantTargets, pickFrom(c.rng, projects))
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { c.roleLoop(ctx, stop, roleTargets) })
	wg.Go(func() { c.grantLoop(ctx, stop, grantTargets) })
	return func() ChurnStats {
		close(stop)
		wg.Wait()
		return ChurnStats{
			RoleChanges: c.roleChanges.Load(), GrantsEnded: c.grantsEnded.Load(), Verifications: c.verifications.Load(),
			WrongGatehouse: c.wrongGatehouse.Load(), WrongSpiceDB: c.wrongSpiceDB.Load(), Errors: c.errors.Load(),
		}
	}
}

// pause waits for d and reports true, or reports false as soon as ctx ends
// or stop is closed.
func pause(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// sleep waits for d or until ctx ends, and reports whether ctx is still
// live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// roleLoop gives a churn user the viewer role on a project, verifies that
// both systems allow it to view a document of the project, removes the
// role and verifies that both deny, once per interval, until stop is
// closed.
func (c *churn) roleLoop(ctx context.Context, stop <-chan struct{}, projects []string) {
	for i := 0; pause(ctx, stop, c.interval); i++ {
		project := projects[i%len(projects)]
		doc := Object{Type: typeDocument, ID: c.r.ds.ProjectDocs[project][0]}
		subject := fmt.Sprintf("dev|churn-role-%d", i%8)
		path := "/v1/resources/project/" + url.PathEscape(project) + "/members/" + url.PathEscape("user:"+subject)

		var given struct {
			ConsistencyToken string `json:"consistency_token"`
		}
		if err := c.r.gh.call(ctx, c.r.admin, http.MethodPut, path, []byte(`{"role":"viewer"}`), http.StatusOK, &given); err != nil {
			c.fail(ctx, "give role", err)
			continue
		}
		c.roleChanges.Add(1)
		if c.verify(ctx, doc, subject, true) {
			c.explainRoleChange(ctx, doc, subject, given.ConsistencyToken)
		}

		if err := c.r.gh.call(ctx, c.r.admin, http.MethodDelete, path, nil, http.StatusNoContent, nil); err != nil {
			c.fail(ctx, "remove role", err)
			continue
		}
		c.roleChanges.Add(1)
		c.verify(ctx, doc, subject, false)
	}
}

// grantLoop creates a temporary viewer grant of the shortest allowed
// duration (one second) for a churn user on a project and verifies that
// both systems deny shortly after it ends, until stop is closed.
func (c *churn) grantLoop(ctx context.Context, stop <-chan struct{}, projects []string) {
	for i := 0; pause(ctx, stop, c.interval); i++ {
		project := projects[i%len(projects)]
		doc := Object{Type: typeDocument, ID: c.r.ds.ProjectDocs[project][0]}
		subject := fmt.Sprintf("dev|churn-grant-%d", i%8)
		body, err := json.Marshal(map[string]string{
			"resource": "project:" + project, "subject": "user:" + subject, "role": "viewer",
			"duration": "1s", "reason": "benchmark access change",
		})
		if err != nil {
			c.fail(ctx, "encode grant", err)
			return
		}
		var grant struct {
			ID        string    `json:"id"`
			State     string    `json:"state"`
			ExpiresAt time.Time `json:"expires_at"`
		}
		if err := c.r.gh.call(ctx, c.r.admin, http.MethodPost, "/v1/grants", body, http.StatusCreated, &grant); err != nil {
			c.fail(ctx, "create grant", err)
			continue
		}
		// Access is not verified while the grant lasts: Gatehouse may end
		// a grant up to maxGrantLead early, longer than it lasts here.
		if !sleep(ctx, time.Until(grant.ExpiresAt.Add(grantEndMargin))) {
			return
		}
		c.grantsEnded.Add(1)
		if c.verify(ctx, doc, subject, false) {
			c.explainGrantEnd(ctx, grant.ID, grant.ExpiresAt)
		}
	}
}

// explainRoleChange checks again, through Gatehouse, a role that a system
// did not honour right after it was given: once with the write's
// consistency token and once fully consistent. It logs both answers, to
// tell a stale cache from a lost write.
func (c *churn) explainRoleChange(ctx context.Context, doc Object, subject, token string) {
	check := func(body map[string]string) string {
		data, err := json.Marshal(body)
		if err != nil {
			return err.Error()
		}
		var out struct {
			Allowed bool `json:"allowed"`
		}
		if err := c.r.gh.call(ctx, c.r.app, http.MethodPost, "/v1/check", data, http.StatusOK, &out); err != nil {
			return err.Error()
		}
		return fmt.Sprint(out.Allowed)
	}
	body := map[string]string{"subject": "user:" + subject, "permission": "view", "resource": doc.String()}
	again := check(body)
	body["consistency_token"] = token
	withToken := check(body)
	c.r.logger.Warn("a role just given was not honoured; checked again through gatehouse",
		"user", subject, "resource", doc.String(), "allowed_fully_consistent", again, "allowed_at_write_token", withToken)
}

// explainGrantEnd logs the state of a grant that a system still honoured
// after its end, with the time since expires_at, to tell a late scheduler
// from a stale cache.
func (c *churn) explainGrantEnd(ctx context.Context, id string, expiresAt time.Time) {
	var grant struct {
		State string `json:"state"`
	}
	err := c.r.gh.call(ctx, c.r.admin, http.MethodGet, "/v1/grants/"+url.PathEscape(id), nil, http.StatusOK, &grant)
	c.r.logger.Warn("an ended grant was still honoured", "grant", id, "state_now", grant.State,
		"since_expires_at", time.Since(expiresAt).Round(time.Millisecond), "error", err)
}

// verify checks view on doc for subject through both systems, counts each
// answer that differs from want, and reports whether either was wrong.
func (c *churn) verify(ctx context.Context, doc Object, subject string, want bool) (wrong bool) {
	body, err := json.Marshal(checkBody{Subject: "user:" + subject, Permission: "view", Resource: doc.String()})
	if err != nil {
		c.fail(ctx, "encode check", err)
		return false
	}
	var out struct {
		Allowed bool `json:"allowed"`
	}
	err = c.r.gh.call(ctx, c.r.app, http.MethodPost, "/v1/check", body, http.StatusOK, &out)
	switch {
	case err != nil:
		c.fail(ctx, "check through gatehouse", err)
	case out.Allowed != want:
		c.wrongGatehouse.Add(1)
		wrong = true
		c.r.logger.Warn("gatehouse contradicted an access change", "user", subject, "resource", doc.String(), "want", want)
	default:
		c.verifications.Add(1)
	}

	resp, err := c.r.raw.Client.CheckPermission(ctx, &v1.CheckPermissionRequest{
		Consistency: fullyConsistent(), Resource: objectRef(doc), Permission: "view", Subject: userRef(subject),
	})
	switch {
	case err != nil:
		c.fail(ctx, "check through spicedb", err)
	case hasPermission(resp.GetPermissionship()) != want:
		c.wrongSpiceDB.Add(1)
		wrong = true
		c.r.logger.Warn("spicedb contradicted an access change", "user", subject, "resource", doc.String(), "want", want)
	default:
		c.verifications.Add(1)
	}
	return wrong
}

// maxLoggedChurnErrors is the number of errors logged per run; later ones
// are only counted, so that an overloaded server does not flood the log.
const maxLoggedChurnErrors = 3

// fail counts an error, and logs the first few unless the loop is stopping.
func (c *churn) fail(ctx context.Context, step string, err error) {
	if ctx.Err() != nil {
		return
	}
	n := c.errors.Add(1)
	if n <= maxLoggedChurnErrors {
		c.r.logger.Warn("access change failed", "step", step, "error", err, "errors_so_far", n)
	}
	if n == maxLoggedChurnErrors {
		c.r.logger.Warn("later access change errors of this run are only counted")
	}
}
