-- `chatd import` (SPEC §9). Imported parents may have gaps in their numbers (the old system
-- lost writes), so a parent's count no longer tells its highest number: each keeps both.
-- The writer numbers a new row after the parent's last number, and moves count and last
-- number together; until an import leaves a gap they stay equal, as they were before.
-- The writer reads GREATEST(last, count), so that an instance of an older chatd (which moves
-- only the count) beside a newer one during an upgrade numbers no row twice. Filling every
-- row may take longer than a request's statement timeout on a large database.
SET LOCAL statement_timeout = 0;
ALTER TABLE applications ADD COLUMN last_chat_number bigint NOT NULL DEFAULT 0;
ALTER TABLE chats ADD COLUMN last_message_number bigint NOT NULL DEFAULT 0;
UPDATE applications SET last_chat_number = chats_count;
UPDATE chats SET last_message_number = messages_count;

-- The sources imported into this database, by name (`host:port/database`, no credentials),
-- so that a resumed import goes on only from the same source.
CREATE TABLE import_sources (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text   NOT NULL UNIQUE
);

-- Each step's checkpoint (`step` as the core names it): the last legacy id it went through,
-- and the rows it wrote, both moved in the transaction of each batch.
CREATE TABLE import_checkpoints (
    source  bigint NOT NULL,
    step    text   NOT NULL,
    after   bigint NOT NULL,
    written bigint NOT NULL,
    PRIMARY KEY (source, step)
);

-- Imported applications and chats by legacy id: where a later batch finds a row's parent,
-- and the old counter, compared with the rows when the import is reported.
CREATE TABLE import_applications (
    source         bigint NOT NULL,
    legacy_id      bigint NOT NULL,
    application_id bigint NOT NULL,
    old_count      bigint,
    PRIMARY KEY (source, legacy_id)
);

CREATE TABLE import_chats (
    source         bigint NOT NULL,
    legacy_id      bigint NOT NULL,
    chat_id        bigint NOT NULL,
    application_id bigint NOT NULL,
    old_count      bigint,
    PRIMARY KEY (source, legacy_id)
);

-- Rows of `tbl` whose own number was taken, null or below 1: the renumbering step reads
-- them again, in legacy id order.
CREATE TABLE import_deferred (
    source    bigint NOT NULL,
    tbl       text   NOT NULL,
    legacy_id bigint NOT NULL,
    PRIMARY KEY (source, tbl, legacy_id)
);

-- What a rule did to a row (`kind` as the core names it), written with the row: the report
-- of a resumed import is that of one clean run. `parent` is the parent's legacy id;
-- `old_number` and `new_number` are a renumbered row's.
CREATE TABLE import_notes (
    source     bigint NOT NULL,
    tbl        text   NOT NULL,
    legacy_id  bigint NOT NULL,
    kind       text   NOT NULL,
    parent     bigint,
    old_number bigint,
    new_number bigint,
    PRIMARY KEY (source, tbl, legacy_id, kind)
);
