package integration

import (
	"net/http"
	"sync"
	"testing"
)

// One user redeeming one link many times at once through one Gatehouse
// becomes a holder once: one audit event, one use.
func TestLinkRedeemConcurrentRepeatsRecordOnce(t *testing.T) {
	linkForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		l := f.alice.createLink(t, map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone", "max_uses": 50})

		const n = 10
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { statuses[i] = f.zed.redeem(t, l.Token).status })
		}
		wg.Wait()
		for i, status := range statuses {
			if status != http.StatusOK {
				t.Errorf("redemption %d: status %d, want 200", i, status)
			}
		}

		events := redeemEvents(t, f.alice, f.zed.ref)
		if len(events) != 1 {
			t.Fatalf("%d link.redeem events after %d concurrent redemptions, want 1", len(events), n)
		}
		wantRedeemEvent(t, events[0], f.zed.ref, l.ID, "viewer")
		if listed := f.alice.linkSingle(t, "document:d1", l.ID); listed.Uses != 1 {
			t.Errorf("uses %d, want 1", listed.Uses)
		}
	})
}
