// Package e2e holds end-to-end tests of ratelab as it is deployed: the
// real `ratelab` binary, built once by TestMain, run as several processes
// on one PostgreSQL and one Redis, behind a real nginx.
//
// The tests need PostgreSQL and Redis (RATELAB_POSTGRES_URL names a server
// on which they create a database of their own; they start a redis-server
// of their own, since they restart it) and the nginx and redis-server
// programs. Without them a test is skipped on a developer's machine and
// fails under CI=true or RATELAB_REQUIRE_SERVICES=1 (see internal/testenv);
// `bash .ci/run` installs and provides all of them.
//
// Every request goes to 127.0.0.1, and every request loop is bounded in
// count and time.
package e2e
