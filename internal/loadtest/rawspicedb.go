package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	authzed "github.com/authzed/authzed-go/v1"
	"github.com/authzed/spicedb/pkg/cmd/server"
	"github.com/authzed/spicedb/pkg/cmd/util"
	"github.com/authzed/spicedb/pkg/datastore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// RawSpiceDB is a stock SpiceDB server on a datastore it shares with
// Gatehouse, serving gRPC on a loopback TCP port with a random preshared
// key, and an authzed-go client for it.
type RawSpiceDB struct {
	Client *authzed.Client
	Addr   string

	key    string
	cancel context.CancelFunc // nil for a client of a server in another process
	done   chan error
}

// rawDispatchCacheCost is the dispatch cache size, the same as Gatehouse's
// engine uses by default.
const rawDispatchCacheCost = "64MiB"

// StartRawSpiceDB starts SpiceDB's own server (pkg/cmd/server) on ds with
// the settings of Gatehouse's engine: a dispatch cache of the same cost,
// relationship expiration and the same lookup limit. Unlike the engine, it
// serves the v1 API on 127.0.0.1 TCP behind a random preshared key. The
// HTTP gateway, the metrics API, the dispatch server and telemetry are
// off, so nothing leaves loopback. Stopping it leaves ds open, because
// SpiceDB wraps a datastore it did not create in a proxy whose Close does
// nothing.
func StartRawSpiceDB(ctx context.Context, ds datastore.Datastore) (*RawSpiceDB, error) {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("generate preshared key: %w", err)
	}
	key := hex.EncodeToString(secret[:])

	// SpiceDB's start-up chatter and its per-request logs are dropped;
	// errors reach the client as gRPC errors.
	quiet := zerolog.Nop().WithContext(ctx)

	var runnable server.RunnableServer
	var addr string
	var err error
	// The port is chosen by listening on port 0 and closing the listener,
	// so another process may take it before SpiceDB binds it: try again.
	for attempt := 0; attempt < 5; attempt++ {
		if addr, err = freeLoopbackAddr(); err != nil {
			return nil, err
		}
		cfg := server.NewConfigWithOptionsAndDefaults(
			server.WithDatastore(ds),
			server.WithGRPCServer(util.GRPCServerConfig{Address: addr, Network: "tcp", Enabled: true}),
			server.WithPresharedSecureKey(key),
			server.WithHTTPGateway(util.HTTPServerConfig{HTTPEnabled: false}),
			server.WithMetricsAPI(util.HTTPServerConfig{HTTPEnabled: false}),
			server.WithDispatchServer(util.GRPCServerConfig{Enabled: false}),
			server.WithOTel(*server.NewOTelConfigWithOptionsAndDefaults(server.WithPrometheusRegistry(prometheus.NewRegistry()))),
			server.WithDispatchCacheConfig(server.CacheConfig{Name: "dispatch", Enabled: true, Metrics: true, MaxCost: rawDispatchCacheCost}),
			server.WithClusterDispatchCacheConfig(server.CacheConfig{Name: "cluster_dispatch", Enabled: false}),
			server.WithSilentlyDisableTelemetry(true),
			server.WithTelemetryEndpoint(""),
			server.WithEnableRelationshipExpiration(true),
			server.WithMaxLookupResourcesLimit(1000),
		)
		runnable, err = cfg.Complete(quiet)
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("configure spicedb: %w", err)
	}

	runCtx, cancel := context.WithCancel(zerolog.Nop().WithContext(context.Background()))
	r := &RawSpiceDB{Addr: addr, key: key, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- runnable.Run(runCtx) }()
	if err := r.connect(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// ConnectRawSpiceDB returns a client of a raw SpiceDB server that runs
// elsewhere, at addr behind key, once the server responds. Its Close
// closes the client only.
func ConnectRawSpiceDB(ctx context.Context, addr, key string) (*RawSpiceDB, error) {
	r := &RawSpiceDB{Addr: addr, key: key}
	if err := r.connect(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *RawSpiceDB) connect(ctx context.Context) error {
	var err error
	r.Client, err = authzed.NewClient(r.Addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearerKey(r.key)),
	)
	if err != nil {
		return fmt.Errorf("connect to spicedb on %s: %w", r.Addr, err)
	}
	return r.waitReady(ctx)
}

// waitReady reads the schema until the server responds, for at most 30
// seconds.
func (r *RawSpiceDB) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := r.Client.ReadSchema(ctx, &v1.ReadSchemaRequest{})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("spicedb on %s did not respond within 30s: %w", r.Addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close closes the client, then stops the server, if it runs here, and
// waits for it, for at most 30 seconds. The shared datastore stays open.
func (r *RawSpiceDB) Close() error {
	var errs []error
	if r.Client != nil {
		errs = append(errs, r.Client.Close())
	}
	if r.cancel == nil {
		return errors.Join(errs...)
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	case <-time.After(30 * time.Second):
		errs = append(errs, errors.New("spicedb did not stop within 30s"))
	}
	return errors.Join(errs...)
}

// freeLoopbackAddr returns a 127.0.0.1 address whose port was free a
// moment ago.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free loopback port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// bearerKey sends the preshared key as a bearer token on every call. It
// allows plaintext, because the connection never leaves loopback.
type bearerKey string

func (k bearerKey) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(k)}, nil
}

func (bearerKey) RequireTransportSecurity() bool { return false }

// fullyConsistent is the consistency of every raw SpiceDB read, the same
// as Gatehouse's default.
func fullyConsistent() *v1.Consistency {
	return &v1.Consistency{Requirement: &v1.Consistency_FullyConsistent{FullyConsistent: true}}
}
