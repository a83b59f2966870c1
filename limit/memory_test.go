package limit_test

import (
	"testing"

	"ratelab/limit"
	"ratelab/limit/limittest"
)

func TestMemoryConformance(t *testing.T) {
	limittest.Run(t, func(t *testing.T) limit.Store {
		s := limit.NewMemoryStore(limit.MemoryConfig{})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestMemoryConformanceOneShard(t *testing.T) {
	// One shard forces every tier of a decision into the same lock.
	limittest.Run(t, func(t *testing.T) limit.Store {
		return limit.NewMemoryStore(limit.MemoryConfig{Shards: 1})
	})
}
