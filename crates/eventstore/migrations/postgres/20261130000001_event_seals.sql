-- Tamper evidence: a hash chain over the log, built after commit by the sealer in exactly the order
-- read_all returns events. See src/seal.rs for the digests and the record encoding.

-- One row per sealed batch of consecutive events first_sequence..=last_sequence of the chain
-- (sequences number events 1, 2, 3, ... in global read order). `chain_digest` is the chain digest
-- after the batch's last event; each event's link is SHA-256(previous || its position, stream
-- version, recorded_at and content digest), so editing, deleting or moving a sealed event breaks
-- every link from it on. `records` holds one 80-byte record per event (position, commit_id, event
-- id, stream version, recorded_at, content digest): it lets the verifier name the event that was
-- altered, deleted or moved, not only the batch.
CREATE TABLE event_seals (
    last_sequence BIGINT PRIMARY KEY,
    first_sequence BIGINT NOT NULL UNIQUE CHECK (first_sequence > 0),
    event_count BIGINT NOT NULL CHECK (event_count = last_sequence - first_sequence + 1),
    -- commit_id (tx_id) and global_position of the first and last event: their place in the order.
    first_commit_id BIGINT NOT NULL,
    first_global_position BIGINT NOT NULL,
    last_commit_id BIGINT NOT NULL,
    last_global_position BIGINT NOT NULL,
    chain_digest BYTEA NOT NULL CHECK (octet_length(chain_digest) = 32),
    records BYTEA NOT NULL CHECK (octet_length(records) = 80 * event_count)
);

-- Stored out of line uncompressed: digests and ids do not compress, and trying would cost the
-- server CPU that appenders compete for.
ALTER TABLE event_seals ALTER COLUMN records SET STORAGE EXTERNAL;

-- The newest seal, moved forward in the same statement that inserts seals. Sealers compare-and-set
-- `sequence`, so two sealers at once (replicas sharing the database) never fork the chain; and the
-- verifier compares it with the last seal, which tells a truncated seal table from a complete one.
CREATE TABLE event_seal_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sequence BIGINT NOT NULL,
    commit_id BIGINT NOT NULL,
    global_position BIGINT NOT NULL,
    chain_digest BYTEA NOT NULL CHECK (octet_length(chain_digest) = 32),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Genesis: nothing sealed, previous digest 32 zero bytes.
INSERT INTO event_seal_head (id, sequence, commit_id, global_position, chain_digest)
VALUES (1, 0, 0, 0, decode(repeat('00', 32), 'hex'));
