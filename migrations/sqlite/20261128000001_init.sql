-- agentprof schema, SQLite (the embedded default store). Landed migrations are never edited.
-- Mirrors migrations/postgres: uuid as 16-byte BLOB, timestamps as unix microseconds, JSON as TEXT.

CREATE TABLE runs (
    id              BLOB PRIMARY KEY,
    name            TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    version         INTEGER NOT NULL DEFAULT 0,
    profiler_config TEXT NOT NULL DEFAULT '{}',
    metadata        TEXT NOT NULL DEFAULT '{}',
    request_count   INTEGER NOT NULL DEFAULT 0,
    step_count      INTEGER NOT NULL DEFAULT 0,
    next_seq        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_newest_first ON runs (created_at DESC, id DESC);

CREATE TABLE requests (
    run_id          BLOB NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    request_number  INTEGER NOT NULL,
    external_id     TEXT,
    PRIMARY KEY (run_id, request_number)
);
CREATE UNIQUE INDEX requests_by_external_id ON requests (run_id, external_id) WHERE external_id IS NOT NULL;

CREATE TABLE steps (
    run_id               BLOB NOT NULL,
    request_number       INTEGER NOT NULL,
    seq                  INTEGER NOT NULL,
    event_type           INTEGER NOT NULL,
    event_timestamp      REAL NOT NULL,
    uuid                 BLOB NOT NULL,
    name                 BLOB,
    framework            INTEGER,
    function_name        BLOB,
    function_id          BLOB,
    parent_name          BLOB,
    parent_id            BLOB,
    prompt_tokens        INTEGER NOT NULL,
    completion_tokens    INTEGER NOT NULL,
    total_tokens         INTEGER NOT NULL,
    seconds_between_calls INTEGER NOT NULL,
    text_value           BLOB,
    body                 TEXT NOT NULL,
    PRIMARY KEY (run_id, request_number, seq),
    FOREIGN KEY (run_id, request_number) REFERENCES requests (run_id, request_number) ON DELETE CASCADE
);
CREATE UNIQUE INDEX steps_identity ON steps (run_id, request_number, uuid, event_type, event_timestamp);
