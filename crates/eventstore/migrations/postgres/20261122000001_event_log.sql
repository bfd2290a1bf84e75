-- The append-only event log of one service, and the tables that make it safe to consume.

CREATE TABLE events (
    global_position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The appending transaction. Readers of the global order sort by (tx_id, global_position) and stop
    -- below the oldest transaction still running, so an event whose transaction commits late is never
    -- skipped by a reader that already moved past its global_position.
    tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id UUID NOT NULL UNIQUE,
    stream_id TEXT NOT NULL,
    stream_version BIGINT NOT NULL CHECK (stream_version > 0),
    event_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload BYTEA NOT NULL,
    correlation_id UUID NOT NULL,
    causation_id UUID,
    actor TEXT NOT NULL,
    traceparent TEXT,
    tracestate TEXT,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (stream_id, stream_version)
);

CREATE INDEX events_commit_order ON events (tx_id, global_position);

-- Current version of every stream: the row lock taken when it is bumped serialises appenders of one
-- stream, and makes optimistic concurrency one indexed update instead of a max() over the log.
CREATE TABLE streams (
    stream_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

-- Durable positions of subscriptions (relays, projections) in the global order.
CREATE TABLE checkpoints (
    name TEXT PRIMARY KEY,
    commit_id BIGINT NOT NULL,
    global_position BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Events from other services this service has already handled, one row per (consumer, event).
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id UUID NOT NULL,
    handled_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE snapshots (
    snapshot_key TEXT NOT NULL,
    version BIGINT NOT NULL,
    schema_version INTEGER NOT NULL,
    payload BYTEA NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (snapshot_key, version)
);

-- Wakes live subscribers once per appending statement; delivered at commit.
CREATE FUNCTION patchbay_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('patchbay_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION patchbay_notify_events();
