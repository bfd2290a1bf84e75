-- Each event's content digest (SHA-256 of its stream, id, type, schema version, payload and metadata;
-- see src/seal.rs), computed by the appender while it binds the row, so the sealer links events
-- into the hash chain from narrow rows instead of re-reading and hashing payloads.
--
-- Nullable, with no default and no constraint: adding it rewrites and scans nothing, however long
-- the log. Events appended before it stay NULL; the sealer hashes their content instead. The
-- verifier never trusts this column: it recomputes every digest from the content.
ALTER TABLE events ADD COLUMN content_digest BLOB;
