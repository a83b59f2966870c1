package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ratelab/internal/testenv"
)

// generousPolicies never reject the revocation test's requests.
const generousPolicies = `policies:
  - name: client-requests
    rate: 100000/s
    burst: 100000
    scope: client
    classes: [all]
`

// TestRevocationAcrossReplicas runs two `ratelab serve` processes on one
// database (SQLite file, PostgreSQL database), lets both verify (and
// cache) the tokens of three clients many times, then revokes one token
// through POST /oauth/revoke on replica 1, rotates a client and deletes
// another with `ratelab clients` (a third process): each token is refused
// by both replicas as soon as the revocation has returned, and the
// tokens left alone still work.
func TestRevocationAcrossReplicas(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			db := "sqlite:" + filepath.Join(t.TempDir(), "ratelab.db")
			if backend == "postgres" {
				db = testenv.PostgresDatabase(t)
			}
			policies := filepath.Join(t.TempDir(), "policies.yaml")
			if err := os.WriteFile(policies, []byte(generousPolicies), 0o644); err != nil {
				t.Fatal(err)
			}
			reps := startReplicas(t, 2, "--db", db, "--bootstrap-client", "boot:boot-secret", "--policies", policies)
			for _, r := range reps {
				defer r.proc.stop()
			}
			hc := &http.Client{Timeout: 10 * time.Second}
			post := func(base, path, basic, form string) (int, string) {
				t.Helper()
				req, _ := http.NewRequest("POST", base+path, strings.NewReader(form))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				id, secret, _ := strings.Cut(basic, ":")
				req.SetBasicAuth(id, secret)
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatalf("POST %s: %v", path, err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			token := func(basic string) string {
				t.Helper()
				code, body := post(reps[1].url, "/oauth/token", basic, "grant_type=client_credentials")
				var tr struct {
					AccessToken string `json:"access_token"`
				}
				if code != 200 || json.Unmarshal([]byte(body), &tr) != nil {
					t.Fatalf("token for %s: %d %s", basic, code, body)
				}
				return tr.AccessToken
			}
			status := func(base, tok string) int {
				t.Helper()
				req, _ := http.NewRequest("GET", base+"/api/v2/users", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatalf("GET: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			want := func(tok string, code int, what string) {
				t.Helper()
				for i, r := range reps {
					if got := status(r.url, tok); got != code {
						t.Fatalf("%s: replica %d answered %d, want %d", what, i+1, got, code)
					}
				}
			}
			cli := func(args ...string) string {
				t.Helper()
				out, err := exec.Command(ratelabBin, append(append([]string{"clients"}, args...), "--db", db)...).Output()
				if err != nil {
					t.Fatalf("ratelab clients %v: %v", args, err)
				}
				return string(out)
			}
			var created [2]struct {
				ClientID     string `json:"client_id"`
				ClientSecret string `json:"client_secret"`
			}
			for i := range created {
				if err := json.Unmarshal([]byte(cli("create", "--org", "default")), &created[i]); err != nil {
					t.Fatal(err)
				}
			}
			boot := "boot:boot-secret"
			rotated, deleted := created[0].ClientID+":"+created[0].ClientSecret, created[1].ClientID+":"+created[1].ClientSecret
			revoked, kept, tRotated, tDeleted := token(boot), token(boot), token(rotated), token(deleted)
			all := []string{revoked, kept, tRotated, tDeleted}
			// Long enough for a replica to hold its revocation lease
			// (PostgreSQL) and to answer from its cache.
			for start := time.Now(); time.Since(start) < time.Second; {
				for _, tok := range all {
					want(tok, 200, "before the revocations")
				}
			}

			if code, body := post(reps[0].url, "/oauth/revoke", boot, "token="+url.QueryEscape(revoked)); code != 200 {
				t.Fatalf("POST /oauth/revoke: %d %s", code, body)
			}
			want(revoked, 401, "a token revoked through replica 1")
			want(kept, 200, "the client's other token")
			cli("rotate", created[0].ClientID)
			want(tRotated, 401, "a token of a client rotated by `ratelab clients rotate`")
			cli("delete", created[1].ClientID)
			want(tDeleted, 401, "a token of a client deleted by `ratelab clients delete`")
			want(kept, 200, "a token left alone")
		})
	}
}
