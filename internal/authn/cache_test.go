package authn_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/config"
)

func TestTokenCacheExpiry(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	a := newAuthenticator(t, clock, issuerConfig(idp, "corp"))
	claims := idp.claims(clock.Now())
	claims["exp"] = clock.Now().Add(10 * time.Minute).Unix()
	token := idp.sign(t, claims)

	if _, err := a.Authenticate(context.Background(), token); err != nil {
		t.Fatalf("first use: %v", err)
	}
	// Past the cache age limit the token is still valid until its exp.
	clock.Advance(6 * time.Minute)
	p, err := a.Authenticate(context.Background(), token)
	if err != nil {
		t.Fatalf("use after six minutes: %v", err)
	}
	if p.Subject != "alice" {
		t.Errorf("subject = %q, want alice", p.Subject)
	}

	clock.Advance(4 * time.Minute)
	_, err = a.Authenticate(context.Background(), token)
	if !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("use at exp: got %v, want ErrInvalidToken", err)
	}
}

func TestTokenCacheExactBytes(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	a := newAuthenticator(t, clock, issuerConfig(idp, "corp"))
	token := idp.sign(t, idp.claims(clock.Now()))
	if _, err := a.Authenticate(context.Background(), token); err != nil {
		t.Fatalf("first use: %v", err)
	}

	// Change one character of the signature of the cached token.
	last := token[len(token)-2]
	swapped := byte('A')
	if last == 'A' {
		swapped = 'B'
	}
	tampered := token[:len(token)-2] + string(swapped) + token[len(token)-1:]
	if _, err := a.Authenticate(context.Background(), tampered); !errors.Is(err, authn.ErrInvalidToken) {
		t.Errorf("tampered token: got %v, want ErrInvalidToken", err)
	}
}

func TestTokenCachePrincipalCopies(t *testing.T) {
	clock := newTestClock()
	idp := newTestIdP(t)
	a := newAuthenticator(t, clock, issuerConfig(idp, "corp"))
	token := idp.sign(t, idp.claims(clock.Now()))

	first, err := a.Authenticate(context.Background(), token)
	if err != nil {
		t.Fatalf("first use: %v", err)
	}
	first.Subject = "mallory"
	second, err := a.Authenticate(context.Background(), token)
	if err != nil {
		t.Fatalf("second use: %v", err)
	}
	if second.Subject != "alice" {
		t.Errorf("subject = %q after a caller changed an earlier principal, want alice", second.Subject)
	}
}

// BenchmarkAuthenticate measures verification of one repeated token, with
// the cache of verified tokens and without it.
func BenchmarkAuthenticate(b *testing.B) {
	idp := newTestIdP(b)
	token := idp.sign(b, idp.claims(time.Now()))
	for _, bench := range []struct {
		name string
		size int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(bench.name, func(b *testing.B) {
			a, err := authn.New(context.Background(), []config.Issuer{issuerConfig(idp, "corp")}, authn.Options{TokenCacheSize: bench.size})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := a.Authenticate(context.Background(), token); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(context.Background(), token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
