//! The event store's error type: each variant says what went wrong and what the caller can do.

use crate::event::ExpectedVersion;

#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    /// Optimistic concurrency: the stream moved on since the caller read it.
    #[error(
        "stream '{stream_id}' is at {}, but the append expected {expected}; reload the stream and decide again",
        match actual { Some(v) => format!("version {v}"), None => "no stream".to_owned() }
    )]
    Conflict {
        stream_id: String,
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    /// Some, but not all, event ids of a batch are already stored, or they are stored in another stream.
    #[error(
        "event id {event_id} is already stored {detail}; an event id must not be reused for a different append"
    )]
    EventIdReused {
        event_id: uuid::Uuid,
        detail: String,
    },
    /// The caller passed something the store cannot accept.
    #[error("{0}")]
    InvalidInput(String),
    /// A stored row could not be turned back into an event.
    #[error("event at global position {global_position} is corrupt: {reason}")]
    Corrupt {
        global_position: u64,
        reason: String,
    },
    /// An upcaster refused an old payload.
    #[error(
        "cannot upcast {event_type} v{from_version} at global position {global_position}: {reason}"
    )]
    Upcast {
        event_type: String,
        from_version: u32,
        global_position: u64,
        reason: String,
    },
    /// The database URL names no backend this store supports.
    #[error("unsupported database URL '{0}': use postgres://... or sqlite://PATH")]
    UnsupportedUrl(String),
    /// Migrating the schema failed.
    #[error("migrating the event store schema failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A SQLite read or append made outside sqlx (the rusqlite reader and writer) failed.
    #[error("SQLite failed: {message}")]
    Sqlite {
        message: String,
        /// The database was locked by another writer for longer than the busy timeout.
        busy: bool,
    },
}

impl EventStoreError {
    /// A rusqlite failure while doing `context` (e.g. "appending to stream 'x' in /var/lib/...").
    pub(crate) fn sqlite(context: impl std::fmt::Display, error: &rusqlite::Error) -> Self {
        let busy = matches!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        let hint = if busy {
            "; another process holds the database's write lock: stop it or retry later"
        } else {
            ""
        };
        EventStoreError::Sqlite {
            message: format!("{context}: {error}{hint}"),
            busy,
        }
    }

    /// Whether retrying the same operation later may succeed (connection loss, pool timeout, busy).
    pub fn is_transient(&self) -> bool {
        match self {
            EventStoreError::Database(error) => {
                matches!(
                    error,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Protocol(_)
                ) || error
                    .as_database_error()
                    .and_then(|db| db.code())
                    .is_some_and(|code| {
                        // PostgreSQL: serialization failure, deadlock, connection exceptions, admin shutdown.
                        // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6).
                        matches!(&*code, "40001" | "40P01" | "57P01" | "5" | "6")
                            || code.starts_with("08")
                    })
            }
            EventStoreError::Sqlite { busy, .. } => *busy,
            _ => false,
        }
    }
}
