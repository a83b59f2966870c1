package testenv

import (
	"fmt"
	"os/exec"
	"path/filepath"
)

// BuildRatelab builds the ratelab program (ratelab/cmd/ratelab) into dir
// and returns its path, for tests that run the real binary as a user
// does (`ratelab serve` as the target of a probe, say). It is meant for a
// TestMain or a sync.Once: the build takes seconds even from the cache.
func BuildRatelab(dir string) (string, error) {
	bin := filepath.Join(dir, "ratelab")
	out, err := exec.Command("go", "build", "-o", bin, "ratelab/cmd/ratelab").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ratelab/cmd/ratelab: %v\n%s", err, out)
	}
	return bin, nil
}
