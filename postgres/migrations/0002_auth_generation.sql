-- The revocation generation (sqlstore.TokenCache): one row, incremented
-- by every transaction that takes a token's validity away (a revoked
-- token, a deleted client, a rotated secret), with a NOTIFY on channel
-- ratelab_auth.
CREATE TABLE auth_generation (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	gen bigint NOT NULL
);
INSERT INTO auth_generation (one, gen) VALUES (true, 0);

-- Each replica that caches tokens holds a lease here and acknowledges the
-- generation it has applied; a revoking transaction, once committed, waits
-- until every unexpired lease has acknowledged its generation.
CREATE TABLE auth_listeners (
	id         text PRIMARY KEY,
	gen        bigint NOT NULL,
	expires_at timestamptz NOT NULL
);
