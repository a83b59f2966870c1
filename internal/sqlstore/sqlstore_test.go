package sqlstore

import (
	"fmt"
	"testing"

	"ratelab"
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
