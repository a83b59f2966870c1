package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ratelab/internal/testenv"
	"ratelab/wire"
)

// TestServeConcurrentOppositeBulks sends, to the real server on SQLite and
// on PostgreSQL, concurrent bulks of the same ten ids in opposite orders
// (issue 11 item 1: on PostgreSQL 107 of 400 items answered 500, deadlock
// detected): every item must succeed without a deadlock (none retried),
// and every script must have one version per write.
func TestServeConcurrentOppositeBulks(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			db := "sqlite:" + filepath.Join(dir, "r.db")
			if backend == "postgres" {
				db = testenv.PostgresDatabase(t)
			}
			// Limits far above this test's load: it is about the store.
			policies := filepath.Join(dir, "policies.yaml")
			if err := os.WriteFile(policies, []byte("policies:\n  - name: roomy\n    rate: 10000/s\n    burst: 10000\n    scope: org\n    classes: [all]\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			client := "bulks-" + backend + "-" + uniqueSuffix()
			srv := startServe(t, nil, "--addr", "127.0.0.1:0", "--db", db, "--policies", policies, "--bootstrap-client", client+":s3cret")
			tok, code := srv.token(client, "s3cret")
			if code != 200 {
				t.Fatalf("token %d", code)
			}
			ids := make([]string, 10)
			for i := range ids {
				ids[i] = fmt.Sprintf("%s-%02d", client, i)
			}
			const writers, rounds = 2, 10
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Go(func() {
					for r := range rounds {
						items := make([]map[string]any, len(ids))
						for i := range ids {
							id := ids[i]
							if w == 1 {
								id = ids[len(ids)-1-i]
							}
							items[i] = map[string]any{"id": id, "name": "n", "text": fmt.Sprintf("w%d-r%d", w, r)}
						}
						body, _ := json.Marshal(map[string]any{"scripts": items})
						req, _ := http.NewRequest("POST", srv.url+"/api/v2/architect/scripts/bulk", bytes.NewReader(body))
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("Authorization", "Bearer "+tok)
						res, err := http.DefaultClient.Do(req)
						if err != nil {
							errs <- err
							return
						}
						var br wire.BulkResponse
						err = json.NewDecoder(res.Body).Decode(&br)
						res.Body.Close()
						if err != nil || res.StatusCode != 200 || br.Failed != 0 {
							errs <- fmt.Errorf("writer %d round %d: %d, %+v, %v", w, r, res.StatusCode, br, err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// Taking the row locks in id order means there was no deadlock
			// for the retry (inTx) to absorb.
			if strings.Contains(srv.stderr.String(), "transaction retried") {
				t.Fatalf("a transaction had to be retried:\n%s", srv.stderr)
			}
			for _, id := range ids {
				req, _ := http.NewRequest("GET", srv.url+"/api/v2/architect/scripts/"+id+"/versions?pageSize=100", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var page struct {
					Total int `json:"total"`
				}
				json.NewDecoder(res.Body).Decode(&page)
				res.Body.Close()
				if res.StatusCode != 200 || page.Total != writers*rounds {
					t.Fatalf("%s: versions %d, total %d; want %d", id, res.StatusCode, page.Total, writers*rounds)
				}
			}
		})
	}
}
