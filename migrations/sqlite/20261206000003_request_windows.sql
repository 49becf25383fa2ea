-- Time windows; see the PostgreSQL migration of the same name.
ALTER TABLE requests ADD COLUMN started_at REAL;
ALTER TABLE requests ADD COLUMN step_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN column_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN body_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE requests SET
    started_at = s.started_at, step_count = s.step_count,
    column_bytes = s.column_bytes, body_bytes = s.body_bytes
FROM (SELECT run_id, request_number, MIN(event_timestamp) AS started_at, COUNT(*) AS step_count,
             SUM(length(uuid) + COALESCE(length(name), 0) + COALESCE(length(text_value), 0)
                 + COALESCE(length(step_parent_id), 0)) AS column_bytes,
             SUM(length(CAST(body AS BLOB))) AS body_bytes
      FROM steps GROUP BY run_id, request_number) AS s
WHERE requests.run_id = s.run_id AND requests.request_number = s.request_number;
-- SQLite has no INCLUDE: the summed columns are trailing key columns instead.
CREATE INDEX requests_by_start
    ON requests (run_id, started_at, request_number, step_count, column_bytes, body_bytes);
