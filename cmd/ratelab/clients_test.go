package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ratelab/internal/testenv"
)

// TestClientsManage runs clients list, rotate and delete next to a running
// server on the same database, on SQLite and PostgreSQL: each takes
// effect at once on the server (a rotated or deleted client's tokens are
// refused on the next request).
func TestClientsManage(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			db := "sqlite:" + filepath.Join(t.TempDir(), "r.db")
			if backend == "postgres" {
				db = testenv.PostgresDatabase(t)
			}
			srv := startServe(t, nil, "--addr", "127.0.0.1:0", "--db", db, "--bootstrap-client", "keep-"+backend+"-"+uniqueSuffix()+":keep")
			code, out, errOut := runCmd(t, "clients", "create", "--org", "manage", "--db", db)
			if code != 0 {
				t.Fatalf("clients create: %d %s", code, errOut)
			}
			var c createdClient
			if err := json.Unmarshal([]byte(out), &c); err != nil {
				t.Fatal(err)
			}
			listed := func() map[string]string {
				t.Helper()
				code, out, errOut := runCmd(t, "clients", "list", "--db", db)
				if code != 0 {
					t.Fatalf("clients list: %d %s", code, errOut)
				}
				ids := map[string]string{}
				for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
					var row struct {
						ClientID    string `json:"client_id"`
						OrgID       string `json:"org_id"`
						DateCreated string `json:"dateCreated"`
					}
					if err := json.Unmarshal([]byte(line), &row); err != nil || row.ClientID == "" || row.DateCreated == "" {
						t.Fatalf("clients list line %q: %v", line, err)
					}
					ids[row.ClientID] = row.OrgID
				}
				return ids
			}
			if org, ok := listed()[c.ClientID]; !ok || org != c.OrgID {
				t.Fatalf("clients list lacks %s of org %s", c.ClientID, c.OrgID)
			}
			tok, code := srv.token(c.ClientID, c.ClientSecret)
			if code != 200 || srv.usersStatus(tok) != 200 {
				t.Fatalf("token %d", code)
			}

			code, out, errOut = runCmd(t, "clients", "rotate", c.ClientID, "--db", db)
			var r rotatedClient
			if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.ClientID != c.ClientID || len(r.ClientSecret) < 40 {
				t.Fatalf("clients rotate: %d %q %s", code, out, errOut)
			}
			if st := srv.usersStatus(tok); st != 401 {
				t.Fatalf("a token issued before the rotation: %d, want 401", st)
			}
			if _, code := srv.token(c.ClientID, c.ClientSecret); code != 401 {
				t.Fatalf("old secret after rotation: %d, want 401", code)
			}
			tok, code = srv.token(c.ClientID, r.ClientSecret)
			if code != 200 || srv.usersStatus(tok) != 200 {
				t.Fatalf("new secret: token %d", code)
			}

			if code, _, errOut := runCmd(t, "clients", "delete", c.ClientID, "--db", db); code != 0 || !strings.Contains(errOut, "deleted client") {
				t.Fatalf("clients delete: %d %s", code, errOut)
			}
			if st := srv.usersStatus(tok); st != 401 {
				t.Fatalf("a deleted client's token: %d, want 401", st)
			}
			if _, code := srv.token(c.ClientID, r.ClientSecret); code != 401 {
				t.Fatalf("a deleted client's secret: %d, want 401", code)
			}
			if _, ok := listed()[c.ClientID]; ok {
				t.Fatalf("clients list still shows deleted %s", c.ClientID)
			}
		})
	}
}

// usersStatus answers GET /api/v2/users with the token.
func (r *running) usersStatus(tok string) int {
	r.t.Helper()
	req, _ := http.NewRequest("GET", r.url+"/api/v2/users", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// uniqueSuffix names what a test creates in the shared PostgreSQL database.
func uniqueSuffix() string {
	return strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "-")
}
