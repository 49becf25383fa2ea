-- Compact steps (issue: past one machine). A step's profiler columns and its rendered body move
-- into one zstd-compressed value, `packed` (docs/storage.md and src/store/packed.rs say why and
-- how). A row keeps in plain columns only its key, its event type (which the rollups filter on)
-- and its identity, whose unique index is the only one: a run's steps are read in request order
-- through it, and each request's steps put in `seq` order by the reader.
--
-- The steps already stored are packed by the server when it starts (SQLite has no zstd), which
-- then empties their old columns; those columns stay, NULL for every step packed. SQLite cannot
-- drop a NOT NULL constraint in place, so the table is rebuilt.
CREATE TABLE steps_compact (
    run_id               BLOB NOT NULL,
    request_number       INTEGER NOT NULL,
    seq                  INTEGER NOT NULL,
    event_type           INTEGER NOT NULL,
    content_hash         BLOB,
    occurrence           INTEGER NOT NULL DEFAULT 1,
    packed               BLOB,
    -- Steps stored before compact steps, until the server packs them.
    event_timestamp      REAL,
    prompt_tokens        INTEGER,
    completion_tokens    INTEGER,
    total_tokens         INTEGER,
    span_event_timestamp REAL,
    cached_tokens        INTEGER,
    uuid                 BLOB,
    name                 BLOB,
    framework            INTEGER,
    function_name        BLOB,
    function_id          BLOB,
    parent_name          BLOB,
    parent_id            BLOB,
    seconds_between_calls INTEGER,
    text_value           BLOB,
    step_parent_id       BLOB,
    body                 TEXT,
    FOREIGN KEY (run_id, request_number) REFERENCES requests (run_id, request_number) ON DELETE CASCADE
);
INSERT INTO steps_compact (run_id, request_number, seq, event_type, event_timestamp, prompt_tokens,
    completion_tokens, total_tokens, span_event_timestamp, cached_tokens, content_hash, occurrence,
    uuid, name, framework, function_name, function_id, parent_name, parent_id,
    seconds_between_calls, text_value, step_parent_id, body)
SELECT run_id, request_number, seq, event_type, event_timestamp, prompt_tokens,
    completion_tokens, total_tokens, span_event_timestamp, cached_tokens, content_hash, occurrence,
    uuid, name, framework, function_name, function_id, parent_name, parent_id,
    seconds_between_calls, text_value, step_parent_id, body
FROM steps;
DROP TABLE steps;
ALTER TABLE steps_compact RENAME TO steps;
CREATE UNIQUE INDEX steps_identity ON steps (run_id, request_number, content_hash, occurrence);

-- The steps still to pack, for the pass each server makes at start: empty once they are packed,
-- so that the pass finds nothing at once instead of reading the whole table.
CREATE INDEX steps_unpacked ON steps (run_id, request_number, content_hash, occurrence)
    WHERE packed IS NULL;

-- Dictionaries trained on this database's own steps (src/store/packed.rs, "Trained
-- dictionaries"): a packed step names the one it was compressed with, so a dictionary, once
-- stored, never changes and is never deleted.
CREATE TABLE step_dictionaries (
    id          INTEGER PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    -- The steps stored when it was trained: the next one is trained when they have grown
    -- eightfold.
    trained_on  INTEGER NOT NULL,
    dictionary  BLOB NOT NULL
);
