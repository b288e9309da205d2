-- +goose Up
-- links holds share links. The secret token is never stored, only its
-- SHA-256 digest, which is what redemption and anonymous checks look up.
-- max_uses NULL means unlimited redemptions.
CREATE TABLE links (
    id          text        PRIMARY KEY,
    token_hash  bytea       NOT NULL UNIQUE,
    resource    text        NOT NULL,
    org         text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('viewer', 'editor')),
    audience    text        NOT NULL CHECK (audience IN ('anyone', 'org')),
    expires_at  timestamptz,
    max_uses    integer     CHECK (max_uses BETWEEN 1 AND 1000000),
    uses        integer     NOT NULL DEFAULT 0 CHECK (uses >= 0),
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    state       text        NOT NULL CHECK (state IN ('active', 'revoked', 'expired')),
    ended_at    timestamptz,
    CHECK (max_uses IS NULL OR uses <= max_uses)
);
CREATE INDEX links_resource ON links (resource, id);
CREATE INDEX links_active_expiry ON links (expires_at) WHERE state = 'active' AND expires_at IS NOT NULL;

-- link_redemptions holds the users who redeemed each link, one row per
-- user, so that redeeming twice counts once.
CREATE TABLE link_redemptions (
    link_id     text        NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    principal   text        NOT NULL,
    redeemed_at timestamptz NOT NULL,
    PRIMARY KEY (link_id, principal)
);

-- +goose Down
DROP TABLE link_redemptions;
DROP TABLE links;
