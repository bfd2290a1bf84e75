//! Reads of a SQLite log's global order through read-only rusqlite connections, for long replays.
//!
//! sqlx runs SQLite on a worker thread and hands every row to the caller as a message, copying each
//! column on the way (`sqlite3_value_dup`); for a replay that is most of the cost of reading an
//! event (docs/benchmarks.md, "Replay"). Here a blocking thread steps the statement itself and
//! builds each event straight from the borrowed column values. In WAL mode these connections read
//! beside the sqlx pool's writer without blocking it; each read is one statement, so one snapshot.
//! An in-memory database keeps reading through sqlx: a second connection to it shares its cache,
//! where SQLite locks tables without waiting instead of using WAL.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::DateTime;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use uuid::Uuid;

use crate::error::EventStoreError;
use crate::event::{EventMetadata, LogPosition, RecordedEvent};
use crate::sqlite::EVENT_COLUMNS;

/// A page of the global order; with `with_digest`, each row's `content_digest` follows the event
/// columns (`sqlite::EVENT_COLUMNS`, the order [`decode_row`] expects) as column 13.
fn read_all_sql(with_digest: bool) -> String {
    format!(
        "SELECT {EVENT_COLUMNS}{digest} FROM events WHERE global_position > ?1 \
         ORDER BY global_position LIMIT ?2",
        digest = if with_digest { ", content_digest" } else { "" },
    )
}

/// Idle connections kept for the next read: one per concurrent replay is plenty on two cores.
const IDLE_CONNECTIONS: usize = 2;

/// Read-only connections to one SQLite file, opened on first use and reused.
#[derive(Debug, Clone)]
pub(crate) struct SqliteReader {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// Set by [`EventStore::close`](crate::EventStore::close): reads fail as the closed pool's do.
    closed: Arc<AtomicBool>,
}

impl SqliteReader {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Arc::new(Mutex::new(Vec::new())),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Closes the idle connections; later reads fail like the closed pool's.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Up to `limit` events after `after` in global order, as stored (not upcast).
    pub(crate) async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        self.on_connection(move |connection| {
            read_page(connection, &read_all_sql(false), after, limit, decode_row)
        })
        .await
    }

    /// [`SqliteReader::read_all`] with each row's `content_digest`, for the chain verifier.
    pub(crate) async fn read_all_with_digests(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<(RecordedEvent, Option<Vec<u8>>)>, EventStoreError> {
        self.on_connection(move |connection| {
            read_page(connection, &read_all_sql(true), after, limit, |row| {
                let event = decode_row(row)?;
                let digest = match row
                    .get_ref(13)
                    .map_err(|error| EventStoreError::sqlite("reading content_digest", &error))?
                {
                    ValueRef::Null => None,
                    // A digest edited into text is still bytes the verifier compares.
                    ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Some(bytes.to_vec()),
                    ValueRef::Integer(_) | ValueRef::Real(_) => {
                        return Err(EventStoreError::Corrupt {
                            global_position: event.position.global_position,
                            reason: "column content_digest holds a number".to_owned(),
                        });
                    }
                };
                Ok((event, digest))
            })
        })
        .await
    }

    /// Runs `read` on an idle (or new) connection on a blocking thread; the connection is kept
    /// for the next read only if this one succeeded.
    async fn on_connection<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, EventStoreError> + Send + 'static,
    ) -> Result<T, EventStoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(EventStoreError::Database(sqlx::Error::PoolClosed));
        }
        let reader = self.clone();
        tokio::task::spawn_blocking(move || {
            let connection = reader.connection()?;
            let result = read(&connection);
            if result.is_ok() {
                reader.give_back(connection);
            }
            result
        })
        .await
        .map_err(|error| EventStoreError::Sqlite {
            message: format!("the reading thread failed: {error}"),
            busy: false,
        })?
    }

    fn connection(&self) -> Result<Connection, EventStoreError> {
        if let Some(connection) = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
        {
            return Ok(connection);
        }
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| read_error(&self.path, &error))?;
        // A checkpoint may hold the WAL index briefly; wait as the pool's connections do.
        connection
            .busy_timeout(Duration::from_secs(30))
            .map_err(|error| read_error(&self.path, &error))?;
        Ok(connection)
    }

    fn give_back(&self, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CONNECTIONS && !self.closed.load(Ordering::SeqCst) {
            idle.push(connection);
        }
    }
}

fn read_error(path: &std::path::Path, error: &rusqlite::Error) -> EventStoreError {
    EventStoreError::sqlite(format_args!("reading {}", path.display()), error)
}

fn read_page<T>(
    connection: &Connection,
    sql: &str,
    after: LogPosition,
    limit: usize,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T, EventStoreError>,
) -> Result<Vec<T>, EventStoreError> {
    let fail = |error: rusqlite::Error| EventStoreError::sqlite("reading the log", &error);
    let mut statement = connection.prepare(sql).map_err(fail)?;
    let mut rows = statement
        .query((
            i64::try_from(after.global_position).unwrap_or(i64::MAX),
            i64::try_from(limit).unwrap_or(i64::MAX),
        ))
        .map_err(fail)?;
    let mut page = Vec::with_capacity(limit.min(16_384));
    while let Some(row) = rows.next().map_err(fail)? {
        page.push(decode(row)?);
    }
    Ok(page)
}

/// One row of [`read_all_sql`] as an event; a value of the wrong type is a corrupt row, named by its
/// position, never a panic.
fn decode_row(row: &rusqlite::Row<'_>) -> Result<RecordedEvent, EventStoreError> {
    let column = |index: usize| {
        row.get_ref(index)
            .map_err(|error| EventStoreError::sqlite("reading an event", &error))
    };
    let position = match column(0)? {
        ValueRef::Integer(position) => u64::try_from(position).unwrap_or(0),
        _ => 0,
    };
    let corrupt = |what: &str| EventStoreError::Corrupt {
        global_position: position,
        reason: format!("column {what} holds a value of the wrong type or range"),
    };
    let integer = |index: usize, what: &str| match column(index)? {
        ValueRef::Integer(value) => Ok(value),
        _ => Err(corrupt(what)),
    };
    let text = |index: usize, what: &str| match column(index)? {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| corrupt(what)),
        _ => Err(corrupt(what)),
    };
    let optional_text = |index: usize, what: &str| match column(index)? {
        ValueRef::Null => Ok(None),
        _ => text(index, what).map(Some),
    };
    let uuid = |index: usize, what: &str| match column(index)? {
        ValueRef::Blob(bytes) => Uuid::from_slice(bytes).map_err(|_| corrupt(what)),
        _ => Err(corrupt(what)),
    };
    let payload = match column(6)? {
        ValueRef::Blob(bytes) => bytes.to_vec(),
        _ => return Err(corrupt("payload")),
    };
    Ok(RecordedEvent {
        position: LogPosition {
            commit_id: 0,
            global_position: position,
        },
        stream_id: text(1, "stream_id")?,
        stream_version: u64::try_from(integer(2, "stream_version")?)
            .map_err(|_| corrupt("stream_version"))?,
        event_id: uuid(3, "event_id")?,
        event_type: text(4, "event_type")?,
        schema_version: u32::try_from(integer(5, "schema_version")?)
            .map_err(|_| corrupt("schema_version"))?,
        payload,
        metadata: EventMetadata {
            correlation_id: uuid(7, "correlation_id")?,
            causation_id: match column(8)? {
                ValueRef::Null => None,
                _ => Some(uuid(8, "causation_id")?),
            },
            actor: text(9, "actor")?,
            traceparent: optional_text(10, "traceparent")?,
            tracestate: optional_text(11, "tracestate")?,
        },
        recorded_at: DateTime::from_timestamp_micros(integer(12, "recorded_at_micros")?)
            .ok_or_else(|| corrupt("recorded_at_micros"))?,
    })
}
