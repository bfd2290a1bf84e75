-- Snapshots of whole read models at a log position, for time travel on long logs
-- (docs/audit.md, "Snapshots"). A snapshot is a cache: dropping every row loses nothing but speed.
CREATE TABLE projection_snapshots (
    projection TEXT NOT NULL,
    -- The Patchbay version and the read model's format: other builds' snapshots are never read.
    format TEXT NOT NULL,
    commit_id INTEGER NOT NULL,
    global_position INTEGER NOT NULL,
    events_applied INTEGER NOT NULL,
    -- The earliest and latest recorded_at of the events at or before the position: a snapshot
    -- answers questions about moments at or after last_recorded_at.
    first_recorded_at_micros INTEGER NOT NULL,
    last_recorded_at_micros INTEGER NOT NULL,
    taken_at_micros INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (projection, format, commit_id, global_position)
);
CREATE INDEX projection_snapshots_by_time ON projection_snapshots (projection, format, last_recorded_at_micros);

-- Time marks: every event recorded at or before taken_at lies before the horizon, so a question
-- about a moment reads the log only up to the first mark taken after it.
CREATE TABLE log_time_marks (
    mark_id INTEGER PRIMARY KEY AUTOINCREMENT,
    taken_at_micros INTEGER NOT NULL,
    horizon_commit_id INTEGER NOT NULL,
    horizon_position INTEGER NOT NULL
);
CREATE INDEX log_time_marks_by_time ON log_time_marks (taken_at_micros);
