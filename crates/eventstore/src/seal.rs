//! Tamper evidence: a SHA-256 hash chain over the log, built after commit by a sealer.
//!
//! # Why after commit
//!
//! Appends stay as fast as they are: on PostgreSQL, appends from concurrent transactions commit in
//! an order only known at commit, so no appender can know its predecessor's digest. Instead a
//! sealer follows the committed log in exactly the order [`EventStore::read_all`] returns it
//! (`(commit_id, global_position)` below the visibility horizon, which never lets a later commit
//! appear before what was read) and records one seal per event in `event_seals`.
//!
//! # The chain
//!
//! Seal number `n` (1, 2, 3, … in global read order) holds
//!
//! ```text
//! chain_digest(0) = 32 zero bytes
//! chain_digest(n) = SHA-256( chain_digest(n - 1) || encode(event n) )
//! ```
//!
//! and also the event's `global_position`, `commit_id` and `event_id`, so the verifier can say which
//! event was removed or moved, not only where the chain broke. `event_seal_head` holds the newest
//! seal's sequence, position and digest; it moves in the same transaction that inserts seals.
//!
//! # Encoding of one event (version 1)
//!
//! The event **as stored**: payload bytes and schema version before any upcaster ran. Every field
//! is `len || bytes`, with `len` the byte count as an unsigned 64-bit big-endian integer; an
//! optional field is the single byte `0x00` when absent, or `0x01` followed by `len || bytes`.
//! Fields, in this order:
//!
//! | # | field | bytes |
//! |---|---|---|
//! | 1 | format tag | ASCII `patchbay-event-v1` |
//! | 2 | global_position | u64, big-endian (8 bytes) |
//! | 3 | stream_id | UTF-8 |
//! | 4 | stream_version | u64, big-endian |
//! | 5 | event_id | 16 bytes, RFC 9562 byte order |
//! | 6 | event_type | UTF-8 |
//! | 7 | schema_version (stored) | u32, big-endian (4 bytes) |
//! | 8 | payload (stored) | raw bytes |
//! | 9 | correlation_id | 16 bytes |
//! | 10 | causation_id | optional, 16 bytes |
//! | 11 | actor | UTF-8 |
//! | 12 | traceparent | optional, UTF-8 |
//! | 13 | tracestate | optional, UTF-8 |
//! | 14 | recorded_at | microseconds since 1970-01-01T00:00:00Z, i64 big-endian |
//!
//! `commit_id` is not hashed: it is PostgreSQL's transaction id, which means nothing outside one
//! database, while everything hashed reads the same on both backends. The seal row records it, and
//! the verifier checks it.
//!
//! # Limits
//!
//! Whoever can rewrite the events *and* recompute every later seal (and the head) can hide an edit;
//! the chain makes that detectable only against a copy of a head digest kept outside the database
//! (see [`crate::ChainReport::head`]). Events appended after the newest seal are not covered until the
//! sealer reaches them (normally milliseconds).

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::EventStoreError;
use crate::event::{LogPosition, RecordedEvent};
use crate::store::{Backend, EventStore};
use crate::{postgres, sqlite};

/// The digest before the first event.
pub const GENESIS_DIGEST: [u8; 32] = [0; 32];

/// Field 1 of every event's encoding: names the format, so a future encoding cannot collide with it.
const ENCODING_TAG: &[u8] = b"patchbay-event-v1";

/// Events a [`Sealer`] seals per transaction.
pub const DEFAULT_SEAL_BATCH: usize = 10_000;

/// How long a [`Sealer`] lets appends accumulate after sealing (see [`Sealer::linger`]).
pub const DEFAULT_SEAL_LINGER: Duration = Duration::from_millis(100);

/// The chain digest of `event` following `previous`: see the module documentation for the encoding.
///
/// `event` must be the event as stored (not upcast); [`EventStore::read_all`] upcasts, so an auditor
/// re-implementing this reads the table directly or opens the store without upcasters.
pub fn chain_digest(previous: &[u8; 32], event: &RecordedEvent) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    field(&mut hasher, ENCODING_TAG);
    field(&mut hasher, &event.position.global_position.to_be_bytes());
    field(&mut hasher, event.stream_id.as_bytes());
    field(&mut hasher, &event.stream_version.to_be_bytes());
    field(&mut hasher, event.event_id.as_bytes());
    field(&mut hasher, event.event_type.as_bytes());
    field(&mut hasher, &event.schema_version.to_be_bytes());
    field(&mut hasher, &event.payload);
    field(&mut hasher, event.metadata.correlation_id.as_bytes());
    optional(
        &mut hasher,
        event
            .metadata
            .causation_id
            .as_ref()
            .map(|id| &id.as_bytes()[..]),
    );
    field(&mut hasher, event.metadata.actor.as_bytes());
    optional(
        &mut hasher,
        event.metadata.traceparent.as_deref().map(str::as_bytes),
    );
    optional(
        &mut hasher,
        event.metadata.tracestate.as_deref().map(str::as_bytes),
    );
    field(
        &mut hasher,
        &event.recorded_at.timestamp_micros().to_be_bytes(),
    );
    hasher.finalize().into()
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

/// A seal row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredSeal {
    pub sequence: u64,
    pub position: LogPosition,
    pub event_id: Uuid,
    pub chain_digest: [u8; 32],
}

/// The head row (None if it was deleted) and the highest seal sequence, read together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SealHeadState {
    pub head: Option<ChainHead>,
    pub max_sequence: u64,
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
    /// Reads and hashes the events first, then inserts their seals and moves the head in one
    /// transaction, only if no other sealer moved the head meanwhile (compare-and-set on its
    /// sequence). So it is idempotent, and two processes sealing the same database at once produce
    /// one chain: the loser of a race writes nothing and returns `sealed: 0, caught_up: false`.
    pub async fn seal(&self, max_events: usize) -> Result<SealProgress, EventStoreError> {
        let max_events = max_events.max(1);
        let head = self.seal_head().await?;
        let events = self.read_all_stored(head.position, max_events).await?;
        let Some(last) = events.last() else {
            return Ok(SealProgress {
                sealed: 0,
                head,
                caught_up: true,
            });
        };
        let mut digest = head.digest;
        let mut seals = Vec::with_capacity(events.len());
        for (sequence, event) in (head.sequence + 1..).zip(&events) {
            digest = chain_digest(&digest, event);
            seals.push(StoredSeal {
                sequence,
                position: event.position,
                event_id: event.event_id,
                chain_digest: digest,
            });
        }
        let new_head = ChainHead {
            sequence: head.sequence + events.len() as u64,
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
            Backend::Sqlite(pool) => {
                sqlite::store_seals(pool, head.sequence, &new_head, &seals).await?
            }
        };
        if !stored {
            let head = self.seal_head_state().await?.head.unwrap_or(head);
            return Ok(SealProgress {
                sealed: 0,
                head,
                caught_up: false,
            });
        }
        Ok(SealProgress {
            sealed: events.len() as u64,
            head: new_head,
            caught_up: events.len() < max_events,
        })
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
                // Let appends accumulate: a transaction sealing 100 events costs about three times
                // as much per event as one sealing 10,000 (reading back, round trips), and that
                // cost competes with the appenders for the same cores.
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
