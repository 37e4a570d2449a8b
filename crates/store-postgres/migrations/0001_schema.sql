-- Applications, chats and messages. Numbers come from the parent's count column, read and
-- written under the parent row's lock in the transaction that inserts the row; chats and
-- messages are never deleted, so count and highest number stay equal. The unique
-- constraints are the backstop. Every table carries the application's id, so that one
-- application's rows can live together on one shard.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE TABLE applications (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token       text   NOT NULL,
    name        text   NOT NULL,
    chats_count bigint NOT NULL DEFAULT 0,
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL,
    CONSTRAINT applications_token_key UNIQUE (token)
);

CREATE TABLE chats (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id bigint NOT NULL REFERENCES applications (id),
    number         bigint NOT NULL CHECK (number >= 1),
    messages_count bigint NOT NULL DEFAULT 0,
    created_at     bigint NOT NULL,
    updated_at     bigint NOT NULL,
    CONSTRAINT chats_application_number_key UNIQUE (application_id, number),
    -- The target of messages' key: a message's application is its chat's.
    CONSTRAINT chats_application_id_key UNIQUE (application_id, id)
);

-- `body_norm` is the body as chatd's search normalises it (SPEC §5), written with the row,
-- so a message is searchable the moment its create commits. One key to the chat, with its
-- application: the insert's check then locks the chat row alone, not the application's.
CREATE TABLE messages (
    application_id bigint NOT NULL,
    chat_id        bigint NOT NULL,
    number         bigint NOT NULL CHECK (number >= 1),
    body           text   NOT NULL,
    body_norm      text   NOT NULL,
    -- Its words, for search's whole-word pass (src/search.rs splits keywords alike).
    body_words     text[] GENERATED ALWAYS AS
                   (array_remove(regexp_split_to_array(body_norm, '[^[:alnum:]]+'), '')) STORED,
    created_at     bigint NOT NULL,
    updated_at     bigint NOT NULL,
    PRIMARY KEY (chat_id, number),
    FOREIGN KEY (application_id, chat_id) REFERENCES chats (application_id, id)
);

CREATE INDEX messages_body_norm_trgm ON messages USING gin (body_norm gin_trgm_ops);
CREATE INDEX messages_chat_words ON messages USING gin (chat_id, body_words);
