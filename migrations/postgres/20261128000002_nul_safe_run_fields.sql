-- NUL characters (U+0000) are valid in JSON strings but PostgreSQL text and jsonb cannot hold them.
-- Run names and eval ids become UTF-8 bytea, and metadata and profiler configs JSON kept as text
-- (its escapes hold any character), so every valid body is stored and returned intact.
ALTER TABLE runs
    ALTER COLUMN name DROP DEFAULT,
    ALTER COLUMN name TYPE bytea USING convert_to(name, 'UTF8'),
    ALTER COLUMN name SET DEFAULT ''::bytea,
    ALTER COLUMN profiler_config DROP DEFAULT,
    ALTER COLUMN profiler_config TYPE text USING profiler_config::text,
    ALTER COLUMN profiler_config SET DEFAULT '{}',
    ALTER COLUMN metadata DROP DEFAULT,
    ALTER COLUMN metadata TYPE text USING metadata::text,
    ALTER COLUMN metadata SET DEFAULT '{}';

ALTER TABLE requests
    ALTER COLUMN external_id TYPE bytea USING convert_to(external_id, 'UTF8');
