-- Idempotency-Keys (SPEC §8), each written in the transaction of the row it created. `scope`
-- is the application's id for chat and message creates, 0 for application creates (ids
-- start at 1). `resource` is the number created (0 for an application); `token` and `name`
-- are a new application's, as created, so that a retry answers the first answer even after
-- a rename. The primary key is what makes instances racing on one key create one row: the
-- writer claims a key (INSERT … ON CONFLICT) before it creates, and a second claim waits for
-- the first transaction, then finds its row. Expired keys are swept oldest first by
-- `created_at`.
CREATE TABLE idempotency_keys (
    scope       bigint NOT NULL,
    key         text   NOT NULL,
    fingerprint bytea  NOT NULL,
    created_at  bigint NOT NULL,
    resource    bigint NOT NULL,
    token       text,
    name        text,
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
