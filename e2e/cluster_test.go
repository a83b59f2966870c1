package e2e_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab/internal/testenv"
	"ratelab/redis"
)

// TestReplicasOnRedisCluster runs two replicas with --redis naming the
// three-master Redis Cluster of .ci/run and floods one script's write
// limit through both: one limit, exact across them, kept in the cluster.
func TestReplicasOnRedisCluster(t *testing.T) {
	clusterURL := testenv.RedisClusterURL(t)
	dbURL := testDatabase(t)
	policyFile := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(policyFile, []byte(replicaPolicies), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := redis.NewClient(clusterURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc := c.(*goredis.ClusterClient)
	before := countKeys(t, cc, redis.DefaultPrefix+"*")

	reps := startReplicas(t, 2, "--db", dbURL, "--redis", clusterURL, "--policies", policyFile,
		"--bootstrap-client", "e2e:e2e-secret", "--redis-timeout", "1s")
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	token := fetchToken(t, hc, reps[0].url)
	outs := openLoop(hc, 100, 2*time.Second, func(i int) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPut, reps[i%2].url+"/api/v2/architect/scripts/c1",
			strings.NewReader(`{"name":"c","text":"x"}`))
		if err == nil {
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	})
	admitted := checkAdmitted(t, outs, scriptRate, scriptBurst, 0)
	if lo := lowerBound(outs, scriptRate, scriptBurst); float64(admitted) < lo-1 {
		t.Errorf("admitted %d, want at least %.1f − 1", admitted, lo)
	}

	// The org's id is new in this database, so its keys are new in the
	// cluster: there are more keys under serve's prefix than before.
	if after := countKeys(t, cc, redis.DefaultPrefix+"*"); after <= before {
		t.Fatalf("keys under %q: %d before, %d after: the replicas did not decide on the cluster", redis.DefaultPrefix, before, after)
	}
}

// countKeys counts the keys matching pattern on every master of cc.
func countKeys(t *testing.T, cc *goredis.ClusterClient, pattern string) int {
	t.Helper()
	var mu sync.Mutex
	n := 0
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, node *goredis.Client) error {
		ks, err := node.Keys(ctx, pattern).Result()
		mu.Lock()
		n += len(ks)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
