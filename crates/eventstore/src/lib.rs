//! Patchbay's event store: each service's append-only log on PostgreSQL (production) or SQLite
//! (embedded), with optimistic concurrency, idempotent appends, a global order that never skips a
//! late-committing transaction, catch-up + live subscriptions, an inbox for idempotent consumers,
//! snapshots, upcasters, and tamper evidence (a hash chain over the log, see [`Sealer`] and
//! [`EventStore::verify_chain`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), patchbay_eventstore::EventStoreError> {
//! use patchbay_eventstore::{EventStore, ExpectedVersion, NewEvent};
//! let store = EventStore::connect("sqlite://approvals.db").await?;
//! let approved = NewEvent::new("UpdateApproved", 1, b"protobuf bytes".to_vec()).actor("user:alice");
//! let result = store.append("approval-KB123", ExpectedVersion::NoStream, &[approved]).await?;
//! assert_eq!(result.stream_version, 1);
//! # Ok(()) }
//! ```

mod error;
mod event;
mod notify;
mod pg_copy;
mod postgres;
mod replay;
mod seal;
mod seal_feed;
mod snapshot;
mod sqlite;
mod sqlite_checkpoint;
mod sqlite_reader;
mod sqlite_writer;
mod store;
mod subscription;
mod upcast;
mod verify;
mod view;

pub use error::EventStoreError;
pub use event::{
    AppendResult, EventMetadata, ExpectedVersion, LogPosition, MAX_BATCH, MAX_STREAM_ID_LEN,
    NewEvent, RecordedEvent, Snapshot, StreamAppend, validate_event_type,
};
pub use postgres::raw_insert as postgres_raw_insert;
pub use replay::Replay;
pub use seal::{
    ChainHead, DEFAULT_SEAL_BATCH, DEFAULT_SEAL_LINGER, EVENTS_PER_SEAL, GENESIS_DIGEST,
    SealProgress, Sealer, chain_digest, content_digest,
};
pub use snapshot::{
    AsOf, AsOfError, DEFAULT_MARK_EVERY, DEFAULT_SNAPSHOT_EVERY, DEFAULT_SNAPSHOT_POLL,
    SnapshotError, SnapshotInfo, SnapshotPass, Snapshottable, Snapshotter, TimeMark,
    latest_time_mark, load_as_of, take_time_mark, time_mark_at_or_after,
};
pub use store::{EventStore, SealFeedGuard, SqliteDurability, StoreOptions, Transaction};
pub use subscription::Subscription;
pub use upcast::Upcasters;
pub use verify::{ChainProblem, ChainReport};
pub use view::{LiveView, Positioned, Projection, ViewError};
