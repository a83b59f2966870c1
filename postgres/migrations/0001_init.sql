-- Orgs are tenants; a name is unique.
CREATE TABLE orgs (
	id         text PRIMARY KEY,
	name       text NOT NULL UNIQUE,
	created_at timestamptz NOT NULL
);

CREATE TABLE users (
	seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id     text NOT NULL UNIQUE,
	org_id text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
	name   text NOT NULL,
	email  text NOT NULL
);
CREATE INDEX users_org ON users (org_id, seq);

-- Clients hold only a PBKDF2 hash of their secret (ratelab.HashSecret).
CREATE TABLE clients (
	id          text PRIMARY KEY,
	org_id      text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
	secret_hash text NOT NULL,
	created_at  timestamptz NOT NULL
);
CREATE INDEX clients_org ON clients (org_id);

-- Tokens are stored as their SHA-256 (ratelab.HashToken) only.
CREATE TABLE tokens (
	hash       text PRIMARY KEY,
	client_id  text NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
	expires_at timestamptz NOT NULL,
	created_at timestamptz NOT NULL
);
CREATE INDEX tokens_expiry ON tokens (expires_at);
CREATE INDEX tokens_client ON tokens (client_id);

-- A script's id is unique within its org only, so that another org can
-- PUT the same id without learning that it exists elsewhere. seq gives the
-- creation order that listings use.
CREATE TABLE scripts (
	seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	org_id      text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
	id          text NOT NULL,
	name        text NOT NULL,
	text        text NOT NULL,
	version     bigint NOT NULL,
	created_at  timestamptz NOT NULL,
	modified_at timestamptz NOT NULL,
	UNIQUE (org_id, id)
);
CREATE INDEX scripts_org_seq ON scripts (org_id, seq);

-- Every accepted write of a script is one row here.
CREATE TABLE script_versions (
	script_seq bigint NOT NULL REFERENCES scripts (seq) ON DELETE CASCADE,
	version    bigint NOT NULL,
	name       text NOT NULL,
	text       text NOT NULL,
	created_at timestamptz NOT NULL,
	client_id  text NOT NULL DEFAULT '',
	PRIMARY KEY (script_seq, version)
);
