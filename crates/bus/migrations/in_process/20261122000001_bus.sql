-- The in-process bus keeps its streams in SQLite, so the embedded mode loses nothing on a crash:
-- unacknowledged messages are delivered again after a restart, as JetStream would.

CREATE TABLE bus_messages (
    stream TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    subject TEXT NOT NULL,
    message_id TEXT NOT NULL,
    headers TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (stream, sequence),
    UNIQUE (stream, message_id)
);

CREATE TABLE bus_consumers (
    name TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    filter TEXT,
    -- Every message at or below this sequence is acknowledged.
    ack_floor INTEGER NOT NULL
);
