//! Tamper evidence: a SHA-256 hash chain over the log, built after commit by a sealer.
//!
//! # Why after commit
//!
//! Appends stay as fast as they are: on PostgreSQL, appends from concurrent transactions commit in
//! an order only known at commit, so no appender can know its predecessor's digest. Instead a
//! sealer follows the committed log in exactly the order [`EventStore::read_all`] returns it
//! (`(commit_id, global_position)` below the visibility horizon, which never lets a later commit
//! appear before what was read) and records seals in `event_seals`.
//!
//! # Two digests per event
//!
//! What an appender decides about an event (its stream, id, type, schema version, payload and
//! metadata) is hashed by the appender, in Rust, while it binds the row, and stored with it in
//! `events.content_digest`. Where the event landed (global position, stream version, recorded_at)
//! is decided by the database during the insert, so the sealer adds it when it links the event into
//! the chain. The sealer therefore reads narrow rows (positions, ids, the content digest) instead
//! of payloads, and hashes 104 bytes per event whatever the payload's size. While a [`Sealer`]
//! runs, appends in its process hand it those fields of what they commit, so it mostly reads
//! nothing back (`seal_feed.rs`, which says why that never skips another process's events).
//! Events stored before the column existed have no content digest; the sealer computes it from
//! their content.
//!
//! ```text
//! content_digest(e) = SHA-256( encode_content(e) )                     -- at append
//! chain(0)          = 32 zero bytes                                     (GENESIS_DIGEST)
//! chain(n)          = SHA-256( chain(n - 1) || "patchbay-link-v1"
//!                              || global_position || stream_version || recorded_at
//!                              || content_digest(event n) )             -- by the sealer
//! ```
//!
//! `n` numbers events 1, 2, 3, … in global read order (the event's *sequence*). The link fields
//! are fixed-width: `global_position` and `stream_version` u64 big-endian, `recorded_at`
//! microseconds since 1970-01-01T00:00:00Z as i64 big-endian, so a link hashes 104 bytes (two
//! SHA-256 blocks). [`chain_digest`] computes one link from a stored event.
//!
//! # Encoding of an event's content (version 1)
//!
//! The event **as stored**: payload bytes and schema version before any upcaster ran. Every field
//! is `len || bytes`, with `len` the byte count as an unsigned 64-bit big-endian integer; an
//! optional field is the single byte `0x00` when absent, or `0x01` followed by `len || bytes`.
//! Fields, in this order:
//!
//! | # | field | bytes |
//! |---|---|---|
//! | 1 | format tag | ASCII `patchbay-content-v1` |
//! | 2 | stream_id | UTF-8 |
//! | 3 | event_id | 16 bytes, RFC 9562 byte order |
//! | 4 | event_type | UTF-8 |
//! | 5 | schema_version (stored) | u32, big-endian (4 bytes) |
//! | 6 | payload (stored) | raw bytes |
//! | 7 | correlation_id | 16 bytes |
//! | 8 | causation_id | optional, 16 bytes |
//! | 9 | actor | UTF-8 |
//! | 10 | traceparent | optional, UTF-8 |
//! | 11 | tracestate | optional, UTF-8 |
//!
//! # Seals: one row per batch of events
//!
//! A seal row covers up to [`EVENTS_PER_SEAL`] consecutive events of the chain: their first and
//! last sequence and position, their count, `chain(last)`, and `records`, one 80-byte record per
//! event in chain order:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | global_position, u64 big-endian |
//! | 8..16 | commit_id, u64 big-endian |
//! | 16..32 | event_id |
//! | 32..40 | stream_version, u64 big-endian |
//! | 40..48 | recorded_at, microseconds, i64 big-endian |
//! | 48..80 | content_digest |
//!
//! Writing one row per batch instead of one per event is what makes sealing cheap; the records
//! keep every per-event fact the verifier needs to name an event. `event_seal_head` holds the
//! newest seal's sequence, position and digest; it moves in the same transaction that inserts
//! seals.
//!
//! # Why it is still sound
//!
//! Folding a seal's records from the previous seal's digest must give its `chain_digest`: all link
//! fields of every record (position, version, recorded_at, content digest) are thereby fixed by
//! the chain, exactly as per-event seals fixed them, and one seal's `chain_digest` is the start of
//! the next seal's fold. The verifier never trusts `events.content_digest`: it recomputes every
//! event's content digest from the stored content, so a changed event is found whether or not its
//! content digest column was updated too, and it names the event by comparing with its record.
//! The record's `event_id` and `commit_id` are not link fields; the event id is covered by the
//! content digest, and both only locate events. `commit_id` is PostgreSQL's transaction id, which
//! means nothing outside one database, while everything hashed reads the same on both backends.
//!
//! # Limits
//!
//! Whoever can rewrite the events *and* recompute every later seal (and the head) can hide an edit;
//! the chain makes that detectable only against a copy of a head digest kept outside the database
//! (see [`crate::ChainReport::head`]). Events appended after the newest seal are not covered until the
//! sealer reaches them (normally milliseconds); the sealer takes their content digest from
//! `events.content_digest`, so an edit to both columns before sealing goes unnoticed, as any edit
//! before sealing always did.

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::EventStoreError;
use crate::event::{EventMetadata, LogPosition, NewEvent, RecordedEvent};
use crate::store::{Backend, EventStore, to_u64};
use crate::{postgres, sqlite};

/// The digest before the first event.
pub const GENESIS_DIGEST: [u8; 32] = [0; 32];

/// Field 1 of every event's content encoding: names the format, so a future encoding cannot
/// collide with it.
const CONTENT_TAG: &[u8] = b"patchbay-content-v1";

/// Starts every link's input after the previous digest, for the same reason.
const LINK_TAG: &[u8; 16] = b"patchbay-link-v1";

/// Events a [`Sealer`] seals per transaction: more than the fastest backend appends during one
/// [`DEFAULT_SEAL_LINGER`] (about 15,000), so a busy log is sealed by one transaction per linger
/// instead of a full one and a small one, each with its own commit. The sealer reads narrow rows,
/// so a batch holds about 200 bytes per event in memory.
pub const DEFAULT_SEAL_BATCH: usize = 20_000;

/// Most events one seal row covers. Larger rows mean fewer rows but a larger `records` value to
/// write and, when verifying, to hold in memory; a transaction writes as many rows as it needs.
pub const EVENTS_PER_SEAL: usize = 1_000;

/// How long a [`Sealer`] lets appends accumulate after sealing (see [`Sealer::linger`]).
pub const DEFAULT_SEAL_LINGER: Duration = Duration::from_millis(100);

/// The chain digest of `event` following `previous`: see the module documentation.
///
/// `event` must be the event as stored (not upcast); [`EventStore::read_all`] upcasts, so an auditor
/// re-implementing this reads the table directly or opens the store without upcasters.
pub fn chain_digest(previous: &[u8; 32], event: &RecordedEvent) -> [u8; 32] {
    EventRecord::of(event).link(previous)
}

/// The digest of what the appender decided about `event` (see the module documentation): what an
/// append stores in `events.content_digest`. `event` must be as stored, as for [`chain_digest`].
pub fn content_digest(event: &RecordedEvent) -> [u8; 32] {
    EventContent::of_recorded(event).digest()
}

/// Everything about an event that its appender decides, and its content digest covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventContent<'a> {
    pub stream_id: &'a str,
    pub event_id: Uuid,
    pub event_type: &'a str,
    /// As the backend stores it (PostgreSQL saturates absurd values to `i32::MAX`).
    pub schema_version: u32,
    pub payload: &'a [u8],
    pub metadata: &'a EventMetadata,
}

impl<'a> EventContent<'a> {
    /// A new event's content, with the schema version the backend will store.
    pub(crate) fn of_new(stream_id: &'a str, event: &'a NewEvent, schema_version: u32) -> Self {
        Self {
            stream_id,
            event_id: event.event_id,
            event_type: &event.event_type,
            schema_version,
            payload: &event.payload,
            metadata: &event.metadata,
        }
    }

    pub(crate) fn of_recorded(event: &'a RecordedEvent) -> Self {
        Self {
            stream_id: &event.stream_id,
            event_id: event.event_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            payload: &event.payload,
            metadata: &event.metadata,
        }
    }

    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        field(&mut hasher, CONTENT_TAG);
        field(&mut hasher, self.stream_id.as_bytes());
        field(&mut hasher, self.event_id.as_bytes());
        field(&mut hasher, self.event_type.as_bytes());
        field(&mut hasher, &self.schema_version.to_be_bytes());
        field(&mut hasher, self.payload);
        field(&mut hasher, self.metadata.correlation_id.as_bytes());
        optional(
            &mut hasher,
            self.metadata
                .causation_id
                .as_ref()
                .map(|id| &id.as_bytes()[..]),
        );
        field(&mut hasher, self.metadata.actor.as_bytes());
        optional(
            &mut hasher,
            self.metadata.traceparent.as_deref().map(str::as_bytes),
        );
        optional(
            &mut hasher,
            self.metadata.tracestate.as_deref().map(str::as_bytes),
        );
        hasher.finalize().into()
    }
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

fn optional(hasher: &mut Sha256, bytes: Option<&[u8]>) {
    match bytes {
        None => hasher.update([0]),
        Some(bytes) => {
            hasher.update([1]);
            field(hasher, bytes);
        }
    }
}

/// Bytes of one event's record in a seal's `records`.
pub(crate) const RECORD_LEN: usize = 80;

/// One sealed event: its link fields, plus the ids that locate it (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventRecord {
    pub position: LogPosition,
    pub event_id: Uuid,
    pub stream_version: u64,
    pub recorded_at_micros: i64,
    pub content_digest: [u8; 32],
}

impl EventRecord {
    /// The record of a stored event, its content digest computed from its content.
    pub(crate) fn of(event: &RecordedEvent) -> Self {
        Self {
            position: event.position,
            event_id: event.event_id,
            stream_version: event.stream_version,
            recorded_at_micros: event.recorded_at.timestamp_micros(),
            content_digest: content_digest(event),
        }
    }

    /// The chain digest after this event, following `previous`.
    pub(crate) fn link(&self, previous: &[u8; 32]) -> [u8; 32] {
        let mut input = [0_u8; 104];
        input[..32].copy_from_slice(previous);
        input[32..48].copy_from_slice(LINK_TAG);
        input[48..56].copy_from_slice(&self.position.global_position.to_be_bytes());
        input[56..64].copy_from_slice(&self.stream_version.to_be_bytes());
        input[64..72].copy_from_slice(&self.recorded_at_micros.to_be_bytes());
        input[72..].copy_from_slice(&self.content_digest);
        Sha256::digest(input).into()
    }

    /// Whether both hash to the same link: all link fields equal (ids may differ).
    pub(crate) fn same_link(&self, other: &EventRecord) -> bool {
        self.position.global_position == other.position.global_position
            && self.stream_version == other.stream_version
            && self.recorded_at_micros == other.recorded_at_micros
            && self.content_digest == other.content_digest
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.position.global_position.to_be_bytes());
        out.extend_from_slice(&self.position.commit_id.to_be_bytes());
        out.extend_from_slice(self.event_id.as_bytes());
        out.extend_from_slice(&self.stream_version.to_be_bytes());
        out.extend_from_slice(&self.recorded_at_micros.to_be_bytes());
        out.extend_from_slice(&self.content_digest);
    }

    /// The records of a seal's `records` value; None when its length is not a whole number of
    /// records (the seal was edited by hand).
    pub(crate) fn decode_all(bytes: &[u8]) -> Option<Vec<EventRecord>> {
        if !bytes.len().is_multiple_of(RECORD_LEN) {
            return None;
        }
        bytes
            .chunks_exact(RECORD_LEN)
            .map(|record| {
                let u64_at = |at: usize| {
                    record
                        .get(at..at + 8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                };
                Some(EventRecord {
                    position: LogPosition {
                        global_position: u64::from_be_bytes(u64_at(0)?),
                        commit_id: u64::from_be_bytes(u64_at(8)?),
                    },
                    event_id: Uuid::from_slice(record.get(16..32)?).ok()?,
                    stream_version: u64::from_be_bytes(u64_at(32)?),
                    recorded_at_micros: i64::from_be_bytes(u64_at(40)?),
                    content_digest: record.get(48..80)?.try_into().ok()?,
                })
            })
            .collect()
    }
}

/// An event not sealed yet, as the sealer reads it: no payload, only what its link needs.
#[derive(Debug, Clone)]
pub(crate) struct UnsealedEvent {
    pub position: LogPosition,
    pub event_id: Uuid,
    pub stream_version: u64,
    pub recorded_at_micros: i64,
    /// `events.content_digest`; None for events appended before the column existed.
    pub content_digest: Option<Vec<u8>>,
}

/// The newest seal: how far the chain reaches and the digest everything up to there hashes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Number of sealed events (0: nothing sealed yet).
    pub sequence: u64,
    /// Position of the last sealed event (`LogPosition::START` when nothing is sealed).
    pub position: LogPosition,
    /// Its chain digest ([`GENESIS_DIGEST`] when nothing is sealed).
    pub digest: [u8; 32],
}

impl ChainHead {
    pub const GENESIS: ChainHead = ChainHead {
        sequence: 0,
        position: LogPosition::START,
        digest: GENESIS_DIGEST,
    };

    /// The digest in lowercase hex, to write down outside the database and compare later.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }
}

impl std::fmt::Display for ChainHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seal #{} at global position {}, chain digest {}",
            self.sequence,
            self.position.global_position,
            self.digest_hex()
        )
    }
}

/// What one [`EventStore::seal`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealProgress {
    /// Events this call sealed: 0 when nothing new was visible, or when another sealer sealed them.
    pub sealed: u64,
    /// The newest seal after this call.
    pub head: ChainHead,
    /// True when every event visible now is sealed, so a caller may wait for new ones.
    pub caught_up: bool,
}

/// A seal row: consecutive events `first_sequence..=last_sequence` of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredSeal {
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub first_position: LogPosition,
    pub last_position: LogPosition,
    pub event_count: u64,
    /// The chain digest after event `last_sequence`.
    pub chain_digest: [u8; 32],
    /// One [`RECORD_LEN`]-byte record per event, in chain order.
    pub records: Vec<u8>,
}

/// The head row (None if it was deleted) and the highest seal sequence, read together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SealHeadState {
    pub head: Option<ChainHead>,
    pub max_sequence: u64,
}

/// Columns of a seal row, in the order [`decode_seal`] expects (the same on both backends).
pub(crate) const SEAL_COLUMNS: &str = "first_sequence, last_sequence, first_commit_id, first_global_position, \
     last_commit_id, last_global_position, event_count, chain_digest, records";

/// Decodes a row of [`SEAL_COLUMNS`], whichever backend read it.
pub(crate) fn decode_seal<R>(row: &R) -> Result<StoredSeal, EventStoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let last_sequence = to_u64(row.try_get(1)?, 0)?;
    Ok(StoredSeal {
        first_sequence: to_u64(row.try_get(0)?, 0)?,
        last_sequence,
        first_position: LogPosition {
            commit_id: to_u64(row.try_get(2)?, 0)?,
            global_position: to_u64(row.try_get(3)?, 0)?,
        },
        last_position: LogPosition {
            commit_id: to_u64(row.try_get(4)?, 0)?,
            global_position: to_u64(row.try_get(5)?, 0)?,
        },
        event_count: to_u64(row.try_get(6)?, 0)?,
        chain_digest: digest_from_row(
            row.try_get(7)?,
            &format!("the seal ending at #{last_sequence}"),
        )?,
        records: row.try_get(8)?,
    })
}

/// Decodes the row of the seal-head query: head sequence, commit id, global position and digest
/// (all NULL when the head row is missing), then the highest seal sequence stored.
pub(crate) fn decode_seal_head<R>(row: &R) -> Result<SealHeadState, EventStoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let sequence: Option<i64> = row.try_get(0)?;
    let head = match sequence {
        None => None,
        Some(sequence) => Some(ChainHead {
            sequence: to_u64(sequence, 0)?,
            position: LogPosition {
                commit_id: to_u64(row.try_get(1)?, 0)?,
                global_position: to_u64(row.try_get(2)?, 0)?,
            },
            digest: digest_from_row(row.try_get(3)?, "the seal head")?,
        }),
    };
    Ok(SealHeadState {
        head,
        max_sequence: to_u64(row.try_get(4)?, 0)?,
    })
}

/// Turns a stored digest into 32 bytes, or says which row holds a digest of the wrong length.
pub(crate) fn digest_from_row(bytes: Vec<u8>, row: &str) -> Result<[u8; 32], EventStoreError> {
    let length = bytes.len();
    bytes.try_into().map_err(|_| EventStoreError::Corrupt {
        global_position: 0,
        reason: format!(
            "{row} holds a {length}-byte chain digest instead of 32; the seal tables were edited by hand"
        ),
    })
}

impl EventStore {
    /// Seals up to `max_events` committed, visible events after the newest seal, in global read order.
    ///
    /// Reads the events' narrow rows and links them first, then inserts one seal row per
    /// [`EVENTS_PER_SEAL`] events and moves the head in one transaction, only if no other sealer
    /// moved the head meanwhile (compare-and-set on its sequence). So it is idempotent, and two
    /// processes sealing the same database at once produce one chain: the loser of a race writes
    /// nothing and returns `sealed: 0, caught_up: false`.
    pub async fn seal(&self, max_events: usize) -> Result<SealProgress, EventStoreError> {
        let max_events = max_events.max(1);
        let head = self.seal_head().await?;
        let (records, from_feed) = self.unsealed_records(head.position, max_events).await?;
        let Some(last) = records.last() else {
            return Ok(SealProgress {
                sealed: 0,
                head,
                caught_up: true,
            });
        };
        let mut digest = head.digest;
        let mut seals = Vec::with_capacity(records.len().div_ceil(EVENTS_PER_SEAL));
        let mut first_sequence = head.sequence + 1;
        for batch in records.chunks(EVENTS_PER_SEAL) {
            let mut encoded = Vec::with_capacity(batch.len() * RECORD_LEN);
            for record in batch {
                digest = record.link(&digest);
                record.encode_into(&mut encoded);
            }
            let count = batch.len() as u64;
            seals.push(StoredSeal {
                first_sequence,
                last_sequence: first_sequence + count - 1,
                first_position: batch.first().map_or(last.position, |r| r.position),
                last_position: batch.last().map_or(last.position, |r| r.position),
                event_count: count,
                chain_digest: digest,
                records: encoded,
            });
            first_sequence += count;
        }
        let new_head = ChainHead {
            sequence: head.sequence + records.len() as u64,
            position: last.position,
            digest,
        };
        let stored = match self.backend() {
            Backend::Postgres(pool) => {
                postgres::store_seals(
                    &mut *pool.acquire().await?,
                    head.sequence,
                    &new_head,
                    &seals,
                )
                .await?
            }
            Backend::Sqlite(pool) => match self.sqlite_writer() {
                Some(writer) => writer.store_seals(head.sequence, new_head, seals).await?,
                None => sqlite::store_seals(pool, head.sequence, &new_head, &seals).await?,
            },
        };
        if !stored {
            let head = self.seal_head_state().await?.head.unwrap_or(head);
            return Ok(SealProgress {
                sealed: 0,
                head,
                caught_up: false,
            });
        }
        if from_feed {
            self.count_sealed_from_feed(records.len());
        }
        Ok(SealProgress {
            sealed: records.len() as u64,
            head: new_head,
            caught_up: records.len() < max_events,
        })
    }

    /// The records of up to `limit` visible events after `after`, in read order: from what this
    /// process's SQLite writer just committed when it holds the next position (see
    /// `seal_feed.rs`), else from narrow rows, and from the full rows of those stored without a
    /// content digest. True when they came from this process's own commits.
    async fn unsealed_records(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<(Vec<EventRecord>, bool), EventStoreError> {
        if let Some(writer) = self.sqlite_writer() {
            let committed = writer.committed_after(after.global_position, limit);
            if !committed.is_empty() {
                return Ok((committed, true));
            }
        }
        if let Backend::Postgres(pool) = self.backend()
            && let Some(committed) = self.fed_commits(pool, after, limit).await?
        {
            return Ok((committed, true));
        }
        let unsealed = match self.backend() {
            Backend::Postgres(pool) => {
                postgres::read_unsealed(&mut *pool.acquire().await?, after, limit).await?
            }
            Backend::Sqlite(pool) => {
                sqlite::read_unsealed(&mut *pool.acquire().await?, after, limit).await?
            }
        };
        let mut records = Vec::with_capacity(unsealed.len());
        let mut without_digest = Vec::new();
        for (index, event) in unsealed.into_iter().enumerate() {
            // NULL (appended before the column existed), the wrong length or all zeros (which the
            // SQLite backend reads for NULL): not a digest an append wrote.
            let digest = event
                .content_digest
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .filter(|digest| *digest != [0; 32]);
            if digest.is_none() {
                without_digest.push((index, event.position.global_position));
            }
            records.push(EventRecord {
                position: event.position,
                event_id: event.event_id,
                stream_version: event.stream_version,
                recorded_at_micros: event.recorded_at_micros,
                content_digest: digest.unwrap_or(GENESIS_DIGEST),
            });
        }
        if without_digest.is_empty() {
            return Ok((records, false));
        }
        // Appended before content digests existed, or the column was edited: hash the content.
        let positions: Vec<u64> = without_digest.iter().map(|(_, p)| *p).collect();
        let full = match self.backend() {
            Backend::Postgres(pool) => {
                postgres::read_events_at(&mut *pool.acquire().await?, &positions).await?
            }
            Backend::Sqlite(pool) => {
                sqlite::read_events_at(&mut *pool.acquire().await?, &positions).await?
            }
        };
        let by_position: std::collections::HashMap<u64, &RecordedEvent> = full
            .iter()
            .map(|event| (event.position.global_position, event))
            .collect();
        for (index, position) in without_digest {
            let record = records
                .get_mut(index)
                .ok_or_else(|| EventStoreError::Corrupt {
                    global_position: position,
                    reason: "the sealer lost track of an event it read".to_owned(),
                })?;
            let event = by_position
                .get(&position)
                .ok_or_else(|| EventStoreError::Corrupt {
                    global_position: position,
                    reason: "the event disappeared while it was being sealed".to_owned(),
                })?;
            record.content_digest = content_digest(event);
        }
        Ok((records, false))
    }

    /// PostgreSQL: the next `limit` events of the chain from what this process committed (see
    /// `seal_feed.rs`), if the database confirms that no other transaction below the visibility
    /// horizon appended any; None when the table must be read.
    async fn fed_commits(
        &self,
        pool: &sqlx::PgPool,
        after: LogPosition,
        limit: usize,
    ) -> Result<Option<Vec<EventRecord>>, EventStoreError> {
        let mut conn = pool.acquire().await?;
        let horizon = postgres::visibility_horizon(&mut conn).await?;
        let Some(candidates) = self.commit_feed().candidates(after, horizon, limit) else {
            return Ok(None);
        };
        let head = candidates.probe_head_commit.then_some(after);
        if (head.is_some() || !candidates.unfed_commits.is_empty())
            && postgres::holds_events(&mut conn, &candidates.unfed_commits, head).await?
        {
            return Ok(None);
        }
        Ok(Some(candidates.records))
    }

    /// The newest seal: how far the chain reaches. `count_after(head.position)` is the sealer's lag.
    pub async fn seal_head(&self) -> Result<ChainHead, EventStoreError> {
        self.seal_head_state()
            .await?
            .head
            .ok_or_else(|| EventStoreError::Corrupt {
                global_position: 0,
                reason:
                    "the seal head row (event_seal_head, id 1) is missing, so the chain cannot \
                         be extended; run `patchbay audit verify` and restore the row from a backup"
                        .to_owned(),
            })
    }

    pub(crate) async fn seal_head_state(&self) -> Result<SealHeadState, EventStoreError> {
        match self.backend() {
            Backend::Postgres(pool) => postgres::load_seal_head(&mut *pool.acquire().await?).await,
            Backend::Sqlite(pool) => sqlite::load_seal_head(&mut *pool.acquire().await?).await,
        }
    }
}

/// Longest wait between seals when nothing wakes the sealer (a notification can be lost).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// First re-poll after a wake-up that found nothing visible yet (an earlier transaction still open).
const HIDDEN_RETRY: Duration = Duration::from_millis(2);
/// Longest pause between those re-polls.
const HIDDEN_RETRY_MAX: Duration = Duration::from_millis(10);
/// Longest pause before retrying after a transient database error.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Seals a store's log continuously, as events are appended. Safe to run in every replica.
#[derive(Debug, Clone)]
pub struct Sealer {
    store: EventStore,
    batch_size: usize,
    linger: Duration,
}

impl Sealer {
    /// A sealer for `store`, sealing up to [`DEFAULT_SEAL_BATCH`] events per transaction.
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            batch_size: DEFAULT_SEAL_BATCH,
            linger: DEFAULT_SEAL_LINGER,
        }
    }

    /// Seals up to `batch_size` events per transaction (at least 1).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// After sealing the events that woke it, waits this long before looking again, so that
    /// under a steady stream of appends each transaction seals a larger batch. Events stay
    /// unsealed at most about this long plus one batch; zero seals as soon as woken.
    #[must_use]
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Seals until `shutdown`: catches up, then wakes on the same notifications as subscriptions.
    ///
    /// Transient database errors (connection loss, busy) are logged and retried with backoff; any
    /// other error ends the task. A batch being sealed when `shutdown` fires is finished first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), EventStoreError> {
        let _feed = self.store.keep_commits_for_sealer();
        let mut wake = self.store.append_wake_ups();
        let mut hidden_retry = None;
        let mut error_backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            wake.borrow_and_update();
            let progress = match self.store.seal(self.batch_size).await {
                Ok(progress) => progress,
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, "sealing the event log failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(error_backoff) => {}
                    }
                    error_backoff = (error_backoff * 2).min(ERROR_BACKOFF_MAX);
                    continue;
                }
                Err(error) => return Err(error),
            };
            error_backoff = Duration::from_millis(100);
            if !progress.caught_up {
                // More is visible already, or another sealer won the race: go on at once.
                continue;
            }
            if progress.sealed > 0 {
                hidden_retry = None;
                // Let appends accumulate: each transaction has fixed costs (round trips, a commit
                // that, on SQLite, holds the write lock appenders wait for), so sealing many events
                // at once costs less per event, and that cost competes with the appenders for the
                // same cores.
                if !self.linger.is_zero() {
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(self.linger) => {}
                    }
                    continue;
                }
            }
            // After a wake-up that found nothing, the new events sit behind a transaction that is
            // still open (PostgreSQL): re-poll quickly, backing off a little, as subscriptions do.
            let wait = hidden_retry.unwrap_or(IDLE_POLL);
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                woken = tokio::time::timeout(wait, wake.changed()) => match woken {
                    Ok(Ok(())) => hidden_retry = Some(HIDDEN_RETRY),
                    Ok(Err(_)) => tokio::time::sleep(wait).await,
                    // Still nothing: back off, and after the longest quick pause fall back to
                    // idle polling (a wake-up can also mean another replica's sealer got there).
                    Err(_) => {
                        hidden_retry = hidden_retry
                            .filter(|d| *d < HIDDEN_RETRY_MAX)
                            .map(|d| (d * 2).min(HIDDEN_RETRY_MAX));
                    }
                },
            }
        }
        Ok(())
    }
}
