-- The run list's per-run figures; see the PostgreSQL migration of the same name.
ALTER TABLE runs ADD COLUMN first_event_at REAL;
ALTER TABLE runs ADD COLUMN last_event_at REAL;
ALTER TABLE runs ADD COLUMN llm_calls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN llm_tokens INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET
    first_event_at = (SELECT MIN(event_timestamp) FROM steps WHERE run_id = runs.id),
    last_event_at = (SELECT MAX(event_timestamp) FROM steps WHERE run_id = runs.id),
    llm_calls = (SELECT COUNT(*) FROM steps WHERE run_id = runs.id AND event_type = 1),
    llm_tokens = COALESCE((SELECT SUM(total_tokens) FROM steps WHERE run_id = runs.id AND event_type = 1), 0);
