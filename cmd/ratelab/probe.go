package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"ratelab/limit"
	"ratelab/load"
	"ratelab/probe"
)

func init() {
	register(&command{name: "probe", summary: "discover an endpoint's limits: family, numbers, scope", run: runProbe})
}

const probeDescription = `Discovers the rate limits of an endpoint: each limit's family (token bucket,
fixed window, sliding window, concurrency, and whether rejected requests
count), its numbers in that family's terms (rate and burst, quota per window,
requests in flight), and its scope (per resource, per endpoint, per client or
shared), by measurement; advertised headers are hypotheses it checks.

It needs both bounds: --max-rate (never sends faster) and --budget (never
sends more). After a 429 it never keeps sending at --max-rate: it waits what
Retry-After says, else backs off from 100 ms, doubling up to --max-wait. Each
measuring step lasts at most 45 s (a fixed window shows a boundary once a
window: a 10 s window takes four or five). It stops on a run of 5xx or network
errors; Ctrl-C stops it and reports what it learned so far.

--vary NAME=uuid|seq|csv:FILE gives {{.NAME}} in the URL and body a fresh value
per request in the scope steps and a fixed one otherwise: it tells a
per-resource limit from a per-endpoint one. A second credential
(--client-id-2/--client-secret-2) tells a per-client limit from a shared one.

Example:
  ratelab probe --url 'http://127.0.0.1:8080/api/v2/architect/scripts/{{.id}}' --vary id=uuid \
      -X PUT -H 'Content-Type: application/json' --body '{"name":"probe","text":"x"}' \
      --token-url http://127.0.0.1:8080/oauth/token --client-id ID --client-secret SECRET \
      --limits-url http://127.0.0.1:8080/api/v2/ratelimits --max-rate 200/s --budget 3000 --json out.json`

// varyFlags is a repeatable --vary NAME=KIND flag.
type varyFlags []probe.Vary

func (v *varyFlags) String() string {
	parts := make([]string, len(*v))
	for i, x := range *v {
		parts[i] = x.Name + "=" + x.Kind
	}
	return strings.Join(parts, ",")
}

func (v *varyFlags) Set(s string) error {
	x, err := probe.ParseVary(s)
	if err != nil {
		return err
	}
	*v = append(*v, x)
	return nil
}

func runProbe(ctx context.Context, env *environ, args []string) error {
	fs := newFlagSet(env, "probe", "probe --url URL --max-rate RATE --budget N [flags]", probeDescription)
	var (
		url, method, body, bodyFile, limitsURL, maxRate, jsonOut string
		tokenURL, id, secret, id2, secret2                       string
		headers                                                  headerFlags
		vary                                                     varyFlags
		budget, maxErrors                                        int
		timeout, maxWait                                         time.Duration
		quiet                                                    bool
	)
	fs.StringVar(&url, "url", envDefault(env, "RATELAB_PROBE_URL", ""), "endpoint `URL` to probe (a template) ($RATELAB_PROBE_URL)")
	fs.StringVar(&method, "method", "GET", "HTTP `method`")
	fs.StringVar(&method, "X", "GET", "HTTP `method` (short for --method)")
	fs.Var(&headers, "header", "request header \"Name: value\" (a template; repeatable)")
	fs.Var(&headers, "H", "request header (short for --header; repeatable)")
	fs.StringVar(&body, "body", "", "request body (a template)")
	fs.StringVar(&bodyFile, "body-file", "", "read the request body template from `FILE`")
	fs.Var(&vary, "vary", "NAME=uuid|seq|csv:FILE: a fresh {{.NAME}} per request in the scope steps (repeatable)")
	fs.StringVar(&limitsURL, "limits-url", "", "`URL` where the server lists its limits, e.g. ratelab's /api/v2/ratelimits")
	fs.StringVar(&maxRate, "max-rate", envDefault(env, "RATELAB_PROBE_MAX_RATE", ""), "never send faster than `RATE`, e.g. 200/s (required; $RATELAB_PROBE_MAX_RATE)")
	fs.IntVar(&budget, "budget", envInt(env, "RATELAB_PROBE_BUDGET"), "never send more than `N` requests (required; $RATELAB_PROBE_BUDGET)")
	fs.IntVar(&maxErrors, "max-errors", 5, "stop after this many consecutive 5xx responses or network errors")
	fs.DurationVar(&maxWait, "max-wait", 2*time.Minute, "longest wait between two requests (a refill, the backoff after 429s)")
	fs.DurationVar(&timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.StringVar(&tokenURL, "token-url", envDefault(env, "RATELAB_TOKEN_URL", ""), "OAuth 2.0 token `URL` for the client-credentials grant ($RATELAB_TOKEN_URL)")
	fs.StringVar(&id, "client-id", envDefault(env, "RATELAB_CLIENT_ID", ""), "OAuth client ID ($RATELAB_CLIENT_ID)")
	fs.StringVar(&secret, "client-secret", envDefault(env, "RATELAB_CLIENT_SECRET", ""), "OAuth client secret ($RATELAB_CLIENT_SECRET)")
	fs.StringVar(&id2, "client-id-2", envDefault(env, "RATELAB_CLIENT_ID_2", ""), "a second OAuth client ID, to tell per-client limits from shared ones ($RATELAB_CLIENT_ID_2)")
	fs.StringVar(&secret2, "client-secret-2", envDefault(env, "RATELAB_CLIENT_SECRET_2", ""), "the second client's secret ($RATELAB_CLIENT_SECRET_2)")
	fs.StringVar(&jsonOut, "json", "", "write the report as JSON to `FILE`")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if maxRate == "" {
		return errors.New("--max-rate is required: the probe never sends faster (e.g. --max-rate 200/s)")
	}
	rate, err := limit.ParseRate(maxRate)
	if err != nil {
		return fmt.Errorf("--max-rate: %w", err)
	}
	if budget <= 0 {
		return errors.New("--budget is required: the probe never sends more requests (e.g. --budget 3000)")
	}
	if (id2 == "") != (secret2 == "") || (id2 != "" && tokenURL == "") {
		return errors.New("a second credential needs --client-id-2, --client-secret-2 and --token-url")
	}
	cfg := probe.Config{
		Request:   load.RequestSpec{Method: method, URL: url, Headers: headers, Body: body, BodyFile: bodyFile},
		Vary:      vary,
		LimitsURL: limitsURL,
		MaxRate:   rate,
		Budget:    budget,
		MaxErrors: maxErrors,
		MaxWait:   maxWait,
	}
	if !quiet {
		cfg.Logger = slog.New(slog.NewTextHandler(env.stderr, nil))
	}
	if cfg.Client, err = load.NewClient(ctx, load.ClientConfig{Timeout: timeout,
		Auth: load.Auth{TokenURL: tokenURL, ClientID: id, ClientSecret: secret}}); err != nil {
		return err
	}
	if id2 != "" {
		if cfg.Client2, err = load.NewClient(ctx, load.ClientConfig{Timeout: timeout,
			Auth: load.Auth{TokenURL: tokenURL, ClientID: id2, ClientSecret: secret2}}); err != nil {
			return fmt.Errorf("second client: %w", err)
		}
	}
	rep, err := probe.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := rep.WriteText(env.stdout); err != nil {
		return err
	}
	if jsonOut != "" {
		f, err := os.Create(jsonOut)
		if err != nil {
			return fmt.Errorf("json: %w", err)
		}
		if err := rep.WriteJSON(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("json: %w", err)
		}
	}
	switch {
	case rep.Stopped == "":
		return nil
	case ctx.Err() != nil:
		return &exitError{code: 130, err: errors.New(rep.Stopped)}
	}
	return errors.New(rep.Stopped)
}

// envInt reads an integer environment variable; 0 when unset or invalid.
func envInt(env *environ, name string) int {
	n, _ := strconv.Atoi(env.getenv(name))
	return n
}
