-- Cost (issue: a regression gate with cost). An LLM call's cached prompt tokens get a column of
-- their own, so that a model's cached_input price applies to them without parsing bodies (the
-- rollups read it too); NULL stands for 0, which most steps are. Filled in from the bodies of the
-- steps already stored, which are the only ones that can hold it.
ALTER TABLE steps ADD COLUMN cached_tokens bigint;
-- PostgreSQL's json operators refuse a document with an escaped NUL anywhere in it (a body may
-- hold one: JSON strings can), so those bodies are read by a pattern instead: the rendered
-- `token_usage` object holds only numbers, so no brace comes between its start and the count.
UPDATE steps
SET cached_tokens = NULLIF((body::json #>> '{payload,usage_info,token_usage,cached_tokens}')::bigint, 0)
WHERE body LIKE '%"cached_tokens"%' AND strpos(body, '\u0000') = 0;
UPDATE steps
SET cached_tokens = NULLIF(substring(body FROM '"token_usage": *\{[^{}]*"cached_tokens": *(-?[0-9]+)')::bigint, 0)
WHERE body LIKE '%"cached_tokens"%' AND strpos(body, '\u0000') > 0;

-- The price table a run is costed with (JSON text, as `--prices` reads it): the server's table
-- when the run was created, or the run's own. A later change of the server's table does not
-- change an old run's cost; a PATCH of `prices` does. NULL (runs stored before prices): no model
-- has a price.
ALTER TABLE runs ADD COLUMN prices text;
