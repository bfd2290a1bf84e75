-- Tamper evidence: a hash chain over the log, built after commit by the sealer in exactly the order
-- read_all returns events. See src/seal.rs for the digests and the record encoding.

-- One row per sealed batch of consecutive events first_sequence..=last_sequence of the chain
-- (sequences number events 1, 2, 3, ... in global read order). `chain_digest` is the chain digest
-- after the batch's last event; each event's link is SHA-256(previous || its position, stream
-- version, recorded_at and content digest), so editing, deleting or moving a sealed event breaks
-- every link from it on. `records` holds one 80-byte record per event (position, commit_id, event
-- id, stream version, recorded_at, content digest): it lets the verifier name the event that was
-- altered, deleted or moved, not only the batch. commit_id is always 0 on SQLite.
CREATE TABLE event_seals (
    last_sequence INTEGER PRIMARY KEY,
    first_sequence INTEGER NOT NULL UNIQUE CHECK (first_sequence > 0),
    event_count INTEGER NOT NULL CHECK (event_count = last_sequence - first_sequence + 1),
    first_commit_id INTEGER NOT NULL,
    first_global_position INTEGER NOT NULL,
    last_commit_id INTEGER NOT NULL,
    last_global_position INTEGER NOT NULL,
    chain_digest BLOB NOT NULL CHECK (length(chain_digest) = 32),
    records BLOB NOT NULL CHECK (length(records) = 80 * event_count)
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
