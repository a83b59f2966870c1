package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"ratelab/internal/testenv"
	"ratelab/redis"
)

// TestReplicasOnRedisCluster runs the replica suite (TestReplicas) with
// --redis naming the three-master Redis Cluster of .ci/run: three
// replicas behind nginx, one exact limit across them, kept in the
// cluster. The cluster is shared by every test, so it is not restarted.
func TestReplicasOnRedisCluster(t *testing.T) {
	replicaSuite(t, testenv.RedisClusterURL(t), nil)
}

// spreadOrgs is how many orgs TestOrgsSpreadOverSlots creates: with keys
// hashed at random over three masters, the chance that one master gets
// none is 3·(2/3)^40 < 3·10⁻⁷.
const spreadOrgs = 40

// spreadPolicies are slow, so that one request's keys outlive the test
// (a GCRA key expires when its bucket is full again: here after a minute,
// not after 2.5 ms as at 400/s); the test deletes them at its end.
const spreadPolicies = `policies:
  - name: org-requests
    rate: 1/m
    burst: 100
    scope: org
    classes: [all]
  - name: script-writes-per-script
    rate: 1/m
    burst: 10
    scope: org+script
    classes: [script-writes]
`

// TestOrgsSpreadOverSlots runs two replicas on the Redis Cluster, makes
// spreadOrgs orgs (each with a client, by `ratelab clients create`), has
// each write one script through the replicas, and reads the keys back
// from the cluster's masters: every key of an org lies in the slot of the
// org's hash tag (so no decision is CROSSSLOT), and the orgs' keys are on
// every master.
func TestOrgsSpreadOverSlots(t *testing.T) {
	clusterURL := testenv.RedisClusterURL(t)
	dbURL := testenv.PostgresDatabase(t)
	policyFile := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(policyFile, []byte(spreadPolicies), 0o644); err != nil {
		t.Fatal(err)
	}
	reps := startReplicas(t, 2, "--db", dbURL, "--redis", clusterURL, "--policies", policyFile,
		"--bootstrap-client", "e2e:e2e-secret")

	type org struct{ name, id, clientID, secret string }
	orgs := make([]org, spreadOrgs)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range orgs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("spread-%d", i)
			out, err := exec.Command(ratelabBin, "clients", "create", "--org", name, "--db", dbURL).Output()
			var c struct {
				OrgID        string `json:"org_id"`
				ClientID     string `json:"client_id"`
				ClientSecret string `json:"client_secret"`
			}
			if err == nil {
				err = json.Unmarshal(out, &c)
			}
			if err != nil || c.OrgID == "" || c.ClientID == "" {
				t.Errorf("clients create --org %s: %v, output %q", name, err, out)
			}
			orgs[i] = org{name, c.OrgID, c.ClientID, c.ClientSecret}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	hc := loadClient()
	defer hc.CloseIdleConnections()
	for i, o := range orgs {
		base := reps[i%len(reps)].url
		token := clientToken(t, hc, base, o.clientID, o.secret)
		req, _ := putScript(base, "s1", 0, token)
		if status, body, err := do(hc, req); err != nil || status != http.StatusCreated {
			t.Fatalf("org %s: PUT: status %d, error %v, body %s", o.name, status, err, body)
		}
	}

	c, err := redis.NewClient(clusterURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc := c.(*goredis.ClusterClient)
	ctx := context.Background()
	// The keys of each org, by master; every org's ID appears in its keys'
	// hash tag (redis/doc.go: <prefix>{<group>}<policy>\x00<key>).
	var mu sync.Mutex
	perMaster := map[string]map[string]bool{} // master → org IDs
	slots := map[int64]bool{}
	keysOf := map[string]int{}
	err = cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		for _, o := range orgs {
			keys, err := node.Keys(ctx, redis.DefaultPrefix+"{"+o.id+"}*").Result()
			if err != nil {
				return err
			}
			want, err := node.ClusterKeySlot(ctx, o.id).Result()
			if err != nil {
				return err
			}
			for _, k := range keys {
				defer node.Del(context.Background(), k)
				slot, err := node.ClusterKeySlot(ctx, k).Result()
				if err != nil {
					return err
				}
				if slot != want {
					t.Errorf("org %s: key %q in slot %d, not its org's %d", o.name, k, slot, want)
				}
			}
			mu.Lock()
			if len(keys) > 0 {
				if perMaster[node.Options().Addr] == nil {
					perMaster[node.Options().Addr] = map[string]bool{}
				}
				perMaster[node.Options().Addr][o.id] = true
				slots[want] = true
			}
			keysOf[o.id] += len(keys)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range orgs {
		// org-requests and script-writes-per-script: two keys, one slot.
		if keysOf[o.id] != 2 {
			t.Errorf("org %s (%s): %d keys in the cluster, want 2 (org-requests and script-writes-per-script)", o.name, o.id, keysOf[o.id])
		}
	}
	counts := map[string]int{}
	for addr, ids := range perMaster {
		counts[addr] = len(ids)
	}
	t.Logf("%d orgs over %d slots; orgs per master: %v", len(orgs), len(slots), counts)
	if len(perMaster) != 3 {
		t.Errorf("orgs' keys on %d masters, want all 3: %v", len(perMaster), counts)
	}
}

// clientToken gets a bearer token for client id through base.
func clientToken(t *testing.T, hc *http.Client, base, id, secret string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, body, err := do(hc, req)
	if err != nil || status != http.StatusOK {
		t.Fatalf("token for %s: status %d, error %v, body %s", id, status, err, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token for %s: body %s", id, body)
	}
	return tok.AccessToken
}
