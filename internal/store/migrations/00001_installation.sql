-- +goose Up
-- installation holds one row that identifies this Gatehouse database.
CREATE TABLE installation (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    singleton  boolean     NOT NULL DEFAULT true UNIQUE CHECK (singleton),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO installation DEFAULT VALUES;

-- schema_writes records each SpiceDB schema that an instance wrote at
-- start-up, so an operator can tell which version of the model is live.
CREATE TABLE schema_writes (
    schema_sha256 text        NOT NULL,
    written_at    timestamptz NOT NULL DEFAULT now(),
    version       text        NOT NULL,
    PRIMARY KEY (schema_sha256)
);

-- +goose Down
DROP TABLE schema_writes;
DROP TABLE installation;
