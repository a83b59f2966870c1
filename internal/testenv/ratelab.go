package testenv

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildRatelab builds the ratelab command, without the race detector,
// into a directory of t's and returns the binary's path, for tests that
// run it as the process a user runs. The build cache makes it quick after
// the first time.
func BuildRatelab(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ratelab")
	if out, err := exec.Command("go", "build", "-o", bin, "ratelab/cmd/ratelab").CombinedOutput(); err != nil {
		t.Fatalf("go build ratelab: %v\n%s", err, out)
	}
	return bin
}
