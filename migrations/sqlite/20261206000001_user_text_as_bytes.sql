-- Run names and eval ids become UTF-8 blobs, as they are bytea in PostgreSQL: both engines then
-- bind and read them the same way (and a NUL character is a byte like any other). A blob never
-- equals a text value in SQLite, so every stored one is converted, or an eval id stored before
-- this would no longer be found by the next batch that names it.
UPDATE runs SET name = CAST(name AS BLOB) WHERE typeof(name) = 'text';
UPDATE requests SET external_id = CAST(external_id AS BLOB) WHERE typeof(external_id) = 'text';
