-- Subscribers are no longer woken by a trigger. A NOTIFY inside the appending transaction makes
-- PostgreSQL take a cluster-wide lock at commit and hold it through the WAL flush, so every
-- appending commit on the server queued behind the others. The store now sends the same
-- notification on a connection of its own after the commit (see src/notify.rs).
DROP TRIGGER IF EXISTS events_notify ON events;
DROP FUNCTION IF EXISTS patchbay_notify_events();
