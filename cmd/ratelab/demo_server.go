package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"ratelab/client"
	"ratelab/diagnose"
	"ratelab/httpapi"
	"ratelab/limit"
	"ratelab/load"
	"ratelab/report"
	"ratelab/sqlite"
	"ratelab/wire"
)

// demoServer is the embedded server, a token for the load runs and the
// Go client, which reads the limits the server advertises.
type demoServer struct {
	base   string
	token  string
	settle time.Duration
	api    *client.Client
	close  func()
}

// startDemoServer starts the embedded server on a new database in dir;
// cfg gives its policies and dialects (its stores are filled in here).
func startDemoServer(ctx context.Context, dir string, cfg httpapi.Config) (*demoServer, error) {
	db, err := sqlite.Open(ctx, filepath.Join(dir, "ratelab.db"))
	if err != nil {
		return nil, err
	}
	org, err := db.EnsureOrg(ctx, "default")
	if err != nil {
		db.Close()
		return nil, err
	}
	cl, secret, err := db.CreateClient(ctx, org.ID, "", "")
	if err != nil {
		db.Close()
		return nil, err
	}
	cfg.Scripts, cfg.Auth, cfg.Logger = db, db, slog.New(slog.DiscardHandler)
	srv, err := httpapi.NewServer(cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := srv.Open("127.0.0.1:0"); err != nil {
		db.Close()
		return nil, err
	}
	s := &demoServer{base: "http://" + srv.Addr()}
	s.api, err = client.New(client.Config{BaseURL: s.base, ClientID: cl.ID, ClientSecret: secret, HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	if err != nil {
		db.Close()
		return nil, err
	}
	s.close = func() {
		s.api.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		db.Close()
	}
	cc := clientcredentials.Config{ClientID: cl.ID, ClientSecret: secret, TokenURL: s.base + "/oauth/token"}
	tok, err := cc.Token(ctx)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("token: %w", err)
	}
	s.token = tok.AccessToken
	// The longest refill window of the policies that apply, so runs start
	// from full buckets.
	lim, err := s.api.RateLimits(ctx, "")
	if err != nil {
		s.close()
		return nil, err
	}
	s.settle = diagnose.Settle(lim.Policies)
	return s, nil
}

// scriptLimit returns the tightest per-script policy the server advertises
// for the first script of data.
func (s *demoServer) scriptLimit(ctx context.Context, data *load.DataSet) (*limit.Policy, error) {
	row := data.Next(0)
	if len(row) == 0 {
		return nil, errors.New("no script ids")
	}
	lim, err := s.api.RateLimits(ctx, row[0])
	if err != nil {
		return nil, err
	}
	return diagnose.ScriptLimit(lim.Policies, row[0])
}

// limits returns the limits the server advertises for the first script
// of data, by policy name, for the diagnosis to describe them.
func (s *demoServer) limits(ctx context.Context, data *load.DataSet) (map[string]wire.LimitState, error) {
	id := ""
	if row := data.Next(0); len(row) > 0 {
		id = row[0]
	}
	lim, err := s.api.RateLimits(ctx, id)
	if err != nil {
		return nil, err
	}
	out := map[string]wire.LimitState{}
	for _, st := range lim.Policies {
		out[st.Policy] = st
	}
	return out, nil
}

// bulkBody returns the body template of a bulk request that updates each
// distinct script id of data once (up to wire.MaxBulkItems), and how
// many it updates. The text is a template the engine renders per request.
func bulkBody(data *load.DataSet) (string, int, error) {
	var body wire.BulkRequest
	seen := map[string]bool{}
	for range data.Len() {
		row := data.Next(0)
		if len(row) == 0 || seen[row[0]] {
			continue
		}
		seen[row[0]] = true
		body.Scripts = append(body.Scripts, wire.ScriptPut{ID: row[0], Name: "Load test script", Text: "bulk update {{.Seq}} at {{now}}"})
	}
	body.Scripts = body.Scripts[:min(len(body.Scripts), wire.MaxBulkItems)]
	b, err := json.Marshal(body)
	return string(b), len(body.Scripts), err
}

// bulkScenario builds the bulk run: one request per tick carrying an
// update for every script in data.
func bulkScenario(s *demoServer, data *load.DataSet, perScript *limit.Policy, d time.Duration) (*load.Scenario, int, error) {
	body, n, err := bulkBody(data)
	if err != nil {
		return nil, 0, err
	}
	sc := &load.Scenario{
		Name:       "bulk",
		RetryAfter: load.RetryHonor,
		Workload:   load.Workload{Rate: perScript.Rate, Duration: d, MaxWorkers: 10},
		Requests: []load.RequestSpec{{
			Name: "POST bulk", Method: http.MethodPost, URL: s.base + wire.BulkPath,
			Headers: []load.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Authorization", Value: "Bearer " + s.token}},
			Body:    body,
		}},
	}
	return sc, n, nil
}

// demoLoad runs one scenario and summarizes it.
func demoLoad(ctx context.Context, sc *load.Scenario, data *load.DataSet, title string, target float64) (*report.Summary, error) {
	plan, err := sc.Compile(data)
	if err != nil {
		return nil, err
	}
	model := diagnose.TargetOf(&sc.Workload, len(plan.Targets)).Model
	agg := report.NewAggregator(report.Config{TargetRPS: target, Model: model, Title: title})
	st, err := load.Run(ctx, load.Config{Plan: plan, Workload: sc.Workload, HTTP: load.ClientConfig{Timeout: 10 * time.Second},
		RetryAfter: sc.RetryAfter, Sink: agg.Add})
	if err != nil {
		return nil, err
	}
	agg.SetDropped(int64(st.Dropped))
	return agg.Summary(), nil
}

func writeHTMLFile(path string, s *report.Summary) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := report.WriteHTML(f, s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// printRun prints a run's short summary.
func printRun(w io.Writer, r *diagnose.Run) {
	s := r.Summary
	rl := s.RateLimit
	fmt.Fprintf(w, "   %d requests in %.1f s: %.1f req/s", s.Requests, s.DurationS, s.AchievedRPS)
	if s.TargetRPS != nil {
		fmt.Fprintf(w, " (intended %s req/s)", diagnose.Number(*s.TargetRPS))
	}
	if r.UpdatesPerRequest > 1 {
		fmt.Fprintf(w, ", %.1f script updates/s", r.UpdatesPerSecond())
	}
	fmt.Fprintln(w)
	if rl.Count429 == 0 {
		fmt.Fprintln(w, "   429: none")
	} else {
		fmt.Fprintf(w, "   429: %d (%.1f%%)", rl.Count429, 100*rl.Share429)
		if rl.First429Request != nil && rl.First429S != nil {
			fmt.Fprintf(w, ", the first at request #%d, %.0f ms into the run", *rl.First429Request+1, 1000**rl.First429S)
		}
		fmt.Fprintln(w)
		if len(rl.ByPolicy) > 0 {
			fmt.Fprintf(w, "   rejected by: %s\n", diagnose.ByPolicy(rl.ByPolicy))
		}
	}
	fmt.Fprintf(w, "   report: %s\n\n", r.HTML)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
