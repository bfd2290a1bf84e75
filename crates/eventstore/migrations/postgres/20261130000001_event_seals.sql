-- Tamper evidence: a hash chain over the log, built after commit by the sealer in exactly the order
-- read_all returns events. See src/seal.rs for the digest encoding.

-- One row per sealed event. `sequence` numbers the chain 1, 2, 3, ... in global read order;
-- `chain_digest` = SHA-256(previous chain_digest || canonical encoding of the event), so editing,
-- deleting or moving a sealed event breaks every link from it on.
CREATE TABLE event_seals (
    global_position BIGINT PRIMARY KEY,
    -- The event's commit_id (tx_id) when it was sealed: with global_position, its place in the order.
    commit_id BIGINT NOT NULL,
    sequence BIGINT NOT NULL UNIQUE CHECK (sequence > 0),
    -- Lets the verifier say which event was deleted or moved, not only where the chain broke.
    event_id UUID NOT NULL,
    chain_digest BYTEA NOT NULL CHECK (octet_length(chain_digest) = 32)
);

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
