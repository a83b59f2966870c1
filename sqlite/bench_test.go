package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ratelab"
)

// benchText is the script text that every benchmark writes, so that the
// raw insert and the store write the same payload.
var benchText = strings.Repeat("say hello; ", 20)

// BenchmarkRawInsert is the physical reference for the store's write
// benchmarks: one durable single-row INSERT transaction per iteration, on
// a connection with the store's own settings (WAL, synchronous=FULL,
// BEGIN IMMEDIATE). No store can acknowledge durable writes one at a time
// faster than this on the same disk.
func BenchmarkRawInsert(b *testing.B) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", writeDSN(filepath.Join(b.TempDir(), "raw.db"), 5*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE raw (id INTEGER PRIMARY KEY, text TEXT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO raw (text) VALUES (?)`, benchText); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}

func benchStore(b *testing.B) (*DB, string) {
	b.Helper()
	db, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	org, err := db.EnsureOrg(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	return db, org.ID
}

// BenchmarkPutScript measures one acknowledged (durable) PUT of the same
// script per iteration: a read of the current version, the update and a
// new version row in one transaction.
func BenchmarkPutScript(b *testing.B) {
	ctx := context.Background()
	db, orgID := benchStore(b)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, _, err := db.PutScript(ctx, orgID, ratelab.ScriptUpdate{ID: "hot", Name: "hot", Text: benchText}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}

// BenchmarkPutScriptParallel is BenchmarkPutScript from concurrent
// goroutines, each on its own script: writers queue for the single write
// connection, so throughput stays near the sequential figure.
func BenchmarkPutScriptParallel(b *testing.B) {
	ctx := context.Background()
	db, orgID := benchStore(b)
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		id := ratelab.NewID()
		for pb.Next() {
			if _, _, err := db.PutScript(ctx, orgID, ratelab.ScriptUpdate{ID: id, Name: "p", Text: benchText}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}

// BenchmarkUpdateScripts measures bulk updates of 50 scripts in one
// transaction (one fsync), reported per script written: the reason
// batching is the cheap path.
func BenchmarkUpdateScripts(b *testing.B) {
	ctx := context.Background()
	db, orgID := benchStore(b)
	upds := make([]ratelab.ScriptUpdate, 50)
	for i := range upds {
		upds[i] = ratelab.ScriptUpdate{ID: fmt.Sprintf("bulk-%02d", i), Name: "bulk", Text: benchText}
	}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		res, err := db.UpdateScripts(ctx, orgID, upds)
		if err != nil {
			b.Fatal(err)
		}
		if res[49].Err != nil {
			b.Fatal(res[49].Err)
		}
	}
	b.ReportMetric(float64(b.N*len(upds))/time.Since(start).Seconds(), "writes/s")
}
