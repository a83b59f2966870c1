package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"ratelab"
	"ratelab/internal/testenv"
)

func TestLockOrder(t *testing.T) {
	upds := []ratelab.ScriptUpdate{{ID: "c"}, {ID: "a", Text: "1"}, {ID: "b"}, {ID: "a", Text: "2"}, {ID: "c", Text: "2"}}
	got := fmt.Sprint(LockOrder(upds))
	// By id; the two items of "a" and of "c" keep their input order.
	if want := "[1 3 2 0 4]"; got != want {
		t.Fatalf("LockOrder = %s, want %s", got, want)
	}
	if got := LockOrder(nil); len(got) != 0 {
		t.Fatalf("LockOrder(nil) = %v", got)
	}
}

func TestOutageErr(t *testing.T) {
	down := errors.New("connection refused")
	probed := make(chan struct{}, 100)
	logs := &testenv.LogBuffer{}
	o := NewOutage(OutageConfig{
		DB: "test", Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Unreachable: func(err error) bool { return errors.Is(err, down) },
		Probe:       func(context.Context) error { probed <- struct{}{}; return nil },
		Interval:    time.Hour, // the probe does not run within this test
	})
	defer o.Close()
	app := ratelab.Errorf(ratelab.ECONFLICT, "script %q is at version 2, not 1", "s")
	if err := o.Err("put script", app); err != app {
		t.Fatalf("Err(application error) = %v, want it unchanged", err)
	}
	if err := o.Err("put script", errors.New("boom")); ratelab.ErrorCode(err) != ratelab.EINTERNAL || err.Error() != "test: put script: boom" {
		t.Fatalf("Err(other) = %v (%s), want an internal error with context", err, ratelab.ErrorCode(err))
	}
	for range 3 {
		if err := o.Err("find script", fmt.Errorf("query: %w", down)); ratelab.ErrorCode(err) != ratelab.EUNAVAILABLE || !errors.Is(err, down) {
			t.Fatalf("Err(unreachable) = %v, want EUNAVAILABLE wrapping the cause", err)
		}
	}
	if n := o.Failures(); n != 3 {
		t.Fatalf("Failures = %d, want 3", n)
	}
	if n := strings.Count(logs.String(), "database unavailable"); n != 1 {
		t.Fatalf("3 failures logged %d outage lines, want 1:\n%s", n, logs)
	}
	if len(probed) != 0 {
		t.Fatal("probed before the interval")
	}
}
