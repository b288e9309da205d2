package links

import (
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewTokenFormat(t *testing.T) {
	token, hash := newToken()
	if !strings.HasPrefix(token, TokenPrefix) {
		t.Fatalf("token %q lacks prefix %q", token, TokenPrefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, TokenPrefix))
	if err != nil {
		t.Fatalf("token is not base64url: %v", err)
	}
	if got := len(raw) * 8; got < 128 {
		t.Errorf("token has %d bits, want at least 128", got)
	}
	if string(hash) != string(hashToken(token)) {
		t.Error("newToken's digest differs from hashToken's")
	}
	if other, _ := newToken(); other == token {
		t.Error("two tokens are equal")
	}
}

func TestLimiterBlocksAfterBurst(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(3, 6*time.Second, func() time.Time { return now })

	for i := range 3 {
		if wait := l.wait("10.0.0.1"); wait != 0 {
			t.Fatalf("miss %d: wait %s, want 0", i, wait)
		}
		l.miss("10.0.0.1")
	}
	if wait := l.wait("10.0.0.1"); wait != 6*time.Second {
		t.Errorf("wait %s after the burst, want 6s", wait)
	}
	if wait := l.wait("10.0.0.2"); wait != 0 {
		t.Errorf("other client waits %s, want 0", wait)
	}

	now = now.Add(6 * time.Second)
	if wait := l.wait("10.0.0.1"); wait != 0 {
		t.Errorf("wait %s after one refill, want 0", wait)
	}
	l.miss("10.0.0.1")
	if wait := l.wait("10.0.0.1"); wait == 0 {
		t.Error("refilled token was not taken")
	}
}

func TestLinkStateAt(t *testing.T) {
	now := time.Unix(1000, 0)
	end := now.Add(time.Minute)
	for _, tc := range []struct {
		name string
		link Link
		at   time.Time
		want string
	}{
		{"active", Link{State: StateActive}, now, StateActive},
		{"before end", Link{State: StateActive, ExpiresAt: &end}, now, StateActive},
		{"at end", Link{State: StateActive, ExpiresAt: &end}, end, StateExpired},
		{"uses left", Link{State: StateActive, MaxUses: 2, Uses: 1}, now, StateActive},
		{"used up", Link{State: StateActive, MaxUses: 2, Uses: 2}, now, StateExhausted},
		{"revoked and used up", Link{State: StateRevoked, MaxUses: 2, Uses: 2}, now, StateRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.link.StateAt(tc.at); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMemoryStoreRedeemCountsToMax(t *testing.T) {
	ctx := context.Background()
	m := NewMemoryStore()
	if err := m.Insert(ctx, Link{ID: "l1", TokenHash: hashToken("t"), State: StateActive, MaxUses: 3}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	counted := 0
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			ok, err := m.Redeem(ctx, "l1", string(rune('a'+i)), time.Now())
			if err == nil && ok {
				mu.Lock()
				counted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if counted != 3 {
		t.Errorf("%d redemptions counted, want 3", counted)
	}
	l, err := m.Get(ctx, "l1")
	if err != nil {
		t.Fatal(err)
	}
	if l.Uses != 3 {
		t.Errorf("uses %d, want 3", l.Uses)
	}
}
