-- Time windows: each request's start (its earliest step time) and what its steps weigh, kept
-- current by ingest, so that a window's requests are found by an index and its memory is
-- estimated before any step is read.
--   started_at   the earliest event_timestamp of the request's steps (NULL without steps)
--   step_count   its steps
--   column_bytes the bytes of the step columns a loaded frame keeps per step (uuid, name,
--                text_value, step_parent_id)
--   body_bytes   the bytes of its steps' bodies (what an export parsing them reads)
ALTER TABLE requests
    ADD COLUMN started_at double precision,
    ADD COLUMN step_count integer NOT NULL DEFAULT 0,
    ADD COLUMN column_bytes bigint NOT NULL DEFAULT 0,
    ADD COLUMN body_bytes bigint NOT NULL DEFAULT 0;
UPDATE requests r SET
    started_at = s.started_at, step_count = s.step_count,
    column_bytes = s.column_bytes, body_bytes = s.body_bytes
FROM (SELECT run_id, request_number, MIN(event_timestamp) AS started_at, COUNT(*) AS step_count,
             SUM(length(uuid) + COALESCE(length(name), 0) + COALESCE(length(text_value), 0)
                 + COALESCE(length(step_parent_id), 0)) AS column_bytes,
             SUM(octet_length(body)) AS body_bytes
      FROM steps GROUP BY run_id, request_number) s
WHERE r.run_id = s.run_id AND r.request_number = s.request_number;
-- A window's requests, with what the memory estimate sums, without reading the table.
CREATE INDEX requests_by_start ON requests (run_id, started_at)
    INCLUDE (request_number, step_count, column_bytes, body_bytes);
