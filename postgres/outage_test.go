package postgres_test

import (
	"context"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"ratelab"
	"ratelab/internal/testenv"
	"ratelab/postgres"
)

// TestOutage cuts the store off its PostgreSQL: every operation fails
// with EUNAVAILABLE (for a 503 with Retry-After, not a 500) without
// internal detail in its message; the outage is logged once, not once per
// failure; and when the database is back, the store logs so with the
// count of failures and works again.
func TestOutage(t *testing.T) {
	ctx := context.Background()
	u, err := url.Parse(schemaURL(t, testDatabase(t), "outage"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewCutProxy(t, u.Host)
	u.Host = proxy.Addr()
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	logs := &testenv.LogBuffer{}
	db, err := postgres.Open(ctx, u.String(), postgres.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	org, err := db.EnsureOrg(ctx, "outage")
	if err != nil {
		t.Fatal(err)
	}
	c, secret, err := db.CreateClient(ctx, org.ID, "", "")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := db.IssueToken(ctx, c, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "s", Name: "n"}); err != nil {
		t.Fatal(err)
	}

	proxy.Cut()
	ops := []struct {
		name string
		do   func(context.Context) error
	}{
		{"FindScript", func(ctx context.Context) error { _, err := db.FindScript(ctx, org.ID, "s"); return err }},
		{"PutScript", func(ctx context.Context) error {
			_, _, err := db.PutScript(ctx, org.ID, ratelab.ScriptUpdate{ID: "s", Name: "n"})
			return err
		}},
		{"UpdateScripts", func(ctx context.Context) error {
			_, err := db.UpdateScripts(ctx, org.ID, []ratelab.ScriptUpdate{{ID: "s", Name: "n"}})
			return err
		}},
		{"FindScripts", func(ctx context.Context) error { _, _, err := db.FindScripts(ctx, org.ID, ratelab.Page{}); return err }},
		{"Authenticate", func(ctx context.Context) error { _, err := db.Authenticate(ctx, c.ID, secret); return err }},
		{"ValidateToken", func(ctx context.Context) error { _, err := db.ValidateToken(ctx, tok, time.Now()); return err }},
		{"Ping", db.Ping},
	}
	failures := 0
	for round := range 3 {
		for _, op := range ops {
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := op.do(octx)
			cancel()
			if ratelab.ErrorCode(err) != ratelab.EUNAVAILABLE {
				t.Fatalf("round %d, %s with the database cut off: %v (code %q), want code %q", round, op.name, err, ratelab.ErrorCode(err), ratelab.EUNAVAILABLE)
			}
			if msg := ratelab.ErrorMessage(err); strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "postgres") {
				t.Fatalf("%s: message %q shows internal detail", op.name, msg)
			}
			failures++
		}
	}
	if n := strings.Count(logs.String(), "database unavailable"); n != 1 {
		t.Fatalf("%d failures logged %d outage lines, want 1:\n%s", failures, n, logs)
	}

	proxy.Restore()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "database available again") {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery logged within 15 s:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if want := "failures=" + strconv.Itoa(failures); !strings.Contains(logs.String(), want) {
		t.Fatalf("recovery line lacks %q:\n%s", want, logs)
	}
	if _, err := db.FindScript(ctx, org.ID, "s"); err != nil {
		t.Fatalf("FindScript after the database is back: %v", err)
	}
	if strings.Count(logs.String(), "level=ERROR") != 1 {
		t.Fatalf("want exactly one ERROR line for the outage:\n%s", logs)
	}
}
