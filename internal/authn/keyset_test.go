package authn_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/config"
)

// keySetFixture is an authenticator for one test IdP with a 5-second key
// set refresh interval and metrics, warmed with one valid token.
type keySetFixture struct {
	clock    *testClock
	idp      *testIdP
	auth     *authn.Authenticator
	registry *prometheus.Registry
}

const testRefreshInterval = 5 * time.Second

func newKeySetFixture(t *testing.T) *keySetFixture {
	t.Helper()
	f := &keySetFixture{clock: newTestClock(), idp: newTestIdP(t), registry: prometheus.NewRegistry()}
	cfg := issuerConfig(f.idp, "corp")
	cfg.JWKSRefreshInterval = testRefreshInterval

	a, err := authn.New(context.Background(), []config.Issuer{cfg}, authn.Options{Now: f.clock.Now, Registerer: f.registry})
	if err != nil {
		t.Fatalf("authn.New: %v", err)
	}
	f.auth = a

	if err := f.authenticate(f.valid(t)); err != nil {
		t.Fatalf("warm-up token: %v", err)
	}
	if got := f.idp.jwksHits.Load(); got != 1 {
		t.Fatalf("warm-up made %d key set requests, want 1", got)
	}
	return f
}

func (f *keySetFixture) authenticate(token string) error {
	_, err := f.auth.Authenticate(context.Background(), token)
	return err
}

func (f *keySetFixture) valid(t *testing.T) string {
	t.Helper()
	return f.idp.sign(t, f.idp.claims(f.clock.Now()))
}

// signedWith returns a token signed by key under kid.
func (f *keySetFixture) signedWith(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string) string {
	t.Helper()
	return signToken(t, alg, &jose.JSONWebKey{Key: key, KeyID: kid}, f.idp.claims(f.clock.Now()), nil)
}

// fetches returns gatehouse_jwks_fetches_total for issuer "corp" and result.
func (f *keySetFixture) fetches(t *testing.T, result string) float64 {
	t.Helper()
	families, err := f.registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, family := range families {
		if family.GetName() != "gatehouse_jwks_fetches_total" {
			continue
		}
		for _, m := range family.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["issuer"] == "corp" && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func wantHits(t *testing.T, idp *testIdP, want int32, when string) {
	t.Helper()
	if got := idp.jwksHits.Load(); got != want {
		t.Errorf("%s: got %d key set requests, want %d", when, got, want)
	}
}

func TestKeySetUnknownKidFetchesOncePerInterval(t *testing.T) {
	f := newKeySetFixture(t)
	forger := otherKey(t, f.idp.key)

	for i := range 50 {
		err := f.authenticate(f.signedWith(t, jose.RS256, forger, fmt.Sprintf("random-%d", i)))
		if !errors.Is(err, authn.ErrInvalidToken) {
			t.Fatalf("forged token %d: got %v, want ErrInvalidToken", i, err)
		}
		if err := f.authenticate(f.valid(t)); err != nil {
			t.Fatalf("valid token between forged ones: %v", err)
		}
	}
	wantHits(t, f.idp, 1, "50 unknown kids within the interval of the warm-up fetch")

	f.clock.Advance(testRefreshInterval - time.Second)
	err := f.authenticate(f.signedWith(t, jose.RS256, forger, "random-late"))
	if err == nil || !strings.Contains(err.Error(), "fetch skipped") {
		t.Errorf("unknown kid before the interval: got %v, want a skipped fetch", err)
	}
	wantHits(t, f.idp, 1, "before the interval")

	f.clock.Advance(time.Second)
	if err := f.authenticate(f.signedWith(t, jose.RS256, forger, "random-next")); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("forged token after the interval: got %v, want ErrInvalidToken", err)
	}
	wantHits(t, f.idp, 2, "after the interval")

	if got := f.fetches(t, "success"); got != 2 {
		t.Errorf("gatehouse_jwks_fetches_total{result=success}: got %v, want 2", got)
	}
}

func TestKeySetRefresh(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, f *keySetFixture)
	}{
		{"rotated key verifies after one fetch", func(t *testing.T, f *keySetFixture) {
			rotated := otherKey(t, f.idp.key)
			f.idp.publish("key-2", rotated)
			f.clock.Advance(testRefreshInterval)

			if err := f.authenticate(f.signedWith(t, jose.RS256, rotated, "key-2")); err != nil {
				t.Fatalf("token with the rotated key: %v", err)
			}
			if err := f.authenticate(f.signedWith(t, jose.RS256, rotated, "key-2")); err != nil {
				t.Fatalf("second token with the rotated key: %v", err)
			}
			if err := f.authenticate(f.valid(t)); err != nil {
				t.Errorf("token with the old key, still published: %v", err)
			}
			wantHits(t, f.idp, 2, "after rotation")
		}},
		{"rotation within the interval waits for it", func(t *testing.T, f *keySetFixture) {
			rotated := otherKey(t, f.idp.key)
			f.idp.publish("key-2", rotated)

			if err := f.authenticate(f.signedWith(t, jose.RS256, rotated, "key-2")); err == nil {
				t.Fatal("rotated key within the interval: got no error, want a skipped fetch")
			}
			f.clock.Advance(testRefreshInterval)
			if err := f.authenticate(f.signedWith(t, jose.RS256, rotated, "key-2")); err != nil {
				t.Errorf("rotated key after the interval: %v", err)
			}
		}},
		{"failed fetch keeps cached keys", func(t *testing.T, f *keySetFixture) {
			f.idp.failJWKS.Store(true)
			f.clock.Advance(testRefreshInterval)

			err := f.authenticate(f.signedWith(t, jose.RS256, otherKey(t, f.idp.key), "new-kid"))
			if err == nil || !strings.Contains(err.Error(), "503") {
				t.Errorf("unknown kid while the issuer fails: got %v, want the 503", err)
			}
			if err := f.authenticate(f.valid(t)); err != nil {
				t.Errorf("known key while the issuer fails: %v", err)
			}
			if got := f.fetches(t, "error"); got != 1 {
				t.Errorf("fetches with result error: got %v, want 1", got)
			}
		}},
		{"empty set keeps cached keys", func(t *testing.T, f *keySetFixture) {
			f.idp.emptyJWKS.Store(true)
			f.clock.Advance(testRefreshInterval)

			err := f.authenticate(f.signedWith(t, jose.RS256, otherKey(t, f.idp.key), "new-kid"))
			if err == nil || !strings.Contains(err.Error(), "no usable signing key") {
				t.Errorf("unknown kid with an empty set: got %v, want the empty set error", err)
			}
			if err := f.authenticate(f.valid(t)); err != nil {
				t.Errorf("known key after an empty set: %v", err)
			}
			if got := f.fetches(t, "empty"); got != 1 {
				t.Errorf("fetches with result empty: got %v, want 1", got)
			}
		}},
		{"issuer down keeps cached keys", func(t *testing.T, f *keySetFixture) {
			f.idp.server.Close()
			f.clock.Advance(testRefreshInterval)

			for i := range 20 {
				if err := f.authenticate(f.signedWith(t, jose.RS256, otherKey(t, f.idp.key), fmt.Sprintf("kid-%d", i))); err == nil {
					t.Fatal("unknown kid while the issuer is down: got no error")
				}
				if err := f.authenticate(f.valid(t)); err != nil {
					t.Fatalf("known key while the issuer is down: %v", err)
				}
			}
			if got := f.fetches(t, "error"); got != 1 {
				t.Errorf("fetches with result error: got %v, want 1", got)
			}
		}},
		{"known kid with bad signature does not fetch", func(t *testing.T, f *keySetFixture) {
			f.clock.Advance(testRefreshInterval)

			err := f.authenticate(f.signedWith(t, jose.RS256, otherKey(t, f.idp.key), f.idp.kid))
			if err == nil || !strings.Contains(err.Error(), "signature does not verify") {
				t.Errorf("got %v, want a signature error", err)
			}
			wantHits(t, f.idp, 1, "after a bad signature")
		}},
		{"kid naming a key of another type", func(t *testing.T, f *keySetFixture) {
			ec := ecKey(t)
			f.idp.publish("ec-1", ec)
			f.clock.Advance(testRefreshInterval)
			// Fetch the set with the EC key in it.
			if err := f.authenticate(f.signedWith(t, jose.ES256, ec, "ec-1")); err != nil {
				t.Fatalf("ES256 token with the EC key: %v", err)
			}

			tests := []struct {
				alg  jose.SignatureAlgorithm
				key  any
				kid  string
				want string
			}{
				{jose.RS256, f.idp.key, "ec-1", `key "ec-1" is a EC P-256 key, which cannot verify alg "RS256"`},
				{jose.ES256, ec, f.idp.kid, `key "key-1" is a RSA key, which cannot verify alg "ES256"`},
			}
			for _, tt := range tests {
				err := f.authenticate(f.signedWith(t, tt.alg, tt.key, tt.kid))
				if !errors.Is(err, authn.ErrInvalidToken) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s token with kid %q: got %v, want %q", tt.alg, tt.kid, err, tt.want)
				}
			}
			wantHits(t, f.idp, 2, "after tokens naming keys of another type")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newKeySetFixture(t))
		})
	}
}

func TestKeySetConcurrentFirstFetch(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	cfg := issuerConfig(idp, "corp")
	cfg.JWKSURI = idp.issuer + "/jwks.json"
	a := newAuthenticator(t, clock, cfg)
	token := idp.sign(t, idp.claims(clock.Now()))

	errs := make(chan error, 20)
	for range 20 {
		go func() {
			_, err := a.Authenticate(context.Background(), token)
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Errorf("Authenticate: %v", err)
		}
	}
	wantHits(t, idp, 1, "20 concurrent first tokens")
}

func TestMetricsRegistererShared(t *testing.T) {
	idp := newTestIdP(t)
	registry := prometheus.NewRegistry()
	for i := range 2 {
		if _, err := authn.New(context.Background(), []config.Issuer{issuerConfig(idp, "corp")}, authn.Options{Registerer: registry}); err != nil {
			t.Fatalf("authn.New %d with the same registerer: %v", i, err)
		}
	}
}
