-- Compact steps (issue: past one machine). A step's profiler columns and its rendered body move
-- into one zstd-compressed value, `packed` (docs/storage.md and src/store/packed.rs say why and
-- how). A row keeps in plain columns only its key, its event type (which the rollups filter on)
-- and its identity.
--
-- PostgreSQL cannot run zstd, so the steps already stored are packed by the server when it
-- starts, which then empties their old columns. Those columns stay, NULL for every step packed:
-- an empty column costs a row one bit of its null bitmap.
ALTER TABLE steps ADD COLUMN packed bytea;
ALTER TABLE steps
    ALTER COLUMN event_timestamp DROP NOT NULL,
    ALTER COLUMN uuid DROP NOT NULL,
    ALTER COLUMN prompt_tokens DROP NOT NULL,
    ALTER COLUMN completion_tokens DROP NOT NULL,
    ALTER COLUMN total_tokens DROP NOT NULL,
    ALTER COLUMN seconds_between_calls DROP NOT NULL,
    ALTER COLUMN body DROP NOT NULL;
-- One index instead of two: the step's identity becomes the primary key. A run's steps are read
-- in request order through it, and each request's steps put in `seq` order by the reader.
ALTER TABLE steps DROP CONSTRAINT steps_pkey;
ALTER TABLE steps ADD CONSTRAINT steps_identity PRIMARY KEY USING INDEX steps_identity;
-- Already compressed: PostgreSQL's own compression of a long value would only cost time.
ALTER TABLE steps ALTER COLUMN packed SET STORAGE EXTERNAL;

-- The steps still to pack, for the pass each server makes at start: empty once they are packed,
-- so that the pass finds nothing at once instead of reading the whole table.
CREATE INDEX steps_unpacked ON steps (run_id, request_number, content_hash, occurrence)
    WHERE packed IS NULL;

-- Dictionaries trained on this database's own steps (src/store/packed.rs, "Trained
-- dictionaries"): a packed step names the one it was compressed with, so a dictionary, once
-- stored, never changes and is never deleted. Not per run: every run of a deployment shares its
-- prompts and tool descriptions. Under Citus it is a reference table.
CREATE TABLE step_dictionaries (
    id          integer PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    -- The steps stored when it was trained: the next one is trained when they have grown
    -- eightfold.
    trained_on  bigint NOT NULL,
    dictionary  bytea NOT NULL
);
