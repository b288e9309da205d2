package middleware

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Reconnection of the auth version stream.
const (
	streamMinBackoff = 250 * time.Millisecond
	streamMaxBackoff = 30 * time.Second

	// streamStableAfter is how long a connection must last for the next
	// reconnection to start from streamMinBackoff again.
	streamStableAfter = time.Minute

	// streamIdleTimeout ends a connection that sent nothing, not even
	// Gatehouse's heartbeat comment, which comes every 15 seconds.
	streamIdleTimeout = 40 * time.Second

	// maxEventBytes bounds one line and the data of one event.
	maxEventBytes = 64 << 10
)

var (
	errStreamReset = errors.New("Gatehouse reset the stream because this subscriber fell behind")
	errStreamIdle  = fmt.Errorf("stream sent nothing for %s", streamIdleTimeout)
	errStreamEnded = errors.New("Gatehouse ended the stream")
)

// follow keeps the auth version stream connected until ctx ends. While it
// is disconnected, the version cache is empty and untrusted, so every
// request reads its principal's version from Gatehouse.
func (v *Verifier) follow(ctx context.Context) {
	backoff := streamMinBackoff
	for {
		started := time.Now()
		err := v.followOnce(ctx)
		v.versions.reset(false)
		if ctx.Err() != nil {
			v.logger.Info("stopped following the auth version stream")
			return
		}

		if time.Since(started) >= streamStableAfter || errors.Is(err, errStreamReset) {
			backoff = streamMinBackoff
		}
		// Jitter spreads the reconnections of many instances after a
		// Gatehouse restart.
		delay := backoff/2 + rand.N(backoff/2+1)
		v.logger.Warn("auth version stream disconnected; reading auth versions per request until it reconnects",
			"error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			v.logger.Info("stopped following the auth version stream")
			return
		case <-time.After(delay):
		}
		backoff = min(2*backoff, streamMaxBackoff)
	}
}

// followOnce connects to GET /v1/auth-versions/stream and applies its
// events to the version cache until the connection ends. It always returns
// a non-nil error.
func (v *Verifier) followOnce(ctx context.Context) error {
	token, err := v.stream(ctx)
	if err != nil {
		return fmt.Errorf("get stream token: %w", err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(streamIdleTimeout, func() { cancel(errStreamIdle) })
	defer watchdog.Stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.issuer+"/v1/auth-versions/stream", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := v.streamClient.Do(req)
	if err != nil {
		return streamError(ctx, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		v.logger.Error("Gatehouse rejected StreamToken for the auth version stream; list its principal in platform.gateways",
			"status", resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("auth version stream returned status %d", resp.StatusCode)
	}
	if mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mediaType != "text/event-stream" {
		return fmt.Errorf("auth version stream has Content-Type %q, expected text/event-stream", resp.Header.Get("Content-Type"))
	}

	// Gatehouse subscribes to changes before it sends the response header,
	// so from here on every raised version reaches this stream. Versions
	// read before now may have missed a change, so they are dropped.
	v.versions.reset(true)
	v.logger.Info("following the auth version stream", "url", req.URL.String())

	return streamError(ctx, v.readEvents(resp.Body, watchdog))
}

// streamError returns the watchdog's error in place of the cancellation
// it caused.
func streamError(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
		return cause
	}
	return err
}

// readEvents parses server-sent events (HTML Living Standard, section
// 9.2.6) from body and applies each one. A malformed auth-version event
// ends the stream, because a change it carried would be lost otherwise.
func (v *Verifier) readEvents(body io.Reader, watchdog *time.Timer) error {
	scanner := bufio.NewScanner(body)
	scanner.Buffer(make([]byte, 0, 4096), maxEventBytes)
	var event string
	var data strings.Builder
	for scanner.Scan() {
		watchdog.Reset(streamIdleTimeout)
		line := scanner.Text()

		if line == "" {
			if err := v.applyEvent(event, data.String()); err != nil {
				return err
			}
			event = ""
			data.Reset()
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment, such as the heartbeat
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			event = value
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			if data.Len() > maxEventBytes {
				return fmt.Errorf("event data is longer than %d bytes", maxEventBytes)
			}
		}
	}
	if err := scanner.Err(); err != nil {
		return err
	}
	return errStreamEnded
}

// applyEvent applies one dispatched event. Events of other types are
// ignored, as the format requires.
func (v *Verifier) applyEvent(event, data string) error {
	switch event {
	case "auth-version":
		var change struct {
			Principal string `json:"principal"`
			Version   int64  `json:"version"`
		}
		if err := json.Unmarshal([]byte(data), &change); err != nil {
			return fmt.Errorf("decode auth-version event: %w", err)
		}
		if !isPrincipal(change.Principal) || change.Version < 1 {
			return fmt.Errorf("auth-version event names %q at version %d", truncate(change.Principal), change.Version)
		}
		v.versions.observe(change.Principal, change.Version)
	case "reset":
		return errStreamReset
	}
	return nil
}
