package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Algorithm is the JWS algorithm of Gatehouse's tokens.
const Algorithm = "ES256"

// Key is a signing key. The private key never leaves the process except
// into the key store.
type Key struct {
	ID        string
	Private   *ecdsa.PrivateKey
	CreatedAt time.Time

	// RetiredAt is when a newer key replaced this one; zero for the active
	// key.
	RetiredAt time.Time
}

// KeyStore keeps signing keys. Implementations are safe for concurrent use.
type KeyStore interface {
	// Active returns the key that signs new tokens, creating the first key
	// when there is none.
	Active(ctx context.Context) (Key, error)

	// Published returns the active key and every key retired after since:
	// the keys that may still have signed an unexpired token.
	Published(ctx context.Context, since time.Time) ([]Key, error)

	// Rotate retires the active key and makes a new one active.
	Rotate(ctx context.Context) (Key, error)
}

func newKey(now time.Time) (Key, error) {
	private, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generate signing key: %w", err)
	}
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Key{}, err
	}
	return Key{ID: base64.RawURLEncoding.EncodeToString(id[:]), Private: private, CreatedAt: now.UTC().Truncate(time.Microsecond)}, nil
}

// MemoryKeys is a KeyStore in memory, for --dev and tests. Its keys are
// gone when the process exits, and with them every token they signed.
type MemoryKeys struct {
	mu   sync.Mutex
	keys []Key // oldest first; the last one is active
	now  func() time.Time
}

var _ KeyStore = (*MemoryKeys)(nil)

// NewMemoryKeys returns an empty in-memory key store.
func NewMemoryKeys() *MemoryKeys { return &MemoryKeys{now: time.Now} }

func (m *MemoryKeys) Active(ctx context.Context) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.keys) == 0 {
		k, err := newKey(m.now())
		if err != nil {
			return Key{}, err
		}
		m.keys = append(m.keys, k)
	}
	return m.keys[len(m.keys)-1], nil
}

func (m *MemoryKeys) Published(ctx context.Context, since time.Time) ([]Key, error) {
	if _, err := m.Active(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []Key
	for _, k := range m.keys {
		if k.RetiredAt.IsZero() || k.RetiredAt.After(since) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func (m *MemoryKeys) Rotate(ctx context.Context) (Key, error) {
	if _, err := m.Active(ctx); err != nil {
		return Key{}, err
	}
	k, err := newKey(m.now())
	if err != nil {
		return Key{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[len(m.keys)-1].RetiredAt = k.CreatedAt
	m.keys = append(m.keys, k)
	return k, nil
}

// PostgresKeys is a KeyStore in the signing_keys table of Gatehouse's
// schema.
//
// NOTE: private keys are stored unencrypted (PKCS #8 DER); protect the
// database and its backups accordingly.
type PostgresKeys struct {
	pool *pgxpool.Pool
}

var _ KeyStore = (*PostgresKeys)(nil)

// NewPostgresKeys returns a KeyStore on pool.
func NewPostgresKeys(pool *pgxpool.Pool) *PostgresKeys { return &PostgresKeys{pool: pool} }

// keysLockID serializes creating and rotating keys across instances.
const keysLockID = 0x6b657973 // "keys"

func (p *PostgresKeys) Active(ctx context.Context) (Key, error) {
	k, err := p.activeKey(ctx, p.pool)
	if err == nil || !errors.Is(err, pgx.ErrNoRows) {
		return k, err
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, keysLockID); err != nil {
			return err
		}
		k, err = p.activeKey(ctx, tx)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if k, err = newKey(time.Now()); err != nil {
			return err
		}
		return insertKey(ctx, tx, k)
	})
	if err != nil {
		return Key{}, fmt.Errorf("create first signing key: %w", err)
	}
	return k, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (p *PostgresKeys) activeKey(ctx context.Context, q querier) (Key, error) {
	var k Key
	var der []byte
	err := q.QueryRow(ctx, `SELECT kid, private_key, created_at FROM signing_keys WHERE retired_at IS NULL`).Scan(&k.ID, &der, &k.CreatedAt)
	if err != nil {
		return Key{}, err
	}
	return k, parsePrivate(&k, der)
}

func (p *PostgresKeys) Published(ctx context.Context, since time.Time) ([]Key, error) {
	if _, err := p.Active(ctx); err != nil {
		return nil, err
	}
	rows, err := p.pool.Query(ctx, `SELECT kid, private_key, created_at, coalesce(retired_at, 'epoch')
		FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at`, since)
	if err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	defer rows.Close()
	var keys []Key
	for rows.Next() {
		var k Key
		var der []byte
		if err := rows.Scan(&k.ID, &der, &k.CreatedAt, &k.RetiredAt); err != nil {
			return nil, err
		}
		if k.RetiredAt.Equal(time.Unix(0, 0)) {
			k.RetiredAt = time.Time{}
		}
		if err := parsePrivate(&k, der); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

func (p *PostgresKeys) Rotate(ctx context.Context) (Key, error) {
	k, err := newKey(time.Now())
	if err != nil {
		return Key{}, err
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, keysLockID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL`, k.CreatedAt); err != nil {
			return err
		}
		return insertKey(ctx, tx, k)
	})
	if err != nil {
		return Key{}, fmt.Errorf("rotate signing key: %w", err)
	}
	return k, nil
}

func insertKey(ctx context.Context, tx pgx.Tx, k Key) error {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO signing_keys (kid, algorithm, private_key, created_at) VALUES ($1, $2, $3, $4)`,
		k.ID, Algorithm, der, k.CreatedAt)
	return err
}

func parsePrivate(k *Key, der []byte) error {
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return fmt.Errorf("signing key %s: %w", k.ID, err)
	}
	private, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return fmt.Errorf("signing key %s is not an ECDSA key", k.ID)
	}
	k.Private = private
	return nil
}
