// Package testenv gives tests the real services they need: the URLs of the
// Redis, Redis Cluster and PostgreSQL servers that .ci/run starts,
// redis-server processes of a test's own (StartRedis) for tests that kill
// or freeze Redis, a TCP proxy (CutProxy) that cuts a test off a real
// server, such as PostgreSQL, that other tests share, the paths of the
// programs (nginx, HAProxy, …) that tests start themselves, and the
// ratelab binary itself, built for tests that run it (BuildRatelab).
//
// A test that needs a service calls RedisURL, RedisClusterURL or PostgresURL. When the
// service is not configured the test is skipped on a developer's machine,
// and fails under CI=true or RATELAB_REQUIRE_SERVICES=1, so that CI can
// never pass by skipping what it should run.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Required reports whether a missing service must fail a test instead of
// skipping it.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("RATELAB_REQUIRE_SERVICES") == "1"
}

// RedisURL returns RATELAB_REDIS_URL, or skips (fails when Required) if it
// is unset.
func RedisURL(t testing.TB) string { return need(t, "RATELAB_REDIS_URL", "Redis") }

// RedisClusterURL returns RATELAB_REDIS_CLUSTER_URL, the Redis Cluster
// that .ci/run starts (three masters; a URL as goredis.ParseClusterURL
// reads it), or skips (fails when Required) if it is unset.
func RedisClusterURL(t testing.TB) string {
	return need(t, "RATELAB_REDIS_CLUSTER_URL", "Redis Cluster")
}

// PostgresURL returns RATELAB_POSTGRES_URL, or skips (fails when Required)
// if it is unset.
func PostgresURL(t testing.TB) string { return need(t, "RATELAB_POSTGRES_URL", "PostgreSQL") }

func need(t testing.TB, env, what string) string {
	t.Helper()
	if u := os.Getenv(env); u != "" {
		return u
	}
	if Required() {
		t.Fatalf("%s is required (CI=true or RATELAB_REQUIRE_SERVICES=1) but %s is not set; run the tests with bash .ci/run", what, env)
	}
	t.Skipf("%s not configured: set %s (bash .ci/run does)", what, env)
	return ""
}

// Program returns the path of the named program (nginx, haproxy,
// redis-server, …), looked up on PATH and then in /usr/sbin and
// /usr/local/sbin, where Debian installs servers; when it is not
// installed the test is skipped, or fails when Required.
func Program(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if Required() {
		t.Fatalf("%s is required (CI=true or RATELAB_REQUIRE_SERVICES=1) but not installed; run the tests with bash .ci/run, which installs it", name)
	}
	t.Skipf("%s is not installed (bash .ci/run installs it)", name)
	return ""
}
