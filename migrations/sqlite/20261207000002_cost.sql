-- Cost: an LLM call's cached prompt tokens (NULL for 0), filled in from the stored bodies, and
-- the price table each run is costed with (see the PostgreSQL migration of the same name).
ALTER TABLE steps ADD COLUMN cached_tokens INTEGER;
UPDATE steps
SET cached_tokens = NULLIF(CAST(json_extract(body, '$.payload.usage_info.token_usage.cached_tokens') AS INTEGER), 0)
WHERE body LIKE '%"cached_tokens"%';

ALTER TABLE runs ADD COLUMN prices TEXT;
