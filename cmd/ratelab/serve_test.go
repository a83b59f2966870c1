package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ratelab/sqlite"
)

// lockedBuffer is an output stream tests read while a command writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// running is a `ratelab serve` started in-process.
type running struct {
	t      *testing.T
	url    string
	stderr *lockedBuffer
	cancel context.CancelFunc
	done   chan int
}

var listenRE = regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)

// startServe runs `ratelab serve args…` with the environment vars and
// waits until it listens.
func startServe(t *testing.T, vars map[string]string, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, stderr: &lockedBuffer{}, cancel: cancel, done: make(chan int, 1)}
	env := &environ{stdin: strings.NewReader(""), stdout: io.Discard, stderr: r.stderr, getenv: func(k string) string { return vars[k] }}
	go func() { r.done <- run(ctx, env, append([]string{"serve"}, args...)) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := listenRE.FindStringSubmatch(r.stderr.String()); m != nil {
			r.url = m[1]
			t.Cleanup(func() { r.stop() })
			return r
		}
		select {
		case code := <-r.done:
			cancel()
			t.Fatalf("serve exited with %d before listening:\n%s", code, r.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	t.Fatalf("serve did not listen within 20 s:\n%s", r.stderr)
	return nil
}

// stop cancels the command's context, as SIGTERM does, and returns its
// exit status.
func (r *running) stop() int {
	r.cancel()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(15 * time.Second):
		r.t.Fatalf("serve did not stop within 15 s")
		return -1
	}
}

func (r *running) token(id, secret string) (string, int) {
	r.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest("POST", r.url+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(res.Body).Decode(&tok)
	return tok.AccessToken, res.StatusCode
}

func (r *running) put(tok, id string) *http.Response {
	r.t.Helper()
	req, _ := http.NewRequest("PUT", r.url+"/api/v2/architect/scripts/"+id, strings.NewReader(`{"name":"n","text":"t"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

var credRE = regexp.MustCompile(`client_id:\s+(\S+)\s+client_secret:\s+(\S+)`)

func TestServe(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "r.db")
	policies := filepath.Join(dir, "policies.yaml")
	writePolicies := func(burst string) {
		doc := "policies:\n  - name: per-script\n    rate: 1/s\n    burst: " + burst + "\n    scope: org+script\n    classes: [script-writes]\n"
		if err := os.WriteFile(policies, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePolicies("1")
	// Flags through their environment fallbacks.
	vars := map[string]string{"RATELAB_ADDR": "127.0.0.1:0", "RATELAB_DB": "sqlite:" + dbPath, "RATELAB_POLICIES": policies, "RATELAB_LOG_FORMAT": "json"}
	srv := startServe(t, vars)

	// The first client is printed once.
	m := credRE.FindStringSubmatch(srv.stderr.String())
	if m == nil {
		t.Fatalf("no client printed:\n%s", srv.stderr)
	}
	tok, code := srv.token(m[1], m[2])
	if code != 200 || tok == "" {
		t.Fatalf("token: %d", code)
	}
	if !strings.Contains(srv.stderr.String(), `"msg":"ratelab serve: listening on`) {
		t.Fatalf("not JSON logs:\n%s", srv.stderr)
	}
	if res := srv.put(tok, "s1"); res.StatusCode != 201 {
		t.Fatalf("PUT %d", res.StatusCode)
	}
	if res := srv.put(tok, "s1"); res.StatusCode != 429 || res.Header.Get("X-RateLimit-Limit") != "1" {
		t.Fatalf("second PUT %d, limit %q: policy file not in effect", res.StatusCode, res.Header.Get("X-RateLimit-Limit"))
	}

	// `clients create` works on the same database while the server runs,
	// and the new client gets tokens from it.
	code, out, errOut := runCmd(t, "clients", "create", "--org", "other", "--db", "sqlite:"+dbPath)
	if code != 0 {
		t.Fatalf("clients create: %d %s", code, errOut)
	}
	var created map[string]string
	if err := json.Unmarshal([]byte(out), &created); err != nil || created["org"] != "other" || created["client_id"] == "" || created["client_secret"] == "" {
		t.Fatalf("clients create output %q: %v", out, err)
	}
	if _, code := srv.token(created["client_id"], created["client_secret"]); code != 200 {
		t.Fatalf("token for the new client: %d", code)
	}

	// SIGHUP reloads the policy file: burst 5 admits the next PUT.
	writePolicies("5")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, srv.stderr, `"msg":"policies loaded","source":"policies.yaml"`)
	if res := srv.put(tok, "s1"); res.StatusCode != 200 || res.Header.Get("X-RateLimit-Limit") != "5" {
		t.Fatalf("PUT after reload %d, limit %q", res.StatusCode, res.Header.Get("X-RateLimit-Limit"))
	}
	// A bad file on SIGHUP is logged and the old policies stay.
	writePolicies("0")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, srv.stderr, `burst: must be at least 1`)
	if res := srv.put(tok, "s1"); res.Header.Get("X-RateLimit-Limit") != "5" {
		t.Fatalf("bad reload changed the policies: limit %q", res.Header.Get("X-RateLimit-Limit"))
	}

	// Stopping drains and closes the database: the acknowledged writes
	// are on disk.
	if code := srv.stop(); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, srv.stderr)
	}
	db, err := sqlite.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n, err := db.CountClients(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("clients %d, %v", n, err)
	}

	// A second start on the same database prints no credentials.
	writePolicies("5")
	again := startServe(t, vars)
	if credRE.MatchString(again.stderr.String()) {
		t.Fatalf("credentials printed again:\n%s", again.stderr)
	}
	if _, code := again.token(m[1], m[2]); code != 200 {
		t.Fatalf("token after restart: %d", code)
	}
}

func waitFor(t *testing.T, b *lockedBuffer, s string) {
	t.Helper()
	for range 500 {
		if strings.Contains(b.String(), s) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("log never said %q:\n%s", s, b)
}

func TestServeBootstrapClient(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "r.db")
	srv := startServe(t, nil, "--addr", "127.0.0.1:0", "--db", "sqlite:"+dbPath, "--bootstrap-client", "loadtest:s3cret")
	if credRE.MatchString(srv.stderr.String()) {
		t.Fatalf("credentials printed despite --bootstrap-client:\n%s", srv.stderr)
	}
	if _, code := srv.token("loadtest", "s3cret"); code != 200 {
		t.Fatalf("bootstrap client token: %d", code)
	}
	if _, code := srv.token("loadtest", "wrong"); code != 401 {
		t.Fatalf("wrong secret: %d", code)
	}
	srv.stop()
	// Starting again with the same client is fine; with another secret it
	// is an error.
	srv = startServe(t, map[string]string{"RATELAB_BOOTSTRAP_CLIENT": "loadtest:s3cret"}, "--addr", "127.0.0.1:0", "--db", "sqlite:"+dbPath)
	srv.stop()
	code, _, errOut := runCmd(t, "serve", "--addr", "127.0.0.1:0", "--db", "sqlite:"+dbPath, "--bootstrap-client", "loadtest:other")
	if code != 1 || !strings.Contains(errOut, `client "loadtest" exists with a different secret`) {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
}

func TestServeBadConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "policies.yaml")
	os.WriteFile(bad, []byte("policies:\n  - name: x\n    rate: 2/s\n    burst: 0\n    scope: org\n    classes: [all]\n"), 0o600)
	// Issue 11 item 5: two org+script policies load as a file, but a bulk
	// of 32 distinct ids then needed more tiers than one decision holds (a
	// 500 on every such bulk). serve refuses the file at start.
	twoPerScript := filepath.Join(dir, "two.yaml")
	os.WriteFile(twoPerScript, []byte("policies:\n  - {name: a, rate: 2/s, burst: 4, scope: org+script, classes: [script-writes]}\n  - {name: b, rate: 10/m, burst: 10, scope: org+script, classes: [script-writes]}\n"), 0o600)
	db := "sqlite:" + filepath.Join(dir, "r.db")
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"log format":              {[]string{"--log-format", "xml"}, `--log-format "xml": want text or json`},
		"db":                      {[]string{"--db", "mysql://x"}, "--db: want sqlite:PATH or a postgres:// URL"},
		"policies":                {[]string{"--policies", bad}, `policies.yaml: policy "x": burst: must be at least 1`},
		"policies too many tiers": {[]string{"--policies", twoPerScript}, "two.yaml: route POST /api/v2/architect/scripts/bulk: up to 100 tiers in one decision"},
		"metrics-addr":            {[]string{"--metrics-addr", "256.0.0.1:1"}, "--metrics-addr: listen"},
		"bootstrap":               {[]string{"--bootstrap-client", "nosecret"}, "--bootstrap-client: want ID:SECRET"},
		"redis":                   {[]string{"--redis", "http://x"}, "--redis: want a redis:// or rediss:// URL"},
		"redis-failure":           {[]string{"--redis-failure", "maybe"}, `--redis-failure "maybe": want open or closed`},
		"headers":                 {[]string{"--headers", "draft-7"}, `--headers "draft-7": want ietf, x-ratelimit, github, inin or none`},
		"reject-body":             {[]string{"--reject-body", "short"}, `--reject-body "short": want detailed or terse`},
		"addr":                    {[]string{"--addr", "256.0.0.1:1"}, "listen:"},
		"argument":                {[]string{"extra"}, `unexpected argument "extra"`},
	} {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"serve", "--addr", "127.0.0.1:0", "--db", db}, tc.args...)
			code, _, errOut := runCmd(t, args...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("code %d, stderr %q, want %q", code, errOut, tc.want)
			}
		})
	}
}

func TestClientsCreate(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "r.db")
	ids := map[string]bool{}
	for range 2 {
		code, out, errOut := runCmd(t, "clients", "create", "--org", "acme", "--db", db)
		if code != 0 {
			t.Fatalf("code %d: %s", code, errOut)
		}
		var c createdClient
		if err := json.Unmarshal([]byte(out), &c); err != nil || c.Org != "acme" || c.ClientID == "" || len(c.ClientSecret) < 40 {
			t.Fatalf("output %q: %v", out, err)
		}
		ids[c.OrgID+"/"+c.ClientID] = true
	}
	if len(ids) != 2 {
		t.Fatalf("clients %v", ids)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"clients"}, 2, "Usage: ratelab clients create"},
		{[]string{"clients", "remove"}, 2, "ratelab clients delete CLIENT_ID"},
		{[]string{"clients", "delete", "--db", db}, 1, "clients delete: a CLIENT_ID is required"},
		{[]string{"clients", "rotate", "a", "b", "--db", db}, 1, `unexpected argument "b"`},
		{[]string{"clients", "list", "x", "--db", db}, 1, `unexpected argument "x"`},
		{[]string{"clients", "delete", "no-such-client", "--db", db}, 1, `client "no-such-client" not found`},
		{[]string{"clients", "rotate", "a\x00b", "--db", db}, 1, `not found`},
		{[]string{"clients", "create", "--db", db}, 1, "--org is required"},
		{[]string{"clients", "create", "--org", "x", "--db", "nope"}, 1, "--db: want sqlite:PATH"},
	} {
		code, _, errOut := runCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: code %d, stderr %q", tc.args, code, errOut)
		}
	}
}
