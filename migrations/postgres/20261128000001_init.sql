-- agentprof schema, PostgreSQL. Landed migrations are never edited; add a new file instead.

CREATE TABLE runs (
    id              uuid PRIMARY KEY,
    name            text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Bumped by every batch that stores something; part of the metrics cache key and ETag.
    version         bigint NOT NULL DEFAULT 0,
    -- The user's profiler config (toolkit field names), merged over the defaults when used.
    profiler_config jsonb NOT NULL DEFAULT '{}'::jsonb,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    request_count   integer NOT NULL DEFAULT 0,
    step_count      bigint NOT NULL DEFAULT 0
);
CREATE INDEX runs_newest_first ON runs (created_at DESC, id DESC);

CREATE TABLE requests (
    run_id          uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    request_number  integer NOT NULL,
    -- The eval form's `id`, as text.
    external_id     text,
    PRIMARY KEY (run_id, request_number)
);
CREATE UNIQUE INDEX requests_by_external_id ON requests (run_id, external_id) WHERE external_id IS NOT NULL;

-- Steps are ordered by (request_number, seq); seq is (batch number << 24) + position in the batch,
-- so concurrent batches need no lock to number their steps.
CREATE SEQUENCE step_batches;

-- One row per step: the columns the profiler reads, plus the step as the combined requests file
-- shows it. User strings are bytea because PostgreSQL text cannot hold NUL characters.
CREATE TABLE steps (
    run_id               uuid NOT NULL,
    request_number       integer NOT NULL,
    seq                  bigint NOT NULL,
    event_type           smallint NOT NULL,
    event_timestamp      double precision NOT NULL,
    uuid                 bytea NOT NULL,
    name                 bytea,
    framework            smallint,
    -- NULL function_name means the step's function_ancestry was JSON null.
    function_name        bytea,
    function_id          bytea,
    parent_name          bytea,
    parent_id            bytea,
    prompt_tokens        bigint NOT NULL,
    completion_tokens    bigint NOT NULL,
    total_tokens         bigint NOT NULL,
    seconds_between_calls bigint NOT NULL,
    -- str() of data.input / data.output / data.chunk on LLM_START / LLM_END / LLM_NEW_TOKEN
    -- ('' when the step has no data, NULL when that value is null); '' on every other step.
    text_value           bytea,
    -- The step rendered as all_requests_profiler_traces.json shows it (JSON, NUL-free).
    body                 text NOT NULL,
    PRIMARY KEY (run_id, request_number, seq),
    FOREIGN KEY (run_id, request_number) REFERENCES requests (run_id, request_number) ON DELETE CASCADE
);
-- A step already stored is not stored twice: a retried batch changes nothing.
CREATE UNIQUE INDEX steps_identity ON steps (run_id, request_number, uuid, event_type, event_timestamp);

-- lz4 compresses large bodies and prompts several times faster than the default pglz; servers
-- built without lz4 (or older than PostgreSQL 14, which lack SET COMPRESSION) keep the default.
-- EXECUTE defers parsing to run time, so the handler catches a syntax error from an old server.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE steps ALTER COLUMN body SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE steps ALTER COLUMN text_value SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 compression unavailable (%); keeping the default', SQLERRM;
END $$;
