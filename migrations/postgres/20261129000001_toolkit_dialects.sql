-- Toolkit dialects (aiq-1.1, nat-1.9): what nat 1.9's outputs read that the step columns lacked,
-- and what a run needs to choose its dialect and explain its numbers.

-- The span start of END steps and nat's top-level parent_id (the prediction trie reads both),
-- filled in for the steps already stored from their rendered bodies. `json` rather than `jsonb`:
-- bodies may hold \u0000 escapes, which jsonb refuses.
ALTER TABLE steps
    ADD COLUMN span_event_timestamp double precision,
    ADD COLUMN step_parent_id bytea;
UPDATE steps SET
    span_event_timestamp = (body::json #>> '{payload,span_event_timestamp}')::double precision,
    step_parent_id = convert_to(body::json ->> 'parent_id', 'UTF8');

-- The eval item's id, question and answers (JSON), which nat's ATIF trajectories carry.
ALTER TABLE requests ADD COLUMN eval_item text;

-- toolkit: the dialect the user chose, NULL to detect it from the steps; nat_schema: some step was
-- in nat 1.9's schema; non_end_steps: some step is not an LLM_END or TOOL_END (a file written with
-- nat eval's default step filter has none). Runs stored before dialects keep aiq-1.1.
ALTER TABLE runs
    ADD COLUMN toolkit text,
    ADD COLUMN nat_schema boolean NOT NULL DEFAULT false,
    ADD COLUMN non_end_steps boolean NOT NULL DEFAULT false,
    -- Whether writing some stored step in aiq 1.1's / nat 1.9's schema changes its JSON (then the
    -- combined requests file is written afresh instead of from the stored bodies). Unknown for the
    -- runs already stored, so they say yes.
    ADD COLUMN aiq_rewrite boolean NOT NULL DEFAULT false,
    ADD COLUMN nat_rewrite boolean NOT NULL DEFAULT false;
UPDATE runs SET
    toolkit = 'aiq-1.1',
    aiq_rewrite = true,
    nat_rewrite = true,
    nat_schema = EXISTS (SELECT 1 FROM steps s WHERE s.run_id = runs.id AND s.step_parent_id IS NOT NULL),
    non_end_steps = EXISTS (SELECT 1 FROM steps s WHERE s.run_id = runs.id AND s.event_type NOT IN (1, 4));
