-- Live runs: rollups and retention; see the PostgreSQL migration of the same name.
CREATE TABLE rollups (
    run_id            BLOB NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    minute            INTEGER NOT NULL,
    kind              INTEGER NOT NULL,
    name              BLOB NOT NULL,
    count             INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    latency           BLOB NOT NULL,
    PRIMARY KEY (run_id, minute, kind, name)
);
ALTER TABLE runs ADD COLUMN rollups_ready INTEGER NOT NULL DEFAULT 1;
ALTER TABLE runs ADD COLUMN retention_seconds INTEGER;
UPDATE runs SET rollups_ready = 0;
ALTER TABLE requests ADD COLUMN ended_at REAL;
UPDATE requests SET ended_at = s.ended_at
FROM (SELECT run_id, request_number, MAX(event_timestamp) AS ended_at
      FROM steps GROUP BY run_id, request_number) AS s
WHERE requests.run_id = s.run_id AND requests.request_number = s.request_number;
CREATE INDEX requests_by_end ON requests (run_id, ended_at);
CREATE INDEX runs_with_retention ON runs (id) WHERE retention_seconds IS NOT NULL;
