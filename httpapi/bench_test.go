package httpapi_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	_ "modernc.org/sqlite"

	"ratelab/httpapi"
)

// BenchmarkRequestPath serves GET /api/v2/users in-process (no network)
// through the whole server: recovery, metrics, routing, token check,
// limiter, handler, SQLite read. with-limiter takes the usual decision
// over the org and client tiers; without-limiter runs the same server
// with the zero Policies, so the middleware finds no tier and decides
// nothing. The difference is the limiter's cost per request.
func BenchmarkRequestPath(b *testing.B) {
	for _, bc := range []struct {
		name     string
		policies func(b *testing.B) *httpapi.Policies
	}{
		{"without-limiter", func(*testing.B) *httpapi.Policies { return &httpapi.Policies{} }},
		{"with-limiter", func(b *testing.B) *httpapi.Policies { return generous(b) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, nil, options{policies: bc.policies(b)})
			tok := e.token(e.client("bench"))
			req := httptest.NewRequest("GET", "/api/v2/users", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				e.srv.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

// BenchmarkPut measures durable PUT throughput on SQLite over loopback
// (keep-alive connections; c1: one request at a time; c8: 8 at a time,
// each on its own script), beside
// the physical reference: raw single-row INSERT transactions on the same
// kind of database (WAL, synchronous=FULL) on the same disk.
func BenchmarkPut(b *testing.B) {
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("server-loopback-c%d", conc), func(b *testing.B) {
			e := newEnv(b, nil, options{policies: generous(b)})
			tok := e.token(e.client("bench"))
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
			var next atomic.Int64
			put := func(path string) bool {
				req, _ := http.NewRequest("PUT", path, strings.NewReader(`{"name":"bench","text":"hello"}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok)
				res, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return false
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode/100 != 2 {
					b.Errorf("status %d", res.StatusCode)
					return false
				}
				return true
			}
			b.ReportAllocs()
			if conc == 1 {
				path := e.url + "/api/v2/architect/scripts/s0"
				for b.Loop() {
					if !put(path) {
						return
					}
				}
			} else {
				// RunParallel starts SetParallelism × GOMAXPROCS goroutines,
				// each writing its own script.
				b.SetParallelism(max(1, conc/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					path := e.url + "/api/v2/architect/scripts/s" + fmt.Sprint(next.Add(1))
					for pb.Next() {
						if !put(path) {
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
		})
	}
	b.Run("raw-sqlite-insert", func(b *testing.B) {
		dsn := "file:" + filepath.Join(b.TempDir(), "raw.db") + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, text TEXT)`); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := db.ExecContext(ctx, `INSERT INTO t (name, text) VALUES (?, ?)`, "bench", "hello"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
	})
}
