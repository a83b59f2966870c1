-- Orgs are tenants; a name is unique.
CREATE TABLE orgs (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	created_at INTEGER NOT NULL -- Unix microseconds, UTC
);

CREATE TABLE users (
	seq    INTEGER PRIMARY KEY AUTOINCREMENT,
	id     TEXT NOT NULL UNIQUE,
	org_id TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
	name   TEXT NOT NULL,
	email  TEXT NOT NULL
);
CREATE INDEX users_org ON users (org_id, seq);

-- Clients hold only a PBKDF2 hash of their secret (ratelab.HashSecret).
CREATE TABLE clients (
	id          TEXT PRIMARY KEY,
	org_id      TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
	secret_hash TEXT NOT NULL,
	created_at  INTEGER NOT NULL
);

-- Tokens are stored as their SHA-256 (ratelab.HashToken) only.
CREATE TABLE tokens (
	hash       TEXT PRIMARY KEY,
	client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
	expires_at INTEGER NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX tokens_expiry ON tokens (expires_at);

-- A script's id is unique within its org only, so that another org can
-- PUT the same id without learning that it exists elsewhere. seq gives the
-- creation order that listings use.
CREATE TABLE scripts (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	org_id      TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
	id          TEXT NOT NULL,
	name        TEXT NOT NULL,
	text        TEXT NOT NULL,
	version     INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	modified_at INTEGER NOT NULL,
	UNIQUE (org_id, id)
);

-- Every accepted write of a script is one row here.
CREATE TABLE script_versions (
	script_seq INTEGER NOT NULL REFERENCES scripts (seq) ON DELETE CASCADE,
	version    INTEGER NOT NULL,
	name       TEXT NOT NULL,
	text       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	client_id  TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (script_seq, version)
) WITHOUT ROWID;
