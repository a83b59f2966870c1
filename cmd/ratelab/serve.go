package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"ratelab"
	"ratelab/httpapi"
	"ratelab/postgres"
	"ratelab/redis"
	"ratelab/sqlite"
)

func init() {
	register(&command{name: "serve", summary: "run the scripts API server with transparent, layered rate limits", run: runServe})
}

const serveDescription = `Serves the scripts API (see /openapi.json) with layered rate limits that
every response makes visible. Data is in SQLite by default (--db sqlite:PATH)
or PostgreSQL (--db postgres://…); limits are in memory, or in Redis
(--redis redis://…) so that several replicas share exact limits.

On an empty database without --bootstrap-client, serve creates one client
in org "default" and prints its id and secret once to stderr. SIGHUP
reloads --policies; SIGTERM drains in-flight requests (up to 10 s).
With --metrics-addr, /metrics is served on that address only, apart from
the API.

Every flag has an environment fallback: RATELAB_ADDR, RATELAB_METRICS_ADDR, RATELAB_DB,
RATELAB_REDIS, RATELAB_REDIS_FAILURE, RATELAB_REDIS_TIMEOUT, RATELAB_POLICIES, RATELAB_LOG_FORMAT,
RATELAB_BOOTSTRAP_CLIENT, RATELAB_HEADERS, RATELAB_REJECT_BODY.

--headers chooses how responses advertise the limits: ietf (the default:
RateLimit-Policy, RateLimit and X-RateLimit-*), x-ratelimit, github
(x-ratelimit-limit/-remaining/-used/-reset as an epoch/-resource), inin
(inin-ratelimit-allowed/-count/-reset) or none (only Retry-After on a
429). --reject-body terse answers a 429 with the bare
{"message":"Rate limit exceeded.","code":"too_many_requests"}, naming
no policy, as some platforms do; see examples/policies.

While Redis is unreachable (also when serve starts without it), the
limiter fails open by default: each replica enforces the policies on its
own, /readyz answers 200 with "degraded": true. With --redis-failure
closed it admits nothing and answers 503 with Retry-After instead. Either
way it moves to Redis as soon as Redis answers.`

// serveRedisTimeout is serve's default --redis-timeout, far longer than
// the store's own redis.DefaultTimeout (50 ms). The store takes a timeout
// for an outage, and an outage fails open for the whole replica: it
// decides alone until the health check finds Redis again (0.5 s at the
// soonest), and the replicas together admit up to one limit each. On a
// saturated machine an answer can take longer than 50 ms without Redis
// being away (scheduling, not Redis): e2e's TestReplicas with the CPUs
// kept busy (load 5-6 on 2 cores) saw 50 ms flap into fail-open and admit
// 1672 of 1302 allowed; 250 ms and 500 ms held there, and 500 ms still
// flapped at load 12-15. A Redis that is truly away refuses connections
// at once, so the bound only matters for one that hangs, and then each
// request in flight waits for it once before the replica turns to its
// fallback: a second, once, is a small price next to a false outage.
const serveRedisTimeout = time.Second

// database is what the server needs of a storage package.
type database interface {
	ratelab.ScriptService
	ratelab.AuthService
	Close() error
}

// openDB opens the database named by a --db value: sqlite:PATH, or a
// postgres:// (postgresql://) URL.
func openDB(ctx context.Context, spec string, log *slog.Logger) (database, error) {
	switch {
	case strings.HasPrefix(spec, "sqlite:"):
		path := strings.TrimPrefix(spec, "sqlite:")
		if path == "" {
			return nil, errors.New("--db sqlite: needs a path, e.g. sqlite:./ratelab.db")
		}
		return sqlite.Open(ctx, path, sqlite.WithLogger(log))
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		return postgres.Open(ctx, spec, postgres.WithLogger(log))
	}
	return nil, errors.New("--db: want sqlite:PATH or a postgres:// URL")
}

// newLogger returns a logger writing to w in the format of --log-format.
func newLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func runServe(ctx context.Context, env *environ, args []string) error {
	fs := newFlagSet(env, "serve", "serve [flags]", serveDescription)
	addr := fs.String("addr", envDefault(env, "RATELAB_ADDR", "127.0.0.1:8080"), "listen `address`")
	metricsAddr := fs.String("metrics-addr", envDefault(env, "RATELAB_METRICS_ADDR", ""), "serve /metrics on this `address` instead of beside the API (where it then answers 404)")
	dbSpec := fs.String("db", envDefault(env, "RATELAB_DB", "sqlite:./ratelab.db"), "database: sqlite:PATH or a postgres:// `URL`")
	redisURL := fs.String("redis", envDefault(env, "RATELAB_REDIS", ""), "Redis `URL` for limits shared by several replicas: redis://HOST:PORT[/DB], or a Redis Cluster as redis://HOST:PORT?addr=HOST:PORT&addr=…; empty: in memory")
	redisFailure := fs.String("redis-failure", envDefault(env, "RATELAB_REDIS_FAILURE", "open"), "while Redis is unreachable: `open` (decide locally, per replica) or closed (503, admit nothing)")
	redisTimeout := fs.String("redis-timeout", envDefault(env, "RATELAB_REDIS_TIMEOUT", serveRedisTimeout.String()),
		"`bound` on one limiter round trip to Redis; a slower answer counts as an outage")
	policyFile := fs.String("policies", envDefault(env, "RATELAB_POLICIES", ""), "YAML policy `file` replacing the built-in defaults; reloaded on SIGHUP")
	logFormat := fs.String("log-format", envDefault(env, "RATELAB_LOG_FORMAT", "text"), "log `format`: text or json")
	bootstrap := fs.String("bootstrap-client", envDefault(env, "RATELAB_BOOTSTRAP_CLIENT", ""), "create this OAuth client in org \"default\" if missing, as `ID:SECRET`")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `file` (for bench/server/compare.sh)")
	headers := fs.String("headers", envDefault(env, "RATELAB_HEADERS", httpapi.HeadersIETF), "rate-limit header `dialect`: ietf, x-ratelimit, github, inin or none")
	rejectBody := fs.String("reject-body", envDefault(env, "RATELAB_REJECT_BODY", httpapi.RejectDetailed), "429 `body`: detailed (names the policy and its numbers) or terse")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	timeout, err := time.ParseDuration(*redisTimeout)
	if err != nil || timeout <= 0 {
		return fmt.Errorf("--redis-timeout %q: want a positive duration such as 50ms", *redisTimeout)
	}
	log, err := newLogger(env.stderr, *logFormat)
	if err != nil {
		return err
	}
	if !slices.Contains(httpapi.HeaderDialects(), *headers) {
		return fmt.Errorf("--headers %q: want ietf, x-ratelimit, github, inin or none", *headers)
	}
	if *rejectBody != httpapi.RejectDetailed && *rejectBody != httpapi.RejectTerse {
		return fmt.Errorf("--reject-body %q: want detailed or terse", *rejectBody)
	}
	if *redisFailure != "open" && *redisFailure != "closed" {
		return fmt.Errorf("--redis-failure %q: want open or closed", *redisFailure)
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	// Validate the policies before touching the database, so a typo fails
	// fast with the file, policy and field named.
	var policies *httpapi.Policies
	if *policyFile != "" {
		if policies, err = httpapi.LoadPolicies(*policyFile); err != nil {
			return err
		}
	}

	db, err := openDB(ctx, *dbSpec, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := db.Close(); err != nil {
			log.Error("close database", "err", err)
		}
	}()
	if err := ensureClient(ctx, env, db, *bootstrap); err != nil {
		return err
	}

	cfg := httpapi.Config{Scripts: db, Auth: db, Policies: policies, PolicyFile: *policyFile, Logger: log,
		Headers: *headers, RejectBody: *rejectBody}
	if *redisURL != "" {
		client, err := redis.NewClient(*redisURL)
		if err != nil {
			return fmt.Errorf("--redis: %w", err)
		}
		defer client.Close()
		store, err := redis.New(redis.Config{Client: client, Logger: log, FailClosed: *redisFailure == "closed", Timeout: timeout})
		if err != nil {
			return err
		}
		defer store.Close()
		// Redis being down is no reason not to start: the store decides as
		// configured until its health check finds Redis (it logs both).
		store.Check()
		cfg.Limiter = store
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registry = reg
	cfg.MetricsElsewhere = *metricsAddr != ""

	srv, err := httpapi.NewServer(cfg)
	if err != nil {
		return err
	}
	// Catch SIGHUP before listening, so that a reload signal can never
	// arrive unhandled (and end the process).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := srv.Open(*addr); err != nil {
		return err
	}
	if *metricsAddr != "" {
		ms, err := startMetrics(*metricsAddr, srv.MetricsHandler(), log)
		if err != nil {
			srv.Close()
			return err
		}
		defer ms.shutdown()
	}
	attrs := []any{"db", dbKind(*dbSpec), "limiter", "memory"}
	if *redisURL != "" {
		attrs = append(attrs[:2], "limiter", "redis", "redis_failure", *redisFailure)
	}
	log.Info("ratelab serve: listening on "+srv.URL(), append(attrs, "policies", srv.Policies().Source)...)
	for {
		select {
		case <-hup:
			// Reload logs the outcome; a bad file keeps the policies in effect.
			srv.Reload()
		case <-ctx.Done():
			log.Info("shutting down: draining in-flight requests", "timeout", httpapi.ShutdownTimeout)
			sctx, cancel := context.WithTimeout(context.Background(), httpapi.ShutdownTimeout)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			log.Info("stopped")
			return nil
		}
	}
}

// startCPUProfile writes a CPU profile to path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// dbKind names the database for the log without its credentials.
func dbKind(spec string) string {
	if strings.HasPrefix(spec, "sqlite:") {
		return spec
	}
	return "postgres"
}

// bootstrapExists reports whether the client id exists with this secret;
// a wrong secret or an unknown id is false, a failure of the database an
// error.
func bootstrapExists(ctx context.Context, db database, id, secret string) (bool, error) {
	_, err := db.Authenticate(ctx, id, secret)
	switch ratelab.ErrorCode(err) {
	case "":
		return true, nil
	case ratelab.EUNAUTHORIZED:
		return false, nil
	}
	return false, fmt.Errorf("bootstrap client: %w", err)
}

// ensureClient creates the --bootstrap-client if missing; without it, on
// a database with no client at all, it creates one in org "default" and
// prints the credentials once to stderr.
func ensureClient(ctx context.Context, env *environ, db database, bootstrap string) error {
	if bootstrap != "" {
		id, secret, ok := strings.Cut(bootstrap, ":")
		if !ok || id == "" || secret == "" {
			return errors.New("--bootstrap-client: want ID:SECRET")
		}
		if ok, err := bootstrapExists(ctx, db, id, secret); ok || err != nil {
			return err
		}
		org, err := db.EnsureOrg(ctx, "default")
		if err != nil {
			return fmt.Errorf("bootstrap client: %w", err)
		}
		_, _, err = db.CreateClient(ctx, org.ID, id, secret)
		if ratelab.ErrorCode(err) == ratelab.ECONFLICT {
			// Another replica started at the same time created it since
			// the check above: carry on if it holds the same secret.
			ok, err := bootstrapExists(ctx, db, id, secret)
			if err == nil && !ok {
				err = fmt.Errorf("--bootstrap-client: client %q exists with a different secret", id)
			}
			return err
		}
		if err != nil {
			return fmt.Errorf("bootstrap client: %w", err)
		}
		return nil
	}
	n, err := db.CountClients(ctx)
	if err != nil {
		return fmt.Errorf("count clients: %w", err)
	}
	if n > 0 {
		return nil
	}
	org, err := db.EnsureOrg(ctx, "default")
	if err != nil {
		return fmt.Errorf("first client: %w", err)
	}
	cl, secret, err := db.CreateClient(ctx, org.ID, "", "")
	if err != nil {
		return fmt.Errorf("first client: %w", err)
	}
	fmt.Fprintf(env.stderr, "ratelab serve: created the first OAuth client in org \"default\"; the secret is shown only once:\n"+
		"  client_id:     %s\n  client_secret: %s\n", cl.ID, secret)
	return nil
}
