-- +goose Up
-- grants holds temporary grants. SpiceDB enforces a grant's end by itself
-- (the role relationship expires); this table records each grant's state
-- so that the scheduler can start scheduled grants, record ends and revoke
-- grants across restarts.
CREATE TABLE grants (
    id          text        PRIMARY KEY,
    resource    text        NOT NULL,
    subject     text        NOT NULL,
    role        text        NOT NULL,
    org         text        NOT NULL,
    not_before  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL CHECK (expires_at > not_before),
    grantor     text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('scheduled', 'active', 'expired', 'revoked')),
    break_glass boolean     NOT NULL DEFAULT false,
    reason      text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX grants_due_start ON grants (not_before) WHERE state = 'scheduled';
CREATE INDEX grants_due_end ON grants (expires_at) WHERE state = 'active';
CREATE INDEX grants_resource ON grants (resource, id);
CREATE INDEX grants_subject ON grants (subject, id);
CREATE INDEX grants_grantor ON grants (grantor, id);
CREATE INDEX grants_break_glass ON grants (id) WHERE break_glass;

-- +goose Down
DROP TABLE grants;
