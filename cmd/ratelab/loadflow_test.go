package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// A YAML flow runs through "ratelab load": its groups, transactions and
// extractors, with the summary and a JTL written as for a scenario.
func TestLoadFlowFile(t *testing.T) {
	var logins, withToken atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			logins.Add(1)
			w.Write([]byte(`{"token":"t1"}`))
		default:
			if r.URL.Query().Get("token") == "t1" {
				withToken.Add(1)
			}
			w.Write([]byte("ok"))
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	flow := filepath.Join(dir, "flow.yaml")
	os.WriteFile(flow, []byte(`name: login flow
base_url: `+srv.URL+`
threads: 2
loops: 3
steps:
  - once_only: {steps: [{request: {name: login, url: /login, extract: [{jsonpath: {var: token, expr: $.token}}]}}]}
  - transaction:
      name: browse
      steps:
        - request: {name: page, url: '/page?token={{.token}}'}
`), 0o644)
	jtl := filepath.Join(dir, "out.jtl")
	code, out, errOut := runCmd(t, "load", flow, "--jtl", jtl, "--progress", "0")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if logins.Load() != 2 || withToken.Load() != 6 {
		t.Fatalf("logins %d, pages with the extracted token %d of 6", logins.Load(), withToken.Load())
	}
	b, err := os.ReadFile(jtl)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), ",browse,"); n != 6 {
		t.Fatalf("%d transaction samples in the JTL, want 6:\n%s", n, b)
	}
	// A bad flow names its line and field.
	os.WriteFile(flow, []byte("loops: 1\nsteps:\n  - request: {name: x}\n"), 0o644)
	if code, _, errOut := runCmd(t, "load", flow); code == 0 || !strings.Contains(errOut, "flow.yaml: line 3: steps[0].request.url: required") {
		t.Fatalf("exit %d, %s", code, errOut)
	}
}
