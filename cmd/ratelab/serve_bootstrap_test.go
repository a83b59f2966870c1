package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ratelab/internal/testenv"
)

// TestServeReplicasBootstrap starts several `ratelab serve` at once on one
// database with the same --bootstrap-client, as replicas of a deployment
// start: every one must start (issue 11 item 6: 2 of 3 died with "exists
// with a different secret"), and the client must work on each. A wrong
// secret for the existing client still stops a replica.
func TestServeReplicasBootstrap(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			for round := range 3 {
				db := "sqlite:" + filepath.Join(t.TempDir(), "r.db")
				if backend == "postgres" {
					db = testenv.PostgresDatabase(t)
				}
				id := fmt.Sprintf("replica-%s-%d", strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "-"), round)
				srvs := startReplicas(t, 3, "--addr", "127.0.0.1:0", "--db", db, "--bootstrap-client", id+":s3cret")
				for i, srv := range srvs {
					if _, code := srv.token(id, "s3cret"); code != 200 {
						t.Fatalf("round %d replica %d: token %d", round, i, code)
					}
				}
				if round == 0 {
					code, _, errOut := runCmd(t, "serve", "--addr", "127.0.0.1:0", "--db", db, "--bootstrap-client", id+":other")
					if code != 1 || !strings.Contains(errOut, fmt.Sprintf("client %q exists with a different secret", id)) {
						t.Fatalf("wrong secret: code %d, stderr %q", code, errOut)
					}
				}
				for _, srv := range srvs {
					if code := srv.stop(); code != 0 {
						t.Fatalf("serve exited %d:\n%s", code, srv.stderr)
					}
				}
			}
		})
	}
}

// startReplicas runs n `ratelab serve args…` at once and waits until all
// listen; one that exits first fails the test with its output.
func startReplicas(t *testing.T, n int, args ...string) []*running {
	t.Helper()
	srvs := make([]*running, n)
	start := make(chan struct{})
	for i := range srvs {
		ctx, cancel := context.WithCancel(context.Background())
		r := &running{t: t, stderr: &lockedBuffer{}, cancel: cancel, done: make(chan int, 1)}
		env := &environ{stdin: strings.NewReader(""), stdout: io.Discard, stderr: r.stderr, getenv: func(string) string { return "" }}
		go func() {
			<-start
			r.done <- run(ctx, env, append([]string{"serve"}, args...))
		}()
		srvs[i] = r
		t.Cleanup(func() { r.stop() })
	}
	close(start)
	deadline := time.Now().Add(30 * time.Second)
	for i, r := range srvs {
		for r.url == "" {
			if m := listenRE.FindStringSubmatch(r.stderr.String()); m != nil {
				r.url = m[1]
				break
			}
			select {
			case code := <-r.done:
				r.done <- code
				t.Fatalf("replica %d of %d exited with %d before listening:\n%s", i, n, code, r.stderr)
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d did not listen within 30 s:\n%s", i, r.stderr)
			}
		}
	}
	return srvs
}
