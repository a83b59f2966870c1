-- The revocation generation (sqlstore.TokenCache): one row, incremented
-- by every transaction that takes a token's validity away (a revoked
-- token, a deleted client, a rotated secret), so that every process on
-- this file stops using the tokens it has cached at once.
CREATE TABLE auth_generation (
	one INTEGER PRIMARY KEY CHECK (one = 1),
	gen INTEGER NOT NULL
);
INSERT INTO auth_generation (one, gen) VALUES (1, 0);
