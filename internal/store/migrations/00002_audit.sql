-- +goose Up
-- audit_entries is the hash-chained audit log: one chain per org (and one
-- named "platform"), events and their outcomes interleaved. Rows are never
-- updated or deleted; the triggers below enforce it.
CREATE TABLE audit_entries (
    -- position orders all entries in commit order: appends take a global
    -- lock before they draw it, so a reader paging by position never skips
    -- an entry that commits later.
    position          bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                text        PRIMARY KEY,
    chain             text        NOT NULL,
    seq               bigint      NOT NULL,
    time              timestamptz NOT NULL,
    kind              text        NOT NULL CHECK (kind IN ('event', 'outcome')),
    actor_principal   text        NOT NULL DEFAULT '',
    actor_issuer      text        NOT NULL DEFAULT '',
    actor_token_id    text        NOT NULL DEFAULT '',
    on_behalf_of      text        NOT NULL DEFAULT '',
    action            text        NOT NULL DEFAULT '',
    resource          text        NOT NULL DEFAULT '',
    subject           text        NOT NULL DEFAULT '',
    before            jsonb,
    after             jsonb,
    reason            text        NOT NULL DEFAULT '',
    client_ip         text        NOT NULL DEFAULT '',
    user_agent        text        NOT NULL DEFAULT '',
    request_id        text        NOT NULL DEFAULT '',
    break_glass       boolean     NOT NULL DEFAULT false,
    consistency_token text        NOT NULL DEFAULT '',
    event_id          text        NOT NULL DEFAULT '',
    outcome           text        NOT NULL DEFAULT '',
    prev_hash         text        NOT NULL,
    hash              text        NOT NULL,
    UNIQUE (chain, seq)
);
CREATE INDEX audit_entries_outcome_of ON audit_entries (event_id) WHERE kind = 'outcome';
CREATE INDEX audit_entries_resource ON audit_entries (resource, position) WHERE kind = 'event';
CREATE INDEX audit_entries_actor ON audit_entries (actor_principal, position) WHERE kind = 'event';
CREATE INDEX audit_entries_chain_position ON audit_entries (chain, position) WHERE kind = 'event';

-- audit_heads records the end of each chain, so that removing entries from
-- the end of a chain is detected too.
CREATE TABLE audit_heads (
    chain text   PRIMARY KEY,
    seq   bigint NOT NULL,
    hash  text   NOT NULL
);

-- +goose StatementBegin
CREATE FUNCTION audit_entries_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'GHA01';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_entries_append_only
    BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_entries_reject_change();
CREATE TRIGGER audit_entries_no_truncate
    BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_reject_change();

-- +goose Down
DROP TABLE audit_heads;
DROP TABLE audit_entries;
DROP FUNCTION audit_entries_reject_change();
