package middleware

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// maxCachedPrincipals bounds the version cache. A full cache is emptied,
// which costs one auth version read per principal seen afterwards.
const maxCachedPrincipals = 100_000

// maxVersionResponseBytes bounds the body of an auth version response.
const maxVersionResponseBytes = 64 << 10

// versionCache stores, per principal, the lowest auth version that a token
// must carry. Its entries are trusted only while the stream is connected,
// because only then does every rise of a version reach the cache.
type versionCache struct {
	mu       sync.Mutex
	live     bool
	epoch    uint64
	versions map[string]int64
}

// cacheTicket records the cache state that a lookup saw, so that a version
// read from Gatehouse is stored only if no event may have been missed
// since.
type cacheTicket struct {
	live  bool
	epoch uint64
}

func newVersionCache() *versionCache {
	return &versionCache{versions: make(map[string]int64)}
}

// lookup returns principal's cached version, and false when the stream is
// disconnected or the principal is not cached.
func (c *versionCache) lookup(principal string) (int64, cacheTicket, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ticket := cacheTicket{live: c.live, epoch: c.epoch}
	if !c.live {
		return 0, ticket, false
	}
	version, ok := c.versions[principal]
	return version, ticket, ok
}

// raise stores version for principal unless a higher one is cached, or the
// stream was disconnected or reset after the lookup that issued ticket.
func (c *versionCache) raise(ticket cacheTicket, principal string, version int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ticket.live || !c.live || ticket.epoch != c.epoch {
		return
	}
	c.storeLocked(principal, version)
}

// observe stores a version that the stream sent.
func (c *versionCache) observe(principal string, version int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live {
		c.storeLocked(principal, version)
	}
}

func (c *versionCache) storeLocked(principal string, version int64) {
	if version <= c.versions[principal] {
		return
	}
	if len(c.versions) >= maxCachedPrincipals {
		c.clearLocked()
	}
	c.versions[principal] = version
}

// reset empties the cache and sets whether the stream is connected. Reads
// that began before the reset do not store their result.
func (c *versionCache) reset(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
	c.clearLocked()
}

func (c *versionCache) clearLocked() {
	c.epoch++
	clear(c.versions)
}

// checkFreshness returns an error wrapping ErrStale when p's auth version
// is below its principal's current one, or ErrUnavailable when the current
// one cannot be read. raw is p's token, which authenticates the read when
// there is no StreamToken.
func (v *Verifier) checkFreshness(ctx context.Context, p Principal, raw string) error {
	current, ticket, ok := v.versions.lookup(p.ID)
	if !ok {
		read, err := v.readVersion(ctx, p.ID, raw)
		if err != nil {
			return err
		}
		current = read
	}

	// The token proves that the version reached its "av", which can be
	// ahead of the cache while an event is still on its way.
	v.versions.raise(ticket, p.ID, max(current, p.AuthVersion))

	if p.AuthVersion < current {
		return fmt.Errorf("%w: token av %d, current %d", ErrStale, p.AuthVersion, current)
	}
	return nil
}

// readVersion reads principal's current auth version with GET
// /v1/principals/{principal}/auth-version, authenticated by StreamToken or
// else by raw, the principal's own token.
func (v *Verifier) readVersion(ctx context.Context, principal, raw string) (int64, error) {
	token := raw
	if v.stream != nil {
		streamToken, err := v.stream(ctx)
		if err != nil {
			return 0, fmt.Errorf("%w: get stream token: %w", ErrUnavailable, err)
		}
		token = streamToken
	}

	endpoint := v.issuer + "/v1/principals/" + url.PathEscape(principal) + "/auth-version"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := v.httpClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: read auth version of %q: %w", ErrUnavailable, principal, err)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusUnauthorized && v.stream == nil:
		// Gatehouse checks the signature, issuer, audience and expiry as
		// Verify did, so its remaining reason to reject its own token is
		// an "av" below the current version.
		return 0, fmt.Errorf("%w: Gatehouse rejected the token when reading its auth version", ErrStale)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		v.gatewayErrors.log(v.logger, slog.LevelError, "Gatehouse rejected StreamToken when reading an auth version; list its principal in platform.gateways",
			"status", resp.StatusCode)
		return 0, fmt.Errorf("%w: read auth version of %q: status %d", ErrUnavailable, principal, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return 0, fmt.Errorf("%w: read auth version of %q: status %d", ErrUnavailable, principal, resp.StatusCode)
	}

	var body struct {
		Principal string `json:"principal"`
		Version   int64  `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxVersionResponseBytes)).Decode(&body); err != nil {
		return 0, fmt.Errorf("%w: decode auth version of %q: %w", ErrUnavailable, principal, err)
	}
	if body.Principal != principal || body.Version < 1 {
		return 0, fmt.Errorf("%w: auth version response for %q names %q at version %d", ErrUnavailable, principal, body.Principal, body.Version)
	}
	return body.Version, nil
}

// sparseLog writes a message at most once per interval and counts the
// occurrences it skipped, for failures that every request would repeat.
type sparseLog struct {
	mu       sync.Mutex
	last     time.Time
	skipped  int
	interval time.Duration
}

func (s *sparseLog) log(logger *slog.Logger, level slog.Level, msg string, args ...any) {
	s.mu.Lock()
	now := time.Now()
	if now.Sub(s.last) < s.interval {
		s.skipped++
		s.mu.Unlock()
		return
	}
	skipped := s.skipped
	s.last, s.skipped = now, 0
	s.mu.Unlock()

	logger.Log(context.Background(), level, msg, append(args, "repeats_skipped", skipped)...)
}
