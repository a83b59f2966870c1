// Command bulk-updates sends M script updates spread over N scripts to a
// ratelab scripts API, either through the Go client (client.Client:
// header-driven pacing, coalescing, bulk batching) or naively, one PUT at
// a time waiting out each 429's Retry-After, and prints one JSON object:
//
//	{"mode":"client","updates":1000,"count_429":0,"duration_s":1.9,"final_ok":true}
//
// Update j goes to script "bulk-<j mod N>" with the text "update <j>", so
// final_ok checks that every script's stored text is its last update.
//
//	go run ./examples/bulk-updates --url http://127.0.0.1:8080 \
//	    --client-id ID --client-secret S --scripts 200 --updates 1000 --mode client
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"ratelab"
	"ratelab/client"
)

// result is the one JSON object the command prints.
type result struct {
	Mode      string  `json:"mode"`
	Updates   int     `json:"updates"`
	Count429  int64   `json:"count_429"`
	DurationS float64 `json:"duration_s"`
	FinalOK   bool    `json:"final_ok"`
}

// counting counts 429 responses of every request sent through it.
type counting struct {
	next http.RoundTripper
	n429 atomic.Int64
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := c.next.RoundTrip(r)
	if err == nil && res.StatusCode == http.StatusTooManyRequests {
		c.n429.Add(1)
	}
	return res, err
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bulk-updates:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bulk-updates", flag.ContinueOnError)
	base := fs.String("url", os.Getenv("RATELAB_URL"), "base URL of the API (env RATELAB_URL)")
	id := fs.String("client-id", os.Getenv("RATELAB_CLIENT_ID"), "OAuth client id (env RATELAB_CLIENT_ID)")
	secret := fs.String("client-secret", os.Getenv("RATELAB_CLIENT_SECRET"), "OAuth client secret (env RATELAB_CLIENT_SECRET)")
	scripts := fs.Int("scripts", 200, "number of scripts `N`")
	updates := fs.Int("updates", 1000, "number of updates `M`, spread round-robin over the scripts")
	mode := fs.String("mode", "client", "client (client.Client) or naive (one PUT at a time, honouring Retry-After)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *base == "" || *id == "" || *secret == "":
		return errors.New("--url, --client-id and --client-secret are required")
	case *scripts < 1 || *updates < 1:
		return errors.New("--scripts and --updates must be at least 1")
	case *mode != "client" && *mode != "naive":
		return fmt.Errorf("--mode %q: want client or naive", *mode)
	}
	*base = strings.TrimRight(*base, "/")
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()

	upds := make([]ratelab.ScriptUpdate, *updates)
	for j := range upds {
		sid := "bulk-" + strconv.Itoa(j%*scripts)
		upds[j] = ratelab.ScriptUpdate{ID: sid, Name: sid, Text: "update " + strconv.Itoa(j)}
	}
	cnt := &counting{next: http.DefaultTransport}
	hc := &http.Client{Transport: cnt, Timeout: 30 * time.Second}
	c, err := client.New(client.Config{BaseURL: *base, ClientID: *id, ClientSecret: *secret, HTTPClient: hc})
	if err != nil {
		return err
	}
	defer c.Close()

	start := time.Now()
	if *mode == "client" {
		err = viaClient(ctx, c, upds)
	} else {
		err = naive(ctx, *base, *id, *secret, hc, upds)
	}
	if err != nil {
		return err
	}
	res := result{Mode: *mode, Updates: *updates, Count429: cnt.n429.Load(), DurationS: time.Since(start).Seconds()}
	// The check reads through the client, which paces its reads too.
	if res.FinalOK, err = finalOK(ctx, c, upds); err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(res)
}

// viaClient submits every update at once and waits for all: the client
// merges updates of a script that wait for quota and batches scripts into
// bulk requests.
func viaClient(ctx context.Context, c *client.Client, upds []ratelab.ScriptUpdate) error {
	ps := make([]*client.Pending, len(upds))
	for i, u := range upds {
		ps[i] = c.Submit(ctx, u)
	}
	for i, p := range ps {
		if _, err := p.Wait(ctx); err != nil {
			return fmt.Errorf("update %d: %w", i, err)
		}
	}
	return nil
}

// naive sends one PUT at a time; on a 429 it sleeps Retry-After and sends
// the same PUT again.
func naive(ctx context.Context, base, id, secret string, hc *http.Client, upds []ratelab.ScriptUpdate) error {
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: base + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}
	ts := cc.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, hc))
	for i, u := range upds {
		body, err := json.Marshal(map[string]string{"name": u.Name, "text": u.Text})
		if err != nil {
			return err
		}
		for attempt := 1; ; attempt++ {
			if attempt > 100 {
				return fmt.Errorf("update %d: still rate limited after 100 attempts", i)
			}
			tok, err := ts.Token()
			if err != nil {
				return fmt.Errorf("token: %w", err)
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/api/v2/architect/scripts/"+u.ID, strings.NewReader(string(body)))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			tok.SetAuthHeader(req)
			res, err := hc.Do(req)
			if err != nil {
				return fmt.Errorf("update %d: %w", i, err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusTooManyRequests {
				secs, err := strconv.Atoi(res.Header.Get("Retry-After"))
				if err != nil || secs < 0 {
					secs = 1
				}
				select {
				case <-time.After(time.Duration(secs) * time.Second):
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			if res.StatusCode >= 300 {
				return fmt.Errorf("update %d: PUT %s: status %d", i, u.ID, res.StatusCode)
			}
			break
		}
	}
	return nil
}

// finalOK reports whether every script's stored text is its last update.
func finalOK(ctx context.Context, c *client.Client, upds []ratelab.ScriptUpdate) (bool, error) {
	last := map[string]string{}
	for _, u := range upds {
		last[u.ID] = u.Text
	}
	ok := true
	for id, text := range last {
		s, err := c.FindScript(ctx, "", id)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", id, err)
		}
		if s.Text != text {
			ok = false
		}
	}
	return ok, nil
}
