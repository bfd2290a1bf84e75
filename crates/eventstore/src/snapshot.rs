//! Read-model snapshots and time marks: what makes "the state at moment T" cost a snapshot and a
//! short stretch of the log instead of the whole log.
//!
//! A question about moment `T` wants every event recorded at or before `T`, applied in log order.
//! Log order and `recorded_at` agree only roughly (on PostgreSQL a transaction's events are ordered
//! by its id, taken at its first write, and stamped as they are inserted), so two facts bound the
//! stretch to read, neither assuming how far they disagree:
//!
//! - A snapshot at position `S` whose events were all recorded at or before `T` (its
//!   `last_recorded_at`) holds a subset of what `T` wants, and every other event `T` wants lies
//!   after `S`.
//! - A time mark `(W, H)` says every event recorded at or before `W` lies before `H`. On SQLite
//!   writers are serialised and stamp their events inside the write lock: the mark takes the lock,
//!   reads the last position and the clock. On PostgreSQL the mark reads the clock, then takes a
//!   transaction id: any event stamped before that was inserted by a transaction whose id was
//!   assigned earlier, hence smaller. So for `W >= T`, nothing `T` wants lies at or after `H`.
//!
//! Both rely on the database host's clock not running backwards (PostgreSQL stamps each append
//! with one `clock_timestamp()` reading, taken once the transaction has its id; SQLite with the
//! embedded server's clock).

use std::marker::PhantomData;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{AssertSqlSafe, Row as _};
use tokio_util::sync::CancellationToken;

use crate::error::EventStoreError;
use crate::event::LogPosition;
use crate::store::{Backend, EventStore, to_u64};
use crate::view::Projection;

/// Events between two snapshots of a read model, unless configured otherwise.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 100_000;
/// How often the snapshotter looks for a due time mark or snapshot.
pub const DEFAULT_SNAPSHOT_POLL: Duration = Duration::from_secs(1);
/// A time mark is due when this many events were appended since the last one...
pub const DEFAULT_MARK_EVERY: u64 = 10_000;
/// ...or when the log moved at all and the last one is this old: marks bound how far past a moment
/// time travel reads, so they follow bursts closely and quiet periods loosely.
const MARK_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::seconds(10);
/// Events read per page while replaying.
const PAGE: usize = 5_000;

/// A read model that can be snapshotted: serde gives its bytes, `NAME` and `FORMAT` its identity.
pub trait Snapshottable: Projection + Serialize + DeserializeOwned {
    /// The snapshot's name in the store, e.g. `approvals-view`.
    const NAME: &'static str;
    /// Raise when the model's shape changes within a release; a new Patchbay version already
    /// ignores the snapshots of every other version.
    const FORMAT: u32;
}

/// The format string stored with a snapshot of `P`: a snapshot is only read by the very build
/// shape that wrote it.
fn format_of<P: Snapshottable>() -> String {
    format!("{}/{}", env!("CARGO_PKG_VERSION"), P::FORMAT)
}

/// One stored snapshot's bookkeeping (its payload is decoded by [`load_as_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub position: LogPosition,
    pub events_applied: u64,
    pub first_recorded_at: DateTime<Utc>,
    pub last_recorded_at: DateTime<Utc>,
}

/// Every event recorded at or before `taken_at` lies before `horizon` in the log's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeMark {
    pub taken_at: DateTime<Utc>,
    pub horizon: LogPosition,
}

/// A read model as of a moment, and how it was rebuilt.
#[derive(Debug)]
pub struct AsOf<P> {
    pub projection: P,
    /// Events applied, the snapshot's included.
    pub applied: u64,
    /// Events read from the log (after the snapshot, before the horizon).
    pub read: u64,
    /// The snapshot the replay started from, if any.
    pub snapshot: Option<SnapshotInfo>,
    /// When the log's first event was recorded, `None` for an empty log.
    pub first_recorded_at: Option<DateTime<Utc>>,
}

/// Why a read model could not be rebuilt as of a moment.
#[derive(Debug, thiserror::Error)]
pub enum AsOfError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Store(#[from] EventStoreError),
    #[error("the log holds an event this read model cannot apply: {0}")]
    Apply(#[source] E),
}

/// Rebuilds `P` from every event recorded at or before `at`: from the newest snapshot that fits
/// and only up to the first time mark after `at` when `use_snapshots`, else from the whole log.
/// Either way the result equals a replay from zero (see the module's doc for why).
pub async fn load_as_of<P: Snapshottable>(
    store: &EventStore,
    at: DateTime<Utc>,
    use_snapshots: bool,
) -> Result<AsOf<P>, AsOfError<P::Error>> {
    let mut result = AsOf {
        projection: P::default(),
        applied: 0,
        read: 0,
        snapshot: None,
        first_recorded_at: None,
    };
    let mut after = LogPosition::START;
    let mut horizon = None;
    if use_snapshots {
        if let Some((info, payload)) =
            latest_snapshot(store, P::NAME, &format_of::<P>(), Some(at)).await?
        {
            match postcard::from_bytes::<P>(&payload) {
                Ok(projection) => {
                    result.projection = projection;
                    result.applied = info.events_applied;
                    result.first_recorded_at = Some(info.first_recorded_at);
                    after = info.position;
                    result.snapshot = Some(info);
                }
                // A snapshot is a cache: one that does not decode costs a longer replay, not an answer.
                Err(error) => tracing::warn!(
                    projection = P::NAME,
                    %error,
                    "a snapshot does not decode; replaying from the start instead"
                ),
            }
        }
        horizon = time_mark_at_or_after(store, at)
            .await?
            .map(|mark| mark.horizon);
    }
    let mut pages = store.replay_read_ahead(after, PAGE);
    'pages: while let Some(page) = pages.next_page().await? {
        for event in &page {
            if horizon.is_some_and(|horizon| event.position >= horizon) {
                break 'pages;
            }
            result.read += 1;
            result.first_recorded_at = Some(
                result
                    .first_recorded_at
                    .map_or(event.recorded_at, |first| first.min(event.recorded_at)),
            );
            if event.recorded_at <= at {
                result.projection.apply(event).map_err(AsOfError::Apply)?;
                result.applied += 1;
            }
        }
    }
    if result.first_recorded_at.is_none() {
        // Everything read was past the horizon: say when the log began all the same.
        result.first_recorded_at = store
            .read_all(LogPosition::START, 1)
            .await?
            .first()
            .map(|event| event.recorded_at);
    }
    Ok(result)
}

/// Takes snapshots of `P` every `every` events of `store`'s log and a time mark whenever the log
/// moved, until shut down. Runs beside the service: it reads the log, never the live read model.
#[derive(Debug)]
pub struct Snapshotter<P> {
    store: EventStore,
    every: u64,
    mark_every: u64,
    interval: Duration,
    model: PhantomData<fn() -> P>,
}

/// What one snapshotter pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotPass {
    pub marked: bool,
    pub snapshots: Vec<LogPosition>,
}

impl<P: Snapshottable> Snapshotter<P> {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            every: DEFAULT_SNAPSHOT_EVERY,
            mark_every: DEFAULT_MARK_EVERY,
            interval: DEFAULT_SNAPSHOT_POLL,
            model: PhantomData,
        }
    }

    /// Events between snapshots (at least 1).
    #[must_use]
    pub fn every(mut self, events: u64) -> Self {
        self.every = events.max(1);
        self
    }

    /// Events appended since the last time mark that make the next one due (at least 1).
    #[must_use]
    pub fn mark_every(mut self, events: u64) -> Self {
        self.mark_every = events.max(1);
        self
    }

    /// Time between passes.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Passes until `shutdown`; transient database errors are retried at the next pass.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), EventStoreError> {
        while !shutdown.is_cancelled() {
            // A first pass over a long log takes a while; a shutdown does not wait for it (every
            // snapshot and mark is written atomically, so stopping between writes loses nothing).
            let pass = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                pass = self.pass() => pass,
            };
            match pass {
                Ok(_) => {}
                Err(SnapshotError::Store(error)) if error.is_transient() => {
                    tracing::warn!(projection = P::NAME, %error, "snapshotting failed; retrying");
                }
                Err(SnapshotError::Store(error)) => return Err(error),
                // The service itself will refuse such an event; snapshots just stop advancing.
                Err(error) => {
                    tracing::warn!(projection = P::NAME, %error, "cannot snapshot this log");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(self.interval) => {}
            }
        }
        Ok(())
    }

    /// Takes a time mark if one is due, then every snapshot that is due.
    pub async fn pass(&self) -> Result<SnapshotPass, SnapshotError> {
        let mut pass = SnapshotPass::default();
        // Counted, not read: on PostgreSQL events behind an open transaction are not readable yet,
        // but a mark must still come after them.
        let due = match latest_time_mark(&self.store).await? {
            None => count_after_at_most(&self.store, LogPosition::START, 1).await? > 0,
            Some(mark) => {
                let since =
                    count_after_at_most(&self.store, before(mark.horizon), self.mark_every).await?;
                since >= self.mark_every
                    || (since > 0 && Utc::now() - mark.taken_at >= MARK_MAX_AGE)
            }
        };
        if due {
            take_time_mark(&self.store).await?;
            pass.marked = true;
        }
        let format = format_of::<P>();
        let latest = latest_snapshot(&self.store, P::NAME, &format, None).await?;
        let after = latest
            .as_ref()
            .map_or(LogPosition::START, |(info, _)| info.position);
        if count_after_at_most(&self.store, after, self.every).await? < self.every {
            return Ok(pass);
        }
        let (mut projection, mut info) = match latest {
            Some((info, payload)) => match postcard::from_bytes::<P>(&payload) {
                Ok(projection) => (projection, Some(info)),
                Err(error) => {
                    return Err(SnapshotError::Decode {
                        projection: P::NAME,
                        reason: error.to_string(),
                    });
                }
            },
            None => (P::default(), None),
        };
        let mut since = 0;
        let mut pages = self.store.replay_read_ahead(after, PAGE);
        while let Some(page) = pages.next_page().await? {
            for event in &page {
                projection
                    .apply(event)
                    .map_err(|error| SnapshotError::Apply {
                        projection: P::NAME,
                        reason: error.to_string(),
                    })?;
                let next = match info.take() {
                    Some(mut info) => {
                        info.position = event.position;
                        info.events_applied += 1;
                        info.first_recorded_at = info.first_recorded_at.min(event.recorded_at);
                        info.last_recorded_at = info.last_recorded_at.max(event.recorded_at);
                        info
                    }
                    None => SnapshotInfo {
                        position: event.position,
                        events_applied: 1,
                        first_recorded_at: event.recorded_at,
                        last_recorded_at: event.recorded_at,
                    },
                };
                since += 1;
                if since == self.every {
                    let payload = postcard::to_stdvec(&projection).map_err(|error| {
                        SnapshotError::Encode {
                            projection: P::NAME,
                            reason: error.to_string(),
                        }
                    })?;
                    save_snapshot(&self.store, P::NAME, &format, &next, &payload).await?;
                    pass.snapshots.push(next.position);
                    since = 0;
                }
                info = Some(next);
            }
        }
        Ok(pass)
    }
}

/// Why a snapshotter pass failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] EventStoreError),
    #[error(
        "the {projection} snapshot does not decode: {reason}; delete it to rebuild from the log"
    )]
    Decode {
        projection: &'static str,
        reason: String,
    },
    #[error("the {projection} read model cannot be encoded: {reason}")]
    Encode {
        projection: &'static str,
        reason: String,
    },
    #[error("the log holds an event the {projection} read model cannot apply: {reason}")]
    Apply {
        projection: &'static str,
        reason: String,
    },
}

/// The position just before `horizon`: events at or after the horizon are the ones after it.
fn before(horizon: LogPosition) -> LogPosition {
    match horizon.global_position {
        0 => LogPosition {
            commit_id: horizon.commit_id.saturating_sub(1),
            global_position: u64::MAX >> 1,
        },
        position => LogPosition {
            commit_id: horizon.commit_id,
            global_position: position - 1,
        },
    }
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn micros(value: i64) -> Result<DateTime<Utc>, EventStoreError> {
    DateTime::from_timestamp_micros(value).ok_or_else(|| EventStoreError::Corrupt {
        global_position: 0,
        reason: format!("a snapshot or time mark time of {value} µs is out of range"),
    })
}

/// How many events follow `after`, counting no further than `limit`.
async fn count_after_at_most(
    store: &EventStore,
    after: LogPosition,
    limit: u64,
) -> Result<u64, EventStoreError> {
    let count: i64 = match store.backend() {
        Backend::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT 1 FROM events \
                 WHERE (tx_id, global_position) > (($1::bigint)::text::xid8, $2) LIMIT $3) AS later",
            )
            .bind(as_i64(after.commit_id))
            .bind(as_i64(after.global_position))
            .bind(as_i64(limit))
            .fetch_one(pool)
            .await?
        }
        Backend::Sqlite(pool) => {
            sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT 1 FROM events WHERE global_position > ? LIMIT ?)",
            )
            .bind(as_i64(after.global_position))
            .bind(as_i64(limit))
            .fetch_one(pool)
            .await?
        }
    };
    to_u64(count, 0)
}

/// Records a time mark now (see the module's doc for why it is sound on each backend).
pub async fn take_time_mark(store: &EventStore) -> Result<TimeMark, EventStoreError> {
    match store.backend() {
        Backend::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            // The clock first, then a transaction id in a later statement: every event stamped
            // before the clock reading belongs to a transaction with a smaller id.
            let taken_at: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
                .fetch_one(&mut *tx)
                .await?;
            let horizon: i64 = sqlx::query_scalar("SELECT (pg_current_xact_id())::text::bigint")
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO log_time_marks (taken_at, horizon_commit_id, horizon_position) \
                 VALUES ($1, $2, 0)",
            )
            .bind(taken_at)
            .bind(horizon)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(TimeMark {
                taken_at,
                horizon: LogPosition {
                    commit_id: to_u64(horizon, 0)?,
                    global_position: 0,
                },
            })
        }
        Backend::Sqlite(pool) => {
            // Under the write lock no append is half done, and later ones stamp a later time.
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let last: i64 =
                sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
                    .fetch_one(&mut *tx)
                    .await?;
            let taken_at = Utc::now();
            let horizon = last.saturating_add(1);
            sqlx::query(
                "INSERT INTO log_time_marks (taken_at_micros, horizon_commit_id, horizon_position) \
                 VALUES (?, 0, ?)",
            )
            .bind(taken_at.timestamp_micros())
            .bind(horizon)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(TimeMark {
                taken_at,
                horizon: LogPosition {
                    commit_id: 0,
                    global_position: to_u64(horizon, 0)?,
                },
            })
        }
    }
}

fn mark_from(
    taken_at: DateTime<Utc>,
    commit_id: i64,
    position: i64,
) -> Result<TimeMark, EventStoreError> {
    Ok(TimeMark {
        taken_at,
        horizon: LogPosition {
            commit_id: to_u64(commit_id, 0)?,
            global_position: to_u64(position, 0)?,
        },
    })
}

/// The first time mark taken at or after `at`.
pub async fn time_mark_at_or_after(
    store: &EventStore,
    at: DateTime<Utc>,
) -> Result<Option<TimeMark>, EventStoreError> {
    find_mark(store, Some(at)).await
}

/// The newest time mark.
pub async fn latest_time_mark(store: &EventStore) -> Result<Option<TimeMark>, EventStoreError> {
    find_mark(store, None).await
}

/// The first mark taken at or after `at`, or the newest when `at` is `None`.
async fn find_mark(
    store: &EventStore,
    at: Option<DateTime<Utc>>,
) -> Result<Option<TimeMark>, EventStoreError> {
    let (taken_at, placeholder) = match store.backend() {
        Backend::Postgres(_) => ("taken_at", "$1"),
        Backend::Sqlite(_) => ("taken_at_micros", "?"),
    };
    let order = match at {
        Some(_) => format!("WHERE {taken_at} >= {placeholder} ORDER BY {taken_at}, mark_id"),
        None => "ORDER BY mark_id DESC".to_owned(),
    };
    let sql = format!(
        "SELECT {taken_at}, horizon_commit_id, horizon_position FROM log_time_marks {order} LIMIT 1"
    );
    match store.backend() {
        Backend::Postgres(pool) => {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            if let Some(at) = at {
                query = query.bind(at);
            }
            let row = query.fetch_optional(pool).await?;
            row.map(|row| mark_from(row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
                .transpose()
        }
        Backend::Sqlite(pool) => {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            if let Some(at) = at {
                query = query.bind(at.timestamp_micros());
            }
            let row = query.fetch_optional(pool).await?;
            row.map(|row| mark_from(micros(row.try_get(0)?)?, row.try_get(1)?, row.try_get(2)?))
                .transpose()
        }
    }
}

async fn save_snapshot(
    store: &EventStore,
    projection: &str,
    format: &str,
    info: &SnapshotInfo,
    payload: &[u8],
) -> Result<(), EventStoreError> {
    match store.backend() {
        Backend::Postgres(pool) => {
            sqlx::query(
                "INSERT INTO projection_snapshots (projection, format, commit_id, global_position, \
                 events_applied, first_recorded_at, last_recorded_at, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(projection)
            .bind(format)
            .bind(as_i64(info.position.commit_id))
            .bind(as_i64(info.position.global_position))
            .bind(as_i64(info.events_applied))
            .bind(info.first_recorded_at)
            .bind(info.last_recorded_at)
            .bind(payload)
            .execute(pool)
            .await?;
        }
        Backend::Sqlite(pool) => {
            sqlx::query(
                "INSERT INTO projection_snapshots (projection, format, commit_id, global_position, \
                 events_applied, first_recorded_at_micros, last_recorded_at_micros, taken_at_micros, \
                 payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(projection)
            .bind(format)
            .bind(as_i64(info.position.commit_id))
            .bind(as_i64(info.position.global_position))
            .bind(as_i64(info.events_applied))
            .bind(info.first_recorded_at.timestamp_micros())
            .bind(info.last_recorded_at.timestamp_micros())
            .bind(Utc::now().timestamp_micros())
            .bind(payload)
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// The newest snapshot (by position) of `projection` in `format`, among those whose events were
/// all recorded at or before `recorded_by` when given.
async fn latest_snapshot(
    store: &EventStore,
    projection: &str,
    format: &str,
    recorded_by: Option<DateTime<Utc>>,
) -> Result<Option<(SnapshotInfo, Vec<u8>)>, EventStoreError> {
    let row = match store.backend() {
        Backend::Postgres(pool) => sqlx::query(
            "SELECT commit_id, global_position, events_applied, first_recorded_at, \
                    last_recorded_at, payload FROM projection_snapshots \
             WHERE projection = $1 AND format = $2 AND ($3::timestamptz IS NULL OR last_recorded_at <= $3) \
             ORDER BY commit_id DESC, global_position DESC LIMIT 1",
        )
        .bind(projection)
        .bind(format)
        .bind(recorded_by)
        .fetch_optional(pool)
        .await?
        .map(|row| -> Result<_, EventStoreError> {
            Ok((
                row.try_get::<i64, _>(0)?,
                row.try_get::<i64, _>(1)?,
                row.try_get::<i64, _>(2)?,
                row.try_get::<DateTime<Utc>, _>(3)?,
                row.try_get::<DateTime<Utc>, _>(4)?,
                row.try_get::<Vec<u8>, _>(5)?,
            ))
        })
        .transpose()?,
        Backend::Sqlite(pool) => sqlx::query(
            "SELECT commit_id, global_position, events_applied, first_recorded_at_micros, \
                    last_recorded_at_micros, payload FROM projection_snapshots \
             WHERE projection = ? AND format = ? AND (? IS NULL OR last_recorded_at_micros <= ?) \
             ORDER BY commit_id DESC, global_position DESC LIMIT 1",
        )
        .bind(projection)
        .bind(format)
        .bind(recorded_by.map(|t| t.timestamp_micros()))
        .bind(recorded_by.map(|t| t.timestamp_micros()))
        .fetch_optional(pool)
        .await?
        .map(|row| -> Result<_, EventStoreError> {
            Ok((
                row.try_get::<i64, _>(0)?,
                row.try_get::<i64, _>(1)?,
                row.try_get::<i64, _>(2)?,
                micros(row.try_get(3)?)?,
                micros(row.try_get(4)?)?,
                row.try_get::<Vec<u8>, _>(5)?,
            ))
        })
        .transpose()?,
    };
    row.map(|(commit_id, position, applied, first, last, payload)| {
        Ok((
            SnapshotInfo {
                position: LogPosition {
                    commit_id: to_u64(commit_id, 0)?,
                    global_position: to_u64(position, 0)?,
                },
                events_applied: to_u64(applied, 0)?,
                first_recorded_at: first,
                last_recorded_at: last,
            },
            payload,
        ))
    })
    .transpose()
}
