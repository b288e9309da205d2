-- +goose Up
-- auth_versions holds each principal's auth version. A principal without a
-- row is at version 1.
CREATE TABLE auth_versions (
    principal  text        PRIMARY KEY,
    version    bigint      NOT NULL CHECK (version > 1),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- signing_keys holds the keys of Gatehouse's own tokens. The active key
-- has no retired_at; a retired key stays published until every token it
-- signed has expired.
CREATE TABLE signing_keys (
    kid         text        PRIMARY KEY,
    algorithm   text        NOT NULL,
    private_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE auth_versions;
