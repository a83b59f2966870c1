// Package e2e holds end-to-end tests of ratelab as it is deployed: the
// real `ratelab` binary, built once by TestMain, run as several processes
// on one PostgreSQL and one Redis, behind a real nginx.
//
//   - TestReplicas: three `ratelab serve` replicas started at once with one
//     --bootstrap-client, on a redis-server of the test's own, behind nginx
//     (round robin). An org policy flooded through the proxy admits at most
//     burst + rate·t and at least 99 % of the least a limit must admit; a
//     per-script flood loses no write (version = admitted); a Redis restart
//     mid-load gives no 5xx and exact limits afterwards; kill -9 of a
//     replica mid-load loses no acknowledged write and nginx carries on.
//   - TestReplicasOnRedisCluster: the same on the three-master Redis
//     Cluster of .ci/run (RATELAB_REDIS_CLUSTER_URL), without the restart
//     (the cluster is shared).
//   - TestOrgsSpreadOverSlots: forty orgs' decisions through serve land in
//     their org's slot (one hash tag per decision) on all three masters.
//
// The bounds (traffic_test.go) are computed from the requests' send and
// answer instants, and a flood checks that no replica fell back to local
// decisions while it ran (a --redis-timeout too short for a busy machine).
// The suite takes about 30-40 s, most of it the floods and the build.
//
// The tests need PostgreSQL and Redis (RATELAB_POSTGRES_URL names a server
// on which they create a database of their own; they start a redis-server
// of their own, since they restart it), the Redis Cluster, and the nginx
// and redis-server programs. Without them a test is skipped on a
// developer's machine and fails under CI=true or RATELAB_REQUIRE_SERVICES=1
// (see internal/testenv); `bash .ci/run` installs and provides all of them.
//
// Every request goes to 127.0.0.1, and every request loop is bounded in
// count and time.
package e2e
