package loadtest

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gatehouse-authz/gatehouse/internal/server"
)

// The benchmark runs both servers in a child process: the same binary,
// started with serveEnv set. The parent holds the dataset, the oracle and
// the load generator, so that none of them shares a heap, and with it a
// garbage collector, with the systems it measures, as in a deployment.
const (
	// serveEnv names the datastore the child serves on: memory or
	// postgres.
	serveEnv = "GATEHOUSE_BENCH_SERVE"

	// serveDatabaseEnv is the database URL of a postgres child. It goes
	// through the environment, not the arguments, to keep its password
	// out of the process list.
	serveDatabaseEnv = "GATEHOUSE_BENCH_SERVE_DATABASE_URL"

	// serveLogsEnv, set to 1, sends Gatehouse's warnings and errors to
	// the child's standard error, which is the parent's.
	serveLogsEnv = "GATEHOUSE_BENCH_SERVE_LOGS"

	// serveGCStartEnv is the child's early collection start, as gatehouse
	// serve --gc-start. Unset: 0, off.
	serveGCStartEnv = "GATEHOUSE_BENCH_SERVE_GC_START"
)

// Commands that the parent sends to the child, one per line on the
// child's standard input. The child replies to each with one line on its
// standard output: "ok", "ok VALUE" or "error MESSAGE".
const (
	commandHead         = "head"          // ok REVISION: the datastore's head revision
	commandProfileStart = "profile-start" // profile-start PATH: start a CPU profile into PATH, and snapshot allocations
	commandProfileStop  = "profile-stop"  // stop the CPU profile and write it and the allocations since the start
	commandStopSpiceDB  = "stop-spicedb"  // stop the raw SpiceDB server, leave Gatehouse running
	commandFreeMemory   = "free-memory"   // collect garbage and return memory to the kernel
)

// serveHello is the child's first line on standard output, as JSON.
type serveHello struct {
	Gatehouse string `json:"gatehouse"`     // Gatehouse's base URL
	SpiceDB   string `json:"spicedb"`       // the raw server's gRPC address
	Key       string `json:"preshared_key"` // the raw server's preshared key
}

// IsServerProcess reports whether the benchmark started this process to
// run its servers. A binary that runs the benchmark must then call
// ServeProcess before anything else: cmd/gatehouse-bench in main, the
// package's tests in TestMain.
func IsServerProcess() bool { return os.Getenv(serveEnv) != "" }

// ServeProcess runs Gatehouse and the raw SpiceDB server on one datastore
// until its standard input closes, and runs the parent's commands
// meanwhile. It returns the process's exit status.
func ServeProcess() int {
	// The parent stops the servers by closing standard input. An interrupt
	// from the terminal, or a SIGTERM to the process group, reaches both
	// processes, so the child ignores them and lets the parent stop the
	// servers in order.
	signal.Ignore(os.Interrupt, syscall.SIGTERM)

	// Standard output carries the replies, so anything else that a library
	// prints there goes to standard error instead.
	replies := os.Stdout
	os.Stdout = os.Stderr

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "bench-server")
	if err := serve(os.Stdin, replies, logger); err != nil {
		logger.Error("benchmark server failed", "error", err)
		return 1
	}
	return 0
}

// serve starts the servers on the datastore that the environment names,
// writes the hello line to out, and runs the commands read from in until
// in ends.
func serve(in io.Reader, out io.Writer, logger *slog.Logger) error {
	// The same garbage collector settings as gatehouse serve.
	server.TuneRuntime(logger)
	gcStart := 0.0
	if value := os.Getenv(serveGCStartEnv); value != "" {
		var err error
		if gcStart, err = strconv.ParseFloat(value, 64); err != nil {
			return fmt.Errorf("invalid %s=%q: %w", serveGCStartEnv, value, err)
		}
	}
	if err := server.StartEarlyCollections(context.Background(), gcStart, logger); err != nil {
		return err
	}
	datastore := os.Getenv(serveEnv)
	databaseURL := os.Getenv(serveDatabaseEnv)
	switch {
	case datastore == server.DatastorePostgres && databaseURL == "":
		return fmt.Errorf("%s is required for the postgres datastore", serveDatabaseEnv)
	case datastore == server.DatastoreMemory:
		databaseURL = ""
	case datastore != server.DatastorePostgres:
		return fmt.Errorf("%s=%q: use memory or postgres", serveEnv, datastore)
	}
	ghLogger := slog.New(slog.DiscardHandler)
	if os.Getenv(serveLogsEnv) == "1" {
		ghLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "gatehouse")
	}

	ctx := context.Background()
	gh, err := startGatehouse(ctx, databaseURL, ghLogger)
	if err != nil {
		return err
	}
	defer func() {
		if err := gh.Close(); err != nil {
			logger.Warn("stop gatehouse", "error", err)
		}
	}()
	raw, err := StartRawSpiceDB(ctx, gh.srv.Engine().Datastore())
	if err != nil {
		return err
	}
	rawOpen := true
	defer func() {
		if rawOpen {
			raw.Close()
		}
	}()

	hello, err := json.Marshal(serveHello{Gatehouse: gh.url, SpiceDB: raw.Addr, Key: raw.key})
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(out, "%s\n", hello); err != nil {
		return err
	}

	var profile *os.File
	var allocsPath string
	defer func() {
		if profile != nil {
			pprof.StopCPUProfile()
			profile.Close()
		}
	}()
	scanner := bufio.NewScanner(in)
	for scanner.Scan() {
		name, arg, _ := strings.Cut(scanner.Text(), " ")
		var reply string
		var err error
		switch name {
		case commandHead:
			rev, headErr := gh.srv.Engine().Datastore().HeadRevision(ctx)
			switch {
			case headErr != nil:
				err = headErr
			case rev.Revision == nil:
				err = errors.New("the datastore has no revision")
			default:
				reply = rev.Revision.String()
			}
		case commandProfileStart:
			if profile != nil {
				err = errors.New("a profile is running")
				break
			}
			f, createErr := os.Create(arg)
			if createErr != nil {
				err = createErr
				break
			}
			if err = pprof.StartCPUProfile(f); err != nil {
				f.Close()
				break
			}
			profile = f
			allocsPath = strings.TrimSuffix(arg, ".pprof")
			err = writeAllocs(allocsPath + "-allocs-start.pprof")
		case commandProfileStop:
			if profile == nil {
				err = errors.New("no profile is running")
				break
			}
			pprof.StopCPUProfile()
			err = errors.Join(profile.Close(), writeAllocs(allocsPath+"-allocs.pprof"))
			profile = nil
		case commandFreeMemory:
			debug.FreeOSMemory()
		case commandStopSpiceDB:
			if rawOpen {
				rawOpen = false
				err = raw.Close()
			}
		default:
			err = fmt.Errorf("unknown command %q", name)
		}
		if err != nil {
			reply = "error " + strings.ReplaceAll(err.Error(), "\n", " ")
		} else {
			reply = strings.TrimSpace("ok " + reply)
		}
		if _, err := fmt.Fprintln(out, reply); err != nil {
			return err
		}
	}
	return scanner.Err()
}

// writeAllocs writes the allocation profile since the process started to
// path. The difference between two of them (pprof's -base) gives
// what a scenario allocated.
func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
}

// serverProcess is the parent's handle on a child that runs the servers.
type serverProcess struct {
	hello serveHello
	pid   int

	cmd  *exec.Cmd
	in   io.WriteCloser
	mu   sync.Mutex // serializes commands
	out  *bufio.Reader
	done chan error
}

// startServerProcess starts this binary again as a server process on
// datastore, and waits for its servers to listen, for at most two
// minutes (a PostgreSQL child migrates its database first).
func startServerProcess(ctx context.Context, datastore, databaseURL string, logs bool, gcStart float64) (*serverProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the benchmark binary: %w", err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), serveEnv+"="+datastore, serveDatabaseEnv+"="+databaseURL)
	if logs {
		cmd.Env = append(cmd.Env, serveLogsEnv+"=1")
	}
	cmd.Env = append(cmd.Env, serveGCStartEnv+"="+strconv.FormatFloat(gcStart, 'g', -1, 64))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the server process: %w", err)
	}
	p := &serverProcess{pid: cmd.Process.Pid, cmd: cmd, in: in, out: bufio.NewReader(stdout), done: make(chan error, 1)}

	line := make(chan string, 1)
	go func() {
		text, _ := p.out.ReadString('\n')
		line <- text
	}()
	var text string
	select {
	case text = <-line:
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	case <-time.After(2 * time.Minute):
		p.kill()
		return nil, errors.New("the server process timed out: not listening after 2m")
	}
	go func() { p.done <- cmd.Wait() }()
	if err := json.Unmarshal([]byte(text), &p.hello); err != nil || p.hello.Gatehouse == "" {
		status := p.Close()
		return nil, fmt.Errorf("the server process failed to start (%v); see its errors above", cmp.Or[error](status, errors.New("exit status 0")))
	}
	return p, nil
}

// command sends one command and returns the value of its "ok" reply.
func (p *serverProcess) command(line string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		return "", fmt.Errorf("server process: %s: %w", line, err)
	}
	reply, err := p.out.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("server process: %s: no reply: %w", line, err)
	}
	reply = strings.TrimSuffix(reply, "\n")
	if msg, ok := strings.CutPrefix(reply, "error "); ok {
		return "", fmt.Errorf("server process: %s: %s", line, msg)
	}
	if reply == "ok" {
		return "", nil
	}
	value, ok := strings.CutPrefix(reply, "ok ")
	if !ok {
		return "", fmt.Errorf("server process: %s: unexpected reply %q", line, reply)
	}
	return value, nil
}

// Close closes the child's standard input, which stops its servers, and
// waits for it to exit, for at most a minute before killing it.
func (p *serverProcess) Close() error {
	p.in.Close()
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("server process: %w", err)
		}
		return nil
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		<-p.done
		return errors.New("server process timed out stopping after 1m, so it was killed")
	}
}

// resetPeak frees the child's garbage and resets its RSS high-water
// mark.
func (p *serverProcess) resetPeak() bool {
	if _, err := p.command(commandFreeMemory); err != nil {
		return false
	}
	return resetPeakRSS(p.pid)
}

// peak returns the child's RSS high-water mark.
func (p *serverProcess) peak() int64 { return readPeakRSS(p.pid) }

// kill ends a child that did not start properly.
func (p *serverProcess) kill() {
	p.in.Close()
	p.cmd.Process.Kill()
	p.cmd.Wait()
}
