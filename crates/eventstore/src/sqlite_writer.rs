//! Single-stream appends to a SQLite file through one rusqlite connection on a blocking thread.
//!
//! sqlx runs each SQLite statement on its worker thread and allocates for every bound parameter; a
//! 100-event append binds 1,000 of them and crossed threads four times, which held appends to
//! ~60,000 events/s (docs/benchmarks.md, "SQLite appends"). Here one blocking thread runs the
//! whole transaction on a cached prepared statement, binding each value straight from the event.
//! The SQL is `sqlite`'s own (`APPEND_CHECK_SQL`, `STREAM_UPSERT_SQL`, `events_insert_sql`), so
//! both paths write identical rows. Transactions that also write the inbox, checkpoints or a read
//! model keep using the sqlx pool; SQLite's write lock (`BEGIN IMMEDIATE` on both) serialises the
//! two, so the global order stays commit order.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::Mutex;

use crate::error::EventStoreError;
use crate::event::{AppendResult, ExpectedVersion, LogPosition, NewEvent, version_matches};
use crate::seal::{ChainHead, EventRecord, StoredSeal};
use crate::seal_feed::SealFeed;
use crate::sqlite::{
    APPEND_CHECK_SQL, ROWS_PER_INSERT, RowValues, SEAL_HEAD_UPDATE_SQL, SEAL_INSERT_SQL,
    STORED_ID_SQL, STREAM_UPSERT_SQL, content_digests, events_insert_sql,
};
use crate::sqlite_checkpoint::{Checkpointer, WRITER_AUTOCHECKPOINT_PAGES};
use crate::store::{SqliteDurability, StoredId, resolve_unappended, to_u64};

/// Prepared statements kept per connection: one insert per batch size in use, plus the checks.
const STATEMENT_CACHE: usize = 64;

/// The writer connection of one SQLite file, opened on first use.
#[derive(Debug, Clone)]
pub(crate) struct SqliteWriter {
    path: PathBuf,
    durability: SqliteDurability,
    /// Async, so appends waiting for the writer wait as tasks, not as blocked threads.
    connection: Arc<Mutex<WriterState>>,
    /// What this writer committed, for the sealer (see [`SealFeed`]).
    seal_feed: Arc<std::sync::Mutex<SealFeed>>,
}

#[derive(Debug)]
enum WriterState {
    Unopened,
    Open(OpenWriter),
    Closed,
}

/// The connection, and the thread that checkpoints what it writes (None: SQLite's own checkpoints).
#[derive(Debug)]
struct OpenWriter {
    connection: Connection,
    checkpointer: Option<Checkpointer>,
}

impl OpenWriter {
    /// Called after every commit that wrote something.
    fn committed(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.after_commit();
        }
    }
}

impl SqliteWriter {
    pub(crate) fn new(path: PathBuf, durability: SqliteDurability) -> Self {
        Self {
            path,
            durability,
            connection: Arc::new(Mutex::new(WriterState::Unopened)),
            seal_feed: Arc::default(),
        }
    }

    /// Closes the connection once the append in progress (if any) is done; later appends fail as
    /// the closed pool's do.
    pub(crate) async fn close(&self) {
        *self.connection.lock().await = WriterState::Closed;
    }

    /// Appends `events` to `stream_id` in one `BEGIN IMMEDIATE` transaction, as `sqlite::append`
    /// does. `on_commit` runs on the writing thread right after a commit that appended, so the
    /// store wakes its subscribers even if the caller stopped waiting.
    pub(crate) async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
        on_commit: impl FnOnce() + Send + 'static,
    ) -> Result<AppendResult, EventStoreError> {
        // Owned copies: the blocking thread outlives this borrow if the caller is cancelled.
        let stream_id = stream_id.to_owned();
        let events = events.to_vec();
        self.on_connection("appending", move |writer, open| {
            let (result, committed) =
                append_on(&mut open.connection, &stream_id, expected, &events)
                    .map_err(|error| error.for_stream(&writer.path, &stream_id))?;
            if !result.deduplicated {
                open.committed();
                writer.feed().push(committed);
                on_commit();
            }
            Ok(result)
        })
        .await
    }

    /// Inserts `seals` and moves the head, as [`crate::sqlite::store_seals`] does, on this connection.
    ///
    /// Through the writer, a sealer queues behind appends (and appends behind it) for exactly as
    /// long as the other writes; through the pool, whichever side found the write lock taken slept
    /// in SQLite's busy handler (1, 2, 5, 10 ms and longer).
    pub(crate) async fn store_seals(
        &self,
        expected_sequence: u64,
        new_head: ChainHead,
        seals: Vec<StoredSeal>,
    ) -> Result<bool, EventStoreError> {
        self.on_connection("sealing", move |writer, open| {
            let stored = store_seals_on(&mut open.connection, expected_sequence, &new_head, &seals)
                .map_err(|error| {
                    EventStoreError::sqlite(
                        format!("sealing the event log in {}", writer.path.display()),
                        &error,
                    )
                })?;
            open.committed();
            Ok(stored)
        })
        .await
    }

    /// Runs `work` on a blocking thread with the connection (opened on first use), once the writes
    /// queued before it are done. `doing` names the work if the thread fails.
    async fn on_connection<T: Send + 'static>(
        &self,
        doing: &'static str,
        work: impl FnOnce(&SqliteWriter, &mut OpenWriter) -> Result<T, EventStoreError> + Send + 'static,
    ) -> Result<T, EventStoreError> {
        let mut state = Arc::clone(&self.connection).lock_owned().await;
        let writer = self.clone();
        tokio::task::spawn_blocking(move || {
            let open = writer.open(&mut state)?;
            work(&writer, open)
        })
        .await
        .map_err(|error| EventStoreError::Sqlite {
            message: format!("the {doing} thread failed: {error}"),
            busy: false,
        })?
    }

    /// Up to `limit` records of events this writer committed right after position `after`, for
    /// the sealer; empty when the feed does not hold the next position (see [`SealFeed`]).
    pub(crate) fn committed_after(&self, after: u64, limit: usize) -> Vec<EventRecord> {
        self.feed().take_after(after, limit)
    }

    /// Starts or stops keeping the records of commits for a sealer.
    pub(crate) fn set_feed_wanted(&self, wanted: bool) {
        self.feed().set_wanted(wanted);
    }

    fn feed(&self) -> std::sync::MutexGuard<'_, SealFeed> {
        // The feed is only a shortcut, consistent after any panic: keep using it.
        self.seal_feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open<'a>(&self, state: &'a mut WriterState) -> Result<&'a mut OpenWriter, EventStoreError> {
        if matches!(state, WriterState::Unopened) {
            let connection = self.connect().map_err(|error| {
                EventStoreError::sqlite(format!("opening {}", self.path.display()), &error)
            })?;
            let checkpointer = match Checkpointer::start(&self.path, self.synchronous()) {
                Ok(checkpointer) => Some(checkpointer),
                Err(error) => {
                    tracing::warn!(%error, path = %self.path.display(),
                        "could not start the WAL checkpoint thread; appends checkpoint as they commit");
                    None
                }
            };
            if checkpointer.is_some() {
                connection
                    .pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
                    .map_err(|error| {
                        EventStoreError::sqlite(format!("opening {}", self.path.display()), &error)
                    })?;
            }
            *state = WriterState::Open(OpenWriter {
                connection,
                checkpointer,
            });
        }
        match state {
            WriterState::Open(open) => Ok(open),
            WriterState::Unopened | WriterState::Closed => {
                Err(EventStoreError::Database(sqlx::Error::PoolClosed))
            }
        }
    }

    fn synchronous(&self) -> &'static str {
        match self.durability {
            SqliteDurability::Full => "FULL",
            SqliteDurability::Normal => "NORMAL",
        }
    }

    /// The pool's settings: the file exists (sqlx created and migrated it) and is in WAL mode.
    fn connect(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(Duration::from_secs(30))?;
        connection.pragma_update(None, "synchronous", self.synchronous())?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(connection)
    }
}

/// A failed append before it is named: a rusqlite error, or the store's own verdict.
enum AppendError {
    Sqlite(rusqlite::Error),
    Store(EventStoreError),
}

impl From<rusqlite::Error> for AppendError {
    fn from(error: rusqlite::Error) -> Self {
        AppendError::Sqlite(error)
    }
}

impl From<EventStoreError> for AppendError {
    fn from(error: EventStoreError) -> Self {
        AppendError::Store(error)
    }
}

impl AppendError {
    fn for_stream(self, path: &std::path::Path, stream_id: &str) -> EventStoreError {
        match self {
            AppendError::Store(error) => error,
            AppendError::Sqlite(error) => EventStoreError::sqlite(
                format!("appending to stream '{stream_id}' in {}", path.display()),
                &error,
            ),
        }
    }
}

/// One append, all or nothing: the transaction rolls back when it is dropped uncommitted. Returns
/// the seal records of what it appended (none when it appended nothing).
fn append_on(
    connection: &mut Connection,
    stream_id: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<(AppendResult, Vec<EventRecord>), AppendError> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (version, first_stored): (Option<i64>, bool) =
        tx.prepare_cached(APPEND_CHECK_SQL)?.query_row(
            (stream_id, events[0].event_id.as_bytes().as_slice()),
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
    let actual = version.map(|v| to_u64(v, 0)).transpose()?;
    if first_stored || !version_matches(expected, actual) {
        let stored = stored_ids(&tx, events)?;
        let result = resolve_unappended(stream_id, expected, actual, events, stored)?;
        return Ok((result, Vec::new()));
    }
    let now = Utc::now().timestamp_micros();
    let digests = content_digests(stream_id, events);
    let mut before = actual.unwrap_or(0);
    let mut committed = Vec::with_capacity(events.len());
    for (chunk, chunk_digests) in events
        .chunks(ROWS_PER_INSERT)
        .zip(digests.chunks(ROWS_PER_INSERT))
    {
        let after = before + chunk.len() as u64;
        tx.prepare_cached(STREAM_UPSERT_SQL)?
            .execute((stream_id, to_i64(after)))?;
        let mut insert = tx.prepare_cached(&events_insert_sql(chunk.len()))?;
        let mut index = 0;
        let mut bind = |value: &dyn ToSql| -> rusqlite::Result<()> {
            index += 1;
            insert.raw_bind_parameter(index, value)
        };
        bind(&stream_id)?;
        bind(&to_i64(before))?;
        bind(&now)?;
        for (event, digest) in chunk.iter().zip(chunk_digests) {
            let row = RowValues::of(event, digest);
            bind(&row.event_id.as_slice())?;
            bind(&row.event_type)?;
            bind(&row.schema_version)?;
            bind(&row.payload)?;
            bind(&row.correlation_id.as_slice())?;
            bind(&row.causation_id.map(<[u8; 16]>::as_slice))?;
            bind(&row.actor)?;
            bind(&row.traceparent)?;
            bind(&row.tracestate)?;
            bind(&row.content_digest.as_slice())?;
        }
        insert.raw_execute()?;
        // AUTOINCREMENT numbers one statement's rows consecutively, in version order (the
        // statement's ORDER BY): the last row's position fixes every row's.
        let last_position = to_u64(tx.last_insert_rowid(), 0)?;
        let first_position = last_position + 1 - chunk.len() as u64;
        for (offset, (event, digest)) in chunk.iter().zip(chunk_digests).enumerate() {
            let offset = offset as u64;
            committed.push(EventRecord {
                position: LogPosition {
                    commit_id: 0,
                    global_position: first_position + offset,
                },
                event_id: event.event_id,
                stream_version: before + 1 + offset,
                recorded_at_micros: now,
                content_digest: *digest,
            });
        }
        before = after;
    }
    // The events insert ran last: its highest rowid is the batch's last position.
    let global_position = to_u64(tx.last_insert_rowid(), 0)?;
    tx.commit()?;
    let result = AppendResult {
        stream_version: before,
        global_position,
        deduplicated: false,
    };
    Ok((result, committed))
}

/// The compare-and-set of the head, then the seal rows, in one `BEGIN IMMEDIATE` transaction;
/// false (nothing written) when another sealer moved the head first.
fn store_seals_on(
    connection: &mut Connection,
    expected_sequence: u64,
    new_head: &ChainHead,
    seals: &[StoredSeal],
) -> rusqlite::Result<bool> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let moved = tx.prepare_cached(SEAL_HEAD_UPDATE_SQL)?.execute((
        to_i64(new_head.sequence),
        to_i64(new_head.position.commit_id),
        to_i64(new_head.position.global_position),
        new_head.digest.as_slice(),
        Utc::now().timestamp_micros(),
        to_i64(expected_sequence),
    ))?;
    if moved != 1 {
        // Dropping the transaction rolls it back.
        return Ok(false);
    }
    let mut insert = tx.prepare_cached(SEAL_INSERT_SQL)?;
    for seal in seals {
        insert.execute((
            to_i64(seal.first_sequence),
            to_i64(seal.last_sequence),
            to_i64(seal.first_position.commit_id),
            to_i64(seal.first_position.global_position),
            to_i64(seal.last_position.commit_id),
            to_i64(seal.last_position.global_position),
            to_i64(seal.event_count),
            seal.chain_digest.as_slice(),
            seal.records.as_slice(),
        ))?;
    }
    drop(insert);
    tx.commit()?;
    Ok(true)
}

fn stored_ids(
    tx: &rusqlite::Transaction<'_>,
    events: &[NewEvent],
) -> Result<Vec<StoredId>, AppendError> {
    let mut statement = tx.prepare_cached(STORED_ID_SQL)?;
    let mut stored = Vec::new();
    for event in events {
        let mut rows = statement.query([event.event_id.as_bytes().as_slice()])?;
        if let Some(row) = rows.next()? {
            stored.push(StoredId {
                event_id: event.event_id,
                stream_id: row.get(0)?,
                stream_version: to_u64(row.get(1)?, 0)?,
                global_position: to_u64(row.get(2)?, 0)?,
            });
        }
    }
    Ok(stored)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
