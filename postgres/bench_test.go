package postgres_test

import (
	"context"
	"strings"
	"testing"

	"ratelab"
	"ratelab/postgres"
)

// BenchmarkPutScript measures one committed PUT of the same script per
// iteration on PostgreSQL (synchronous_commit as the server is set).
func BenchmarkPutScript(b *testing.B) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, schemaURL(b, testDatabase(b), "bench"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	org, err := db.EnsureOrg(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat("say hello; ", 20)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := db.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "hot", Name: "hot", Text: text}); err != nil {
			b.Fatal(err)
		}
	}
}
