-- Step identity by content and Idempotency-Key; see the PostgreSQL migration of the same name.
-- SQLite has no SHA-256, so the server fills content_hash of the rows already stored when it
-- opens the database (SqliteStore::backfill_content_hashes); NULLs are distinct in a unique
-- index, so the index holds meanwhile.
ALTER TABLE steps ADD COLUMN content_hash BLOB;
ALTER TABLE steps ADD COLUMN occurrence INTEGER NOT NULL DEFAULT 1;
DROP INDEX steps_identity;
CREATE UNIQUE INDEX steps_identity ON steps (run_id, request_number, content_hash, occurrence);

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  BLOB NOT NULL,
    run_id       BLOB NOT NULL,
    record       TEXT NOT NULL,
    outcome      TEXT,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
