-- What the run list shows of each run without reading its steps: the span of its step
-- timestamps, its LLM_END steps and their total tokens. Ingest keeps them current.
ALTER TABLE runs ADD COLUMN first_event_at double precision;
ALTER TABLE runs ADD COLUMN last_event_at double precision;
ALTER TABLE runs ADD COLUMN llm_calls bigint NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN llm_tokens bigint NOT NULL DEFAULT 0;
UPDATE runs SET
    first_event_at = s.first_at, last_event_at = s.last_at,
    llm_calls = s.calls, llm_tokens = s.tokens
FROM (SELECT run_id, MIN(event_timestamp) AS first_at, MAX(event_timestamp) AS last_at,
             COUNT(*) FILTER (WHERE event_type = 1) AS calls,
             COALESCE(SUM(total_tokens) FILTER (WHERE event_type = 1), 0) AS tokens
      FROM steps GROUP BY run_id) s
WHERE runs.id = s.run_id;
