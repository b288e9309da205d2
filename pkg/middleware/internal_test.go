package middleware

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func encodedHeader(json string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(json)) + ".e30.c2ln"
}

func TestCheckHeader(t *testing.T) {
	tests := []struct {
		name   string
		header string
		valid  bool
	}{
		{"gatehouse token", `{"alg":"ES256","typ":"at+jwt","kid":"k1"}`, true},
		{"media type with prefix", `{"alg":"ES256","typ":"application/AT+JWT","kid":"k1"}`, true},
		{"typ JWT", `{"alg":"ES256","typ":"JWT","kid":"k1"}`, false},
		{"typ missing", `{"alg":"ES256","kid":"k1"}`, false},
		{"typ not a string", `{"alg":"ES256","typ":1,"kid":"k1"}`, false},
		{"alg RS256", `{"alg":"RS256","typ":"at+jwt","kid":"k1"}`, false},
		{"alg HS256", `{"alg":"HS256","typ":"at+jwt","kid":"k1"}`, false},
		{"alg none", `{"alg":"none","typ":"at+jwt","kid":"k1"}`, false},
		{"kid missing", `{"alg":"ES256","typ":"at+jwt"}`, false},
		{"embedded jwk", `{"alg":"ES256","typ":"at+jwt","kid":"k1","jwk":{}}`, false},
		{"jku", `{"alg":"ES256","typ":"at+jwt","kid":"k1","jku":"http://127.0.0.1/keys"}`, false},
		{"x5c", `{"alg":"ES256","typ":"at+jwt","kid":"k1","x5c":[]}`, false},
		{"crit", `{"alg":"ES256","typ":"at+jwt","kid":"k1","crit":["exp"]}`, false},
		{"not JSON", `alg`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkHeader(encodedHeader(tt.header))
			if tt.valid && err != nil {
				t.Errorf("got error %v, want none", err)
			}
			if !tt.valid && err == nil {
				t.Error("got no error, want one")
			}
		})
	}

	t.Run("five parts", func(t *testing.T) {
		if err := checkHeader(encodedHeader(`{"alg":"ES256","typ":"at+jwt","kid":"k1"}`) + ".a.b"); err == nil {
			t.Error("got no error for a JWE-shaped token")
		}
	})
}

func TestVersionCache(t *testing.T) {
	t.Run("disconnected cache misses", func(t *testing.T) {
		c := newVersionCache()
		_, ticket, _ := c.lookup("user:dev|alice")
		c.raise(ticket, "user:dev|alice", 3)
		if _, _, ok := c.lookup("user:dev|alice"); ok {
			t.Error("got a hit while the stream is disconnected")
		}
	})
	t.Run("keeps the highest version", func(t *testing.T) {
		c := newVersionCache()
		c.reset(true)
		c.observe("user:dev|alice", 3)
		c.observe("user:dev|alice", 2)
		if got, _, _ := c.lookup("user:dev|alice"); got != 3 {
			t.Errorf("got version %d, want 3", got)
		}
	})
	t.Run("read from before a reset is dropped", func(t *testing.T) {
		c := newVersionCache()
		c.reset(true)
		_, ticket, _ := c.lookup("user:dev|alice")
		c.reset(true)
		c.raise(ticket, "user:dev|alice", 1)
		if _, _, ok := c.lookup("user:dev|alice"); ok {
			t.Error("got a hit for a version read before the reset")
		}
	})
	t.Run("event during a read wins", func(t *testing.T) {
		c := newVersionCache()
		c.reset(true)
		_, ticket, _ := c.lookup("user:dev|alice")
		c.observe("user:dev|alice", 4)
		c.raise(ticket, "user:dev|alice", 2)
		if got, _, _ := c.lookup("user:dev|alice"); got != 4 {
			t.Errorf("got version %d, want 4", got)
		}
	})
}

func newTestVerifier(t *testing.T) *Verifier {
	t.Helper()
	return &Verifier{versions: newVersionCache(), logger: slog.New(slog.DiscardHandler)}
}

func TestReadEvents(t *testing.T) {
	tests := []struct {
		name    string
		stream  string
		want    map[string]int64
		wantErr error
	}{
		{
			name:    "versions and heartbeats",
			stream:  ": connected\n\nevent: auth-version\ndata: {\"principal\":\"user:dev|alice\",\"version\":3}\n\n: heartbeat\n\nevent: auth-version\r\ndata: {\"principal\":\"service:dev|app\",\"version\":2}\r\n\r\n",
			want:    map[string]int64{"user:dev|alice": 3, "service:dev|app": 2},
			wantErr: errStreamEnded,
		},
		{
			name:    "reset",
			stream:  "event: auth-version\ndata: {\"principal\":\"user:dev|alice\",\"version\":3}\n\nevent: reset\ndata: {}\n\nevent: auth-version\ndata: {\"principal\":\"user:dev|bob\",\"version\":2}\n\n",
			want:    map[string]int64{"user:dev|alice": 3},
			wantErr: errStreamReset,
		},
		{
			name:    "unknown event ignored",
			stream:  "event: other\ndata: x\n\ndata: {}\n\n",
			want:    map[string]int64{},
			wantErr: errStreamEnded,
		},
		{
			name:   "malformed version",
			stream: "event: auth-version\ndata: {\"principal\":\"user:dev|alice\",\"version\":\"3\"}\n\n",
			want:   map[string]int64{},
		},
		{
			name:   "group principal",
			stream: "event: auth-version\ndata: {\"principal\":\"group:eng\",\"version\":3}\n\n",
			want:   map[string]int64{},
		},
		{
			name:   "oversized data",
			stream: "event: auth-version\n" + strings.Repeat("data: "+strings.Repeat("x", 1000)+"\n", 100) + "\n",
			want:   map[string]int64{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVerifier(t)
			v.versions.reset(true)
			watchdog := time.NewTimer(time.Hour)
			defer watchdog.Stop()

			err := v.readEvents(strings.NewReader(tt.stream), watchdog)
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("got error %v, want %v", err, tt.wantErr)
			case tt.wantErr == nil && (err == nil || errors.Is(err, errStreamEnded)):
				t.Errorf("got error %v, want a parse error", err)
			}
			if len(v.versions.versions) != len(tt.want) {
				t.Errorf("got %d cached versions, want %d", len(v.versions.versions), len(tt.want))
			}
			for principal, want := range tt.want {
				if got := v.versions.versions[principal]; got != want {
					t.Errorf("got version %d for %q, want %d", got, principal, want)
				}
			}
		})
	}
}

func TestReadEventsReportsReadError(t *testing.T) {
	v := newTestVerifier(t)
	watchdog := time.NewTimer(time.Hour)
	defer watchdog.Stop()
	broken := io.MultiReader(strings.NewReader(": connected\n\n"), errReader{})
	if err := v.readEvents(broken, watchdog); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("got error %v, want io.ErrClosedPipe", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrClosedPipe }

// TestStreamResetClearsCacheAndReconnects runs the follower against a
// stand-in for Gatehouse whose first stream sends a version, then a reset.
func TestStreamResetClearsCacheAndReconnects(t *testing.T) {
	var connections atomic.Int64
	resetNow := make(chan struct{})
	var ts *httptest.Server
	ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, ts.URL, ts.URL+"/jwks")
		case "/v1/auth-versions/stream":
			if r.Header.Get("Authorization") != "Bearer gateway-token" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			n := connections.Add(1)
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			if n == 1 {
				fmt.Fprint(w, "event: auth-version\ndata: {\"principal\":\"user:dev|alice\",\"version\":5}\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-resetNow:
				case <-r.Context().Done():
					return
				}
				fmt.Fprint(w, "event: reset\ndata: {}\n\n")
				return
			}
			fmt.Fprint(w, ": connected\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ts.Close)

	v, err := New(context.Background(), Config{
		GatehouseURL: ts.URL,
		StreamToken:  func(context.Context) (string, error) { return "gateway-token", nil },
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })

	waitFor(t, "the first stream's version", func() bool {
		version, _, ok := v.versions.lookup("user:dev|alice")
		return ok && version == 5
	})
	close(resetNow)
	waitFor(t, "a second connection", func() bool {
		return connections.Load() == 2 && v.StreamConnected()
	})
	if _, _, ok := v.versions.lookup("user:dev|alice"); ok {
		t.Error("the version from before the reset is still cached")
	}
}

func waitFor(t *testing.T, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 5s waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
