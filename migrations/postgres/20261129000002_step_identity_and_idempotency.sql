-- A step is identified by its content, not by (UUID, event type, timestamp): streamed chunks can
-- share all three and still differ. content_hash is the first 16 bytes of the SHA-256 of the
-- step as stored (its rendered JSON), occurrence counts identical steps within a request
-- (1, 2, ...), so exact duplicates are kept while a retried batch finds every step already there.
-- Existing rows were unique by (UUID, type, timestamp), so no two of them have the same content.
ALTER TABLE steps
    ADD COLUMN content_hash bytea,
    ADD COLUMN occurrence integer NOT NULL DEFAULT 1;
UPDATE steps SET content_hash = substring(sha256(convert_to(body, 'UTF8')) FROM 1 FOR 16);
ALTER TABLE steps ALTER COLUMN content_hash SET NOT NULL;
DROP INDEX steps_identity;
CREATE UNIQUE INDEX steps_identity ON steps (run_id, request_number, content_hash, occurrence);

-- Idempotency-Key (IETF httpapi draft): the first outcome of a keyed request, replayed to a retry
-- with the same key and body. scope names the operation (and, for appends, the run) and the
-- client's API key, so keys never collide across them. Rows older than the server's window go.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    fingerprint  bytea NOT NULL,
    run_id       uuid NOT NULL,
    -- The run record and the batch's outcome as the first response showed them (JSON).
    record       text NOT NULL,
    outcome      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
