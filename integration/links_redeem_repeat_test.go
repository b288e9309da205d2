package integration

// The tests in this file redeem a share link as a user who redeemed it
// before or already holds it. A repeat that changes nothing must record no
// audit event and leave the user's auth version alone. A redemption that
// restores a lost holder relationship, or counts a use that was never
// counted, must be audited.

import (
	"context"
	"maps"
	"net/http"
	"testing"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
)

// redeemEvents returns the link.redeem events that GET /v1/audit lists in
// org:acme for subject, oldest first.
func redeemEvents(t *testing.T, reader *caller, subject string) []auditEvent {
	t.Helper()
	var events []auditEvent
	for _, e := range reader.auditEvents(t, "org=org:acme&action=link.redeem") {
		if e.Subject == subject {
			events = append(events, e)
		}
	}
	return events
}

// wantRedeemEvent fails unless e records subject's redemption of link
// linkID with role, from no holder relationship, as applied.
func wantRedeemEvent(t *testing.T, e auditEvent, subject, linkID, role string) {
	t.Helper()
	if e.Actor.Principal != subject || e.Resource != "document:d1" {
		t.Errorf("event by %q on %q, want by %q on document:d1", e.Actor.Principal, e.Resource, subject)
	}
	if len(e.Before) != 0 {
		t.Errorf("before %v, want none", e.Before)
	}
	if e.After["link"] != linkID || e.After["role"] != role {
		t.Errorf("after %v, want link %s and role %s", e.After, linkID, role)
	}
	if e.Outcome != "applied" || e.Token == "" {
		t.Errorf("outcome %q with consistency token %q, want applied with a token", e.Outcome, e.Token)
	}
}

func TestLinkRedeemRepeatRecordsNothing(t *testing.T) {
	linkForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		l := f.alice.createLink(t, map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone", "max_uses": 1})

		first := f.zed.redeem(t, l.Token)
		wantStatus(t, first, http.StatusOK)
		events := redeemEvents(t, f.alice, f.zed.ref)
		if len(events) != 1 {
			t.Fatalf("%d link.redeem events after the first redemption, want 1", len(events))
		}
		wantRedeemEvent(t, events[0], f.zed.ref, l.ID, "viewer")

		// The link is used up now, and its holder may still redeem it.
		version := f.zed.authVersion(t)
		for i := range 2 {
			again := f.zed.redeem(t, l.Token)
			wantStatus(t, again, http.StatusOK)
			if string(again.body) != string(first.body) {
				t.Errorf("repeat %d: body %s, want the first redemption's %s", i+1, again.body, first.body)
			}
		}

		if got := len(redeemEvents(t, f.alice, f.zed.ref)); got != 1 {
			t.Errorf("%d link.redeem events after two repeats, want 1", got)
		}
		if got := f.zed.authVersion(t); got != version {
			t.Errorf("auth version %d after the repeats, want %d unchanged", got, version)
		}
		listed := f.alice.linkSingle(t, "document:d1", l.ID)
		if listed.Uses != 1 || listed.State != "exhausted" {
			t.Errorf("uses %d, state %q after the repeats; want 1, exhausted", listed.Uses, listed.State)
		}
		if !f.zed.allowed(t, "", "view", "document:d1") {
			t.Error("zed cannot view document:d1 after redeeming again")
		}
		wantProblem(t, f.bob.redeem(t, l.Token), http.StatusNotFound)
	})
}

func TestLinkRedeemLostHolderAudited(t *testing.T) {
	linkForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		l := f.alice.createLink(t, map[string]any{"resource": "document:d1", "role": "editor", "audience": "org"})
		wantStatus(t, f.bob.redeem(t, l.Token), http.StatusOK)

		// A process that stops between counting a redemption and writing
		// the holder relationship leaves this state behind.
		_, err := g.srv.Engine().DeleteMatching(context.Background(), &v1.RelationshipFilter{
			ResourceType:       "link",
			OptionalResourceId: l.ID,
			OptionalRelation:   "holder",
		}, nil)
		if err != nil {
			t.Fatalf("delete the holder relationship: %v", err)
		}
		if f.bob.allowed(t, "", "edit", "document:d1") {
			t.Fatal("bob edits document:d1 without the holder relationship")
		}

		version := f.bob.authVersion(t)
		wantStatus(t, f.bob.redeem(t, l.Token), http.StatusOK)
		if !f.bob.allowed(t, "", "edit", "document:d1") {
			t.Error("bob cannot edit document:d1 after redeeming again")
		}
		if got := f.bob.authVersion(t); got <= version {
			t.Errorf("auth version %d after the restoring redemption, want more than %d", got, version)
		}
		events := redeemEvents(t, f.alice, f.bob.ref)
		if len(events) != 2 {
			t.Fatalf("%d link.redeem events, want 2: the first redemption and the restoring one", len(events))
		}
		wantRedeemEvent(t, events[1], f.bob.ref, l.ID, "editor")
		if got := f.alice.linkSingle(t, "document:d1", l.ID).Uses; got != 1 {
			t.Errorf("uses %d after one user redeemed twice, want 1", got)
		}
	})
}

func TestLinkRedeemUncountedHolderAudited(t *testing.T) {
	linkForEachDatastore(t, func(t *testing.T, g *gatehouse) {
		f := newLinkFixture(t, g)
		l := f.alice.createLink(t, map[string]any{"resource": "document:d1", "role": "viewer", "audience": "anyone"})

		// A write that applied but reported an error, whose count was then
		// undone, leaves a holder relationship and no redemption.
		_, err := g.srv.Engine().Write(context.Background(), []*v1.RelationshipUpdate{{
			Operation: v1.RelationshipUpdate_OPERATION_TOUCH,
			Relationship: &v1.Relationship{
				Resource: &v1.ObjectReference{ObjectType: "link", ObjectId: l.ID},
				Relation: "holder",
				Subject:  &v1.SubjectReference{Object: &v1.ObjectReference{ObjectType: "user", ObjectId: "dev|zed"}},
			},
		}}, nil)
		if err != nil {
			t.Fatalf("write the holder relationship: %v", err)
		}

		wantStatus(t, f.zed.redeem(t, l.Token), http.StatusOK)
		if got := f.alice.linkSingle(t, "document:d1", l.ID).Uses; got != 1 {
			t.Errorf("uses %d after the redemption was counted, want 1", got)
		}
		events := redeemEvents(t, f.alice, f.zed.ref)
		if len(events) != 1 {
			t.Fatalf("%d link.redeem events, want 1", len(events))
		}
		holder := map[string]string{"link": l.ID, "role": "viewer"}
		if !maps.Equal(events[0].Before, holder) || !maps.Equal(events[0].After, holder) {
			t.Errorf("before %v, after %v; want both %v, since only the count changed", events[0].Before, events[0].After, holder)
		}

		wantStatus(t, f.zed.redeem(t, l.Token), http.StatusOK)
		if got := len(redeemEvents(t, f.alice, f.zed.ref)); got != 1 {
			t.Errorf("%d link.redeem events after redeeming again, want 1", got)
		}
	})
}
