package redis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab/internal/testenv"
	"ratelab/limit"
)

func TestNewClientURLs(t *testing.T) {
	for _, tc := range []struct {
		url     string
		cluster bool
		err     string
	}{
		{url: "redis://127.0.0.1:6379/2"},
		{url: "rediss://user:pw@127.0.0.1:6380"},
		{url: "redis://127.0.0.1:7001?addr=127.0.0.1:7002&addr=127.0.0.1:7003", cluster: true},
		{url: "http://127.0.0.1:6379", err: "want a redis:// or rediss:// URL"},
		{url: "127.0.0.1:6379", err: "want a redis:// or rediss:// URL"},
		{url: "redis://127.0.0.1:6379/x", err: "invalid"},
	} {
		c, err := NewClient(tc.url)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one containing %q", tc.url, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if _, isCluster := c.(*goredis.ClusterClient); isCluster != tc.cluster {
			t.Errorf("%s: %T, want cluster=%v", tc.url, c, tc.cluster)
		}
		c.Close()
	}
}

// TestClusterSpread decides for many orgs on the three-master Redis
// Cluster of .ci/run and checks where the keys went: every key of one
// decision in its group's slot (one hash tag per decision, so no
// CROSSSLOT), and the orgs spread over every master.
func TestClusterSpread(t *testing.T) {
	c, err := NewClient(testenv.RedisClusterURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc := c.(*goredis.ClusterClient)
	s := newStore(t, Config{Client: cc})
	org := &limit.Policy{Name: "org", Rate: limit.Per(100, time.Second), Burst: 100}
	script := &limit.Policy{Name: "script", Rate: limit.Per(1, time.Second), Burst: 2}
	ctx := context.Background()
	const orgs = 60
	for i := range orgs {
		g := fmt.Sprintf("org-%d", i)
		req := &limit.Request{Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: org, Key: g}, {Policy: script, Key: g + "/s1"}}}
		var d limit.Decision
		if err := s.Decide(ctx, req, &d); err != nil || !d.Allowed {
			t.Fatalf("%s: allowed=%v err=%v", g, d.Allowed, err)
		}
	}
	if s.Degraded() {
		t.Fatal("store degraded on the cluster")
	}
	// ForEachMaster calls fn on every master concurrently: mu guards the maps.
	var mu sync.Mutex
	perMaster := map[string]int{}
	groups := map[string]bool{}
	err = cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		keys, err := node.Keys(ctx, s.prefix+"*").Result()
		if err != nil {
			return err
		}
		for _, k := range keys {
			slot, err := node.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				return err
			}
			tag := hashTag(k)
			if want, _ := node.ClusterKeySlot(ctx, tag).Result(); slot != want {
				t.Errorf("key %q in slot %d, not its group's %d", k, slot, want)
			}
			mu.Lock()
			groups[tag] = true
			mu.Unlock()
		}
		mu.Lock()
		perMaster[node.Options().Addr] += len(keys)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != orgs {
		t.Errorf("keys of %d groups found, want %d", len(groups), orgs)
	}
	if len(perMaster) < 3 {
		t.Fatalf("masters seen: %v, want three", perMaster)
	}
	for addr, n := range perMaster {
		if n == 0 {
			t.Errorf("master %s holds no key of %d orgs: %v", addr, orgs, perMaster)
		}
	}
	t.Logf("keys per master: %v", perMaster)
}
