package redis

import (
	"errors"
	"net/url"

	goredis "github.com/redis/go-redis/v9"
)

// NewClient returns a client for a Redis URL as `ratelab serve --redis`
// takes it: redis://[USER:PASSWORD@]HOST:PORT[/DB] (or rediss://) for one
// server, and, for a Redis Cluster, the seed nodes as one URL with further
// nodes in addr parameters, redis://HOST:PORT?addr=HOST:PORT&addr=…, the
// form goredis.ParseClusterURL reads. The client honours context
// deadlines (ContextTimeoutEnabled), so that a Store's bound on a round
// trip is go-redis's own and a connection stuck on a frozen server is
// dropped at the deadline. The caller closes the client.
func NewClient(rawURL string) (goredis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return nil, errors.New("want a redis:// or rediss:// URL")
	}
	if u.Query().Has("addr") {
		opts, err := goredis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, err
		}
		opts.ContextTimeoutEnabled = true
		return goredis.NewClusterClient(opts), nil
	}
	opts, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	opts.ContextTimeoutEnabled = true
	return goredis.NewClient(opts), nil
}
