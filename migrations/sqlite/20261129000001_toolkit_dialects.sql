-- Toolkit dialects (aiq-1.1, nat-1.9); see the PostgreSQL migration of the same name.

ALTER TABLE steps ADD COLUMN span_event_timestamp REAL;
ALTER TABLE steps ADD COLUMN step_parent_id BLOB;
UPDATE steps SET
    span_event_timestamp = json_extract(body, '$.payload.span_event_timestamp'),
    step_parent_id = CAST(json_extract(body, '$.parent_id') AS BLOB);

ALTER TABLE requests ADD COLUMN eval_item TEXT;

ALTER TABLE runs ADD COLUMN toolkit TEXT;
ALTER TABLE runs ADD COLUMN nat_schema INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN non_end_steps INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN aiq_rewrite INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN nat_rewrite INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET
    toolkit = 'aiq-1.1',
    aiq_rewrite = 1,
    nat_rewrite = 1,
    nat_schema = EXISTS (SELECT 1 FROM steps s WHERE s.run_id = runs.id AND s.step_parent_id IS NOT NULL),
    non_end_steps = EXISTS (SELECT 1 FROM steps s WHERE s.run_id = runs.id AND s.event_type NOT IN (1, 4));
