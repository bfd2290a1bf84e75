-- Tamper evidence: a hash chain over the log, built after commit by the sealer in exactly the order
-- read_all returns events. See src/seal.rs for the digest encoding.

-- One row per sealed event. `sequence` numbers the chain 1, 2, 3, ... in global read order;
-- `chain_digest` = SHA-256(previous chain_digest || canonical encoding of the event), so editing,
-- deleting or moving a sealed event breaks every link from it on. commit_id is always 0 on SQLite.
CREATE TABLE event_seals (
    global_position INTEGER PRIMARY KEY,
    commit_id INTEGER NOT NULL,
    sequence INTEGER NOT NULL UNIQUE CHECK (sequence > 0),
    -- Lets the verifier say which event was deleted or moved, not only where the chain broke.
    event_id BLOB NOT NULL,
    chain_digest BLOB NOT NULL CHECK (length(chain_digest) = 32)
);

-- The newest seal, moved forward in the same transaction that inserts seals. Sealers compare-and-set
-- `sequence`, so two sealers at once never fork the chain; and the verifier compares it with the last
-- seal, which tells a truncated seal table from a complete one.
CREATE TABLE event_seal_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sequence INTEGER NOT NULL,
    commit_id INTEGER NOT NULL,
    global_position INTEGER NOT NULL,
    chain_digest BLOB NOT NULL CHECK (length(chain_digest) = 32),
    updated_at_micros INTEGER NOT NULL
);

-- Genesis: nothing sealed, previous digest 32 zero bytes.
INSERT INTO event_seal_head (id, sequence, commit_id, global_position, chain_digest, updated_at_micros)
VALUES (1, 0, 0, 0, zeroblob(32), 0);
