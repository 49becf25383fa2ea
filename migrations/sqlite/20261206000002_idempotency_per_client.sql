-- An Idempotency-Key keeps its request's fingerprint and first outcome only; see the PostgreSQL
-- migration of the same name. Keys kept before it name no client, and age out as before.
ALTER TABLE idempotency_keys ADD COLUMN client TEXT NOT NULL DEFAULT '';
UPDATE idempotency_keys SET record = '';
CREATE INDEX idempotency_keys_by_client ON idempotency_keys (client, created_at);
