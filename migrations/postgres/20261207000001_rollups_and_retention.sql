-- Live runs: per-minute rollups kept by ingest, and retention.
--
-- rollups: one row per run, minute (Unix seconds / 60), kind (0 requests, 1 LLM calls, 2 tool
-- calls, 3 workflows) and name (model, tool or workflow; '' for requests). latency is an
-- HdrHistogram (V2 encoding) of the calls' latencies in microseconds. Keyed by run first, like
-- every table that grows with steps.
CREATE TABLE rollups (
    run_id            uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    minute            bigint NOT NULL,
    kind              smallint NOT NULL,
    name              bytea NOT NULL,
    count             bigint NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cached_tokens     bigint NOT NULL,
    latency           bytea NOT NULL,
    PRIMARY KEY (run_id, minute, kind, name)
);
-- Runs stored before rollups existed are built by the server (the sketches are computed in
-- Rust) before their series is served; new runs keep theirs from the first batch.
ALTER TABLE runs
    ADD COLUMN rollups_ready boolean NOT NULL DEFAULT true,
    ADD COLUMN retention_seconds bigint;
UPDATE runs SET rollups_ready = false;
-- Retention deletes requests by their last step's time.
ALTER TABLE requests ADD COLUMN ended_at double precision;
UPDATE requests r SET ended_at = s.ended_at
FROM (SELECT run_id, request_number, MAX(event_timestamp) AS ended_at
      FROM steps GROUP BY run_id, request_number) s
WHERE r.run_id = s.run_id AND r.request_number = s.request_number;
CREATE INDEX requests_by_end ON requests (run_id, ended_at);
-- The sweep finds the runs that keep traffic for a while without reading the others.
CREATE INDEX runs_with_retention ON runs (id) WHERE retention_seconds IS NOT NULL;
