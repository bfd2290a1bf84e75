-- The append-only event log of one service, and the tables that make it safe to consume.
-- Writers take the database lock at BEGIN IMMEDIATE, so global_position order is commit order.

CREATE TABLE events (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id BLOB NOT NULL UNIQUE,
    stream_id TEXT NOT NULL,
    stream_version INTEGER NOT NULL CHECK (stream_version > 0),
    event_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    correlation_id BLOB NOT NULL,
    causation_id BLOB,
    actor TEXT NOT NULL,
    traceparent TEXT,
    tracestate TEXT,
    recorded_at_micros INTEGER NOT NULL,
    UNIQUE (stream_id, stream_version)
);

CREATE TABLE streams (
    stream_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE checkpoints (
    name TEXT PRIMARY KEY,
    commit_id INTEGER NOT NULL,
    global_position INTEGER NOT NULL,
    updated_at_micros INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id BLOB NOT NULL,
    handled_at_micros INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;

CREATE TABLE snapshots (
    snapshot_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    payload BLOB NOT NULL,
    taken_at_micros INTEGER NOT NULL,
    PRIMARY KEY (snapshot_key, version)
) WITHOUT ROWID;
