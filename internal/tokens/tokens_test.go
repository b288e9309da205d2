package tokens_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/gatehouse-authz/gatehouse/internal/authversion"
	"github.com/gatehouse-authz/gatehouse/internal/pgtest"
	"github.com/gatehouse-authz/gatehouse/internal/store"
	"github.com/gatehouse-authz/gatehouse/internal/tokens"
)

const issuerURL = "https://gatehouse.example"

type keyStoreCase struct {
	name string
	open func(t *testing.T) tokens.KeyStore
}

func keyStores() []keyStoreCase {
	return []keyStoreCase{
		{"memory", func(t *testing.T) tokens.KeyStore { return tokens.NewMemoryKeys() }},
		{"postgres", func(t *testing.T) tokens.KeyStore {
			url := pgtest.NewDatabase(t)
			if err := store.Migrate(t.Context(), store.Config{URL: url}, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			st, err := store.Open(t.Context(), store.Config{URL: url})
			if err != nil {
				t.Fatalf("open store: %v", err)
			}
			t.Cleanup(st.Close)
			return tokens.NewPostgresKeys(st.Pool)
		}},
	}
}

func verify(t *testing.T, issuer *tokens.Issuer, raw string) (*oidc.IDToken, error) {
	t.Helper()
	v := oidc.NewVerifier(issuerURL, issuer.KeySet(), &oidc.Config{ClientID: "gatehouse", SupportedSigningAlgs: []string{tokens.Algorithm}})
	return v.Verify(t.Context(), raw)
}

func TestMintVerifyAndRotate(t *testing.T) {
	for _, ks := range keyStores() {
		t.Run(ks.name, func(t *testing.T) {
			keys := ks.open(t)
			versions := authversion.NewMemory()
			issuer, err := tokens.NewIssuer(tokens.Config{URL: issuerURL}, keys, versions)
			if err != nil {
				t.Fatalf("NewIssuer: %v", err)
			}

			before, err := issuer.Mint(t.Context(), "user:corp|alice", time.Time{}, "")
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if before.AuthVersion != authversion.Initial {
				t.Errorf("av = %d, want %d", before.AuthVersion, authversion.Initial)
			}
			if got := time.Until(before.Expiry); got > tokens.DefaultTTL || got < tokens.DefaultTTL-5*time.Second {
				t.Errorf("token lives %s, want about %s", got, tokens.DefaultTTL)
			}
			if _, err := verify(t, issuer, before.Token); err != nil {
				t.Fatalf("verify fresh token: %v", err)
			}

			if _, err := keys.Rotate(t.Context()); err != nil {
				t.Fatalf("Rotate: %v", err)
			}
			after, err := issuer.Mint(t.Context(), "user:corp|alice", time.Time{}, "")
			if err != nil {
				t.Fatalf("Mint after rotation: %v", err)
			}
			if _, err := verify(t, issuer, after.Token); err != nil {
				t.Errorf("verify token of the new key: %v", err)
			}
			if _, err := verify(t, issuer, before.Token); err != nil {
				t.Errorf("verify token of the retired key: %v", err)
			}
			set, err := issuer.JWKS(t.Context())
			if err != nil {
				t.Fatalf("JWKS: %v", err)
			}
			if len(set.Keys) != 2 {
				t.Errorf("JWKS publishes %d keys, want the active and the retired one", len(set.Keys))
			}
			for _, k := range set.Keys {
				if !k.IsPublic() {
					t.Errorf("JWKS key %s is not public", k.KeyID)
				}
			}
		})
	}
}

func TestMintCapsExpiryAtSubjectToken(t *testing.T) {
	issuer, err := tokens.NewIssuer(tokens.Config{URL: issuerURL}, tokens.NewMemoryKeys(), authversion.NewMemory())
	if err != nil {
		t.Fatalf("NewIssuer: %v", err)
	}
	notAfter := time.Now().Add(2 * time.Minute)
	m, err := issuer.Mint(t.Context(), "user:corp|alice", notAfter, "")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	if m.Expiry.After(notAfter) {
		t.Errorf("expiry %s is after the subject token's %s", m.Expiry, notAfter)
	}
	if _, err := issuer.Mint(t.Context(), "user:corp|alice", time.Now().Add(-time.Second), ""); err == nil {
		t.Error("Mint accepted a subject token that has expired")
	}
}

func TestCheckVersionStale(t *testing.T) {
	versions := authversion.NewMemory()
	issuer, err := tokens.NewIssuer(tokens.Config{URL: issuerURL}, tokens.NewMemoryKeys(), versions)
	if err != nil {
		t.Fatalf("NewIssuer: %v", err)
	}
	m, err := issuer.Mint(t.Context(), "user:corp|alice", time.Time{}, "")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	token, err := verify(t, issuer, m.Token)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := issuer.CheckVersion(t.Context(), token, "user:corp|alice"); err != nil {
		t.Fatalf("fresh token: %v", err)
	}

	if _, err := versions.Bump(t.Context(), []string{"user:corp|bob"}); err != nil {
		t.Fatal(err)
	}
	if err := issuer.CheckVersion(t.Context(), token, "user:corp|alice"); err != nil {
		t.Errorf("another principal's bump made the token stale: %v", err)
	}

	if _, err := versions.Bump(t.Context(), []string{"user:corp|alice"}); err != nil {
		t.Fatal(err)
	}
	if err := issuer.CheckVersion(t.Context(), token, "user:corp|alice"); !errors.Is(err, tokens.ErrStale) {
		t.Errorf("after a bump: err = %v, want ErrStale", err)
	}
}

// laggingVersions is a version store whose cache (Get) still has the
// versions of before the last bumps, as an instance does until another
// instance's change reaches it.
type laggingVersions struct {
	authversion.Store
	cached map[string]int64
}

func (l *laggingVersions) Get(_ context.Context, principal string) (int64, error) {
	return l.cached[principal], nil
}

func TestMintAndCheckReadPastALaggingCache(t *testing.T) {
	store := authversion.NewMemory()
	ctx := t.Context()
	const alice = "user:corp|alice"
	if _, err := store.Bump(ctx, []string{alice}); err != nil {
		t.Fatal(err)
	}
	versions := &laggingVersions{Store: store, cached: map[string]int64{alice: authversion.Initial}}
	issuer, err := tokens.NewIssuer(tokens.Config{URL: issuerURL}, tokens.NewMemoryKeys(), versions)
	if err != nil {
		t.Fatalf("NewIssuer: %v", err)
	}
	m, err := issuer.Mint(ctx, alice, time.Time{}, "")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	token, err := verify(t, issuer, m.Token)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var claims struct {
		AV int64 `json:"av"`
	}
	if err := token.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.AV != authversion.Initial+1 {
		t.Errorf("minted with av %d, want the store's %d, not the cache's", claims.AV, authversion.Initial+1)
	}
	// An instance whose cache lags accepts it after asking the store.
	if err := issuer.CheckVersion(ctx, token, alice); err != nil {
		t.Errorf("token minted after a bump that the cache lacks: %v", err)
	}

	if _, err := store.Bump(ctx, []string{alice}); err != nil {
		t.Fatal(err)
	}
	versions.cached[alice] = authversion.Initial + 2
	if err := issuer.CheckVersion(ctx, token, alice); !errors.Is(err, tokens.ErrStale) {
		t.Errorf("after another bump: err = %v, want ErrStale", err)
	}
}
