package testenv

import (
	"fmt"
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
	bin, err := BuildRatelabIn(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// BuildRatelabIn builds the ratelab command into dir and returns the
// binary's path, for a TestMain or a sync.Once that shares one binary
// among a package's tests (the link alone takes seconds).
func BuildRatelabIn(dir string) (string, error) {
	bin := filepath.Join(dir, "ratelab")
	if out, err := exec.Command("go", "build", "-o", bin, "ratelab/cmd/ratelab").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ratelab/cmd/ratelab: %v\n%s", err, out)
	}
	return bin, nil
}
