-- An Idempotency-Key keeps its request's fingerprint and first outcome only: a replay answers
-- with the run as it is then. The copies of the run each key kept (metadata and all) go, and each
-- key names its client, whose keys are bounded (the oldest forgotten first).
ALTER TABLE idempotency_keys ADD COLUMN client text NOT NULL DEFAULT '';
UPDATE idempotency_keys SET record = '', client = split_part(scope, ' ', array_length(string_to_array(scope, ' '), 1));
CREATE INDEX idempotency_keys_by_client ON idempotency_keys (client, created_at);
