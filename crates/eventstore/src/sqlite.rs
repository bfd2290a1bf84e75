//! The SQLite backend: WAL, writers serialised by `BEGIN IMMEDIATE`, so position order is commit order.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use crate::error::EventStoreError;
use crate::event::{
    AppendResult, EventMetadata, ExpectedVersion, LogPosition, NewEvent, RecordedEvent, Snapshot,
    StreamAppend, version_matches,
};
use crate::seal::{
    ChainHead, EventContent, SEAL_COLUMNS, SealHeadState, StoredSeal, UnsealedEvent, decode_seal,
    decode_seal_head,
};
use crate::store::{StoredId, resolve_unappended, to_u64};

/// The columns every read of whole events selects, in the order the decoders expect.
pub(crate) const EVENT_COLUMNS: &str = "global_position, stream_id, stream_version, event_id, event_type, \
     schema_version, payload, correlation_id, causation_id, actor, traceparent, tracestate, recorded_at_micros";

/// Rows per `INSERT` statement: 10 parameters a row plus 3 shared ones stay well under SQLite's
/// limit of 32,766 variables, and a whole `MAX_BATCH` batch takes 5 statements at most.
pub(crate) const ROWS_PER_INSERT: usize = 2_000;

/// Parameters of each row in `events_insert_sql`.
const ROW_PARAMETERS: usize = 10;
const _: () = assert!(ROWS_PER_INSERT * ROW_PARAMETERS + 3 <= 32_766);

/// The stream's version (`?` stream id) and whether the batch's first event id (`?`) is stored:
/// one query decides between inserting and the slower conflict / idempotent-retry path.
pub(crate) const APPEND_CHECK_SQL: &str = "SELECT (SELECT version FROM streams WHERE stream_id = ?), \
     EXISTS (SELECT 1 FROM events WHERE event_id = ?)";

/// Claims the stream's new version (`?` stream id, `?` new version). `streams` is a WITHOUT ROWID
/// table, so this leaves `last_insert_rowid` to the events insert that follows it.
pub(crate) const STREAM_UPSERT_SQL: &str = "INSERT INTO streams (stream_id, version) VALUES (?, ?) \
     ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version";

/// Where an event id is stored (`?` event id), for the conflict / idempotent-retry path.
pub(crate) const STORED_ID_SQL: &str =
    "SELECT stream_id, stream_version, global_position FROM events WHERE event_id = ?";

/// Inserts `rows` events of one stream. The stream id, the version before the chunk and the
/// timestamp are bound once in a one-row subquery that every row joins, instead of once per row:
/// 10 binds per event instead of 13. Placeholders are anonymous on purpose: sqlx looks a numbered
/// placeholder (`?NNN`) up with `sqlite3_bind_parameter_name`, a linear scan, which made a
/// 100-row insert quadratic. The text depends only on `rows`, so both sqlx's and rusqlite's
/// statement caches reuse the prepared statement for every batch of that size. Bind order:
/// stream id, version before the chunk, timestamp, then per row the ten [`RowValues`].
pub(crate) fn events_insert_sql(rows: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(420 + rows * 32);
    sql.push_str(
        "INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, payload, \
         correlation_id, causation_id, actor, traceparent, tracestate, recorded_at_micros, content_digest) \
         SELECT v.column1, s.stream_id, s.base + v.column2, v.column3, v.column4, v.column5, v.column6, \
                v.column7, v.column8, v.column9, v.column10, s.now, v.column11 \
         FROM (SELECT ? AS stream_id, ? AS base, ? AS now) AS s, (VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        let _ = write!(sql, "(?,{},?,?,?,?,?,?,?,?,?)", row + 1);
    }
    // The order makes positions follow versions whatever join order the planner picks.
    sql.push_str(") AS v ORDER BY v.column2");
    sql
}

/// The ten values each row of [`events_insert_sql`] binds, in order, borrowed from the event.
pub(crate) struct RowValues<'a> {
    pub event_id: &'a [u8; 16],
    pub event_type: &'a str,
    pub schema_version: i64,
    pub payload: &'a [u8],
    pub correlation_id: &'a [u8; 16],
    pub causation_id: Option<&'a [u8; 16]>,
    pub actor: &'a str,
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
    pub content_digest: &'a [u8; 32],
}

impl<'a> RowValues<'a> {
    pub(crate) fn of(event: &'a NewEvent, content_digest: &'a [u8; 32]) -> Self {
        Self {
            event_id: event.event_id.as_bytes(),
            event_type: &event.event_type,
            schema_version: i64::from(event.schema_version),
            payload: &event.payload,
            correlation_id: event.metadata.correlation_id.as_bytes(),
            causation_id: event.metadata.causation_id.as_ref().map(Uuid::as_bytes),
            actor: &event.metadata.actor,
            traceparent: event.metadata.traceparent.as_deref(),
            tracestate: event.metadata.tracestate.as_deref(),
            content_digest,
        }
    }
}

/// Each event's content digest (tamper evidence), computed while the rows are bound so appends
/// pay no extra statement for it.
pub(crate) fn content_digests(stream_id: &str, events: &[NewEvent]) -> Vec<[u8; 32]> {
    events
        .iter()
        .map(|event| EventContent::of_new(stream_id, event, event.schema_version).digest())
        .collect()
}

/// Appends inside a transaction the caller opened with `BEGIN IMMEDIATE`, so no other writer runs
/// between the version check and the insert.
///
/// Two calls reach sqlx's SQLite worker thread per chunk of rows: one `SELECT` for the stream's
/// version and whether the batch's first event id is stored, then one that bumps `streams` and
/// inserts the rows (each call is a round trip through the worker's channel, so fewer calls is
/// what makes a small append cheaper). `sqlite_writer::append` is the same append on rusqlite.
pub(crate) async fn append(
    conn: &mut SqliteConnection,
    stream_id: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendResult, EventStoreError> {
    let (version, first_stored): (Option<i64>, bool) = sqlx::query_as(APPEND_CHECK_SQL)
        .bind(stream_id)
        .bind(events[0].event_id)
        .fetch_one(&mut *conn)
        .await?;
    let actual = version.map(|v| to_u64(v, 0)).transpose()?;
    if first_stored || !version_matches(expected, actual) {
        let stored = stored_ids(&mut *conn, events).await?;
        return resolve_unappended(stream_id, expected, actual, events, stored);
    }
    let start = actual.unwrap_or(0);
    let now = Utc::now().timestamp_micros();
    let mut global_position = 0;
    let mut before = start;
    let digests = content_digests(stream_id, events);
    for (chunk, chunk_digests) in events
        .chunks(ROWS_PER_INSERT)
        .zip(digests.chunks(ROWS_PER_INSERT))
    {
        let after = before + chunk.len() as u64;
        let sql = format!("{STREAM_UPSERT_SQL}; {}", events_insert_sql(chunk.len()));
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(stream_id)
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(stream_id)
            .bind(i64::try_from(before).unwrap_or(i64::MAX))
            .bind(now);
        for (event, digest) in chunk.iter().zip(chunk_digests) {
            let row = RowValues::of(event, digest);
            query = query
                .bind(row.event_id.as_slice())
                .bind(row.event_type)
                .bind(row.schema_version)
                .bind(row.payload)
                .bind(row.correlation_id.as_slice())
                .bind(row.causation_id.map(<[u8; 16]>::as_slice))
                .bind(row.actor)
                .bind(row.traceparent)
                .bind(row.tracestate)
                .bind(row.content_digest.as_slice());
        }
        // The events insert, last, leaves its highest rowid as the result's `last_insert_rowid`.
        let result = query.execute(&mut *conn).await?;
        global_position = result.last_insert_rowid();
        before = after;
    }
    Ok(AppendResult {
        stream_version: before,
        global_position: to_u64(global_position, 0)?,
        deduplicated: false,
    })
}

/// Appends to many streams inside the caller's `BEGIN IMMEDIATE` transaction, all or nothing: a
/// savepoint undoes the streams already appended when one fails.
pub(crate) async fn append_streams(
    conn: &mut SqliteConnection,
    appends: &[StreamAppend],
) -> Result<Vec<AppendResult>, EventStoreError> {
    sqlx::query("SAVEPOINT patchbay_append_streams")
        .execute(&mut *conn)
        .await?;
    match append_streams_in_savepoint(&mut *conn, appends).await {
        Ok(results) => {
            sqlx::query("RELEASE SAVEPOINT patchbay_append_streams")
                .execute(&mut *conn)
                .await?;
            Ok(results)
        }
        Err(error) => {
            sqlx::query("ROLLBACK TO SAVEPOINT patchbay_append_streams")
                .execute(&mut *conn)
                .await?;
            sqlx::query("RELEASE SAVEPOINT patchbay_append_streams")
                .execute(&mut *conn)
                .await?;
            Err(error)
        }
    }
}

/// Streams whose versions are checked and whose rows are inserted together.
const STREAMS_PER_GROUP: usize = 500;
/// Parameters of each row in `group_insert_sql`, and of each stream.
const GROUP_ROW_PARAMETERS: usize = 13;
const GROUP_STREAM_PARAMETERS: usize = 2;
/// Rows a group may hold and still be inserted in one statement.
const GROUP_ROWS: usize = 2_000;
const _: () = assert!(
    GROUP_ROWS * GROUP_ROW_PARAMETERS + STREAMS_PER_GROUP * GROUP_STREAM_PARAMETERS <= 32_766
);

async fn append_streams_in_savepoint(
    conn: &mut SqliteConnection,
    appends: &[StreamAppend],
) -> Result<Vec<AppendResult>, EventStoreError> {
    let mut results = Vec::with_capacity(appends.len());
    for group in appends.chunks(STREAMS_PER_GROUP) {
        match append_group(&mut *conn, group).await? {
            Some(group_results) => results.extend(group_results),
            // A conflict, a stored event id or a large group: stream by stream gives `append`'s
            // exact answers (typed conflict, idempotent retry).
            None => {
                for part in group {
                    results.push(
                        append(&mut *conn, &part.stream_id, part.expected, &part.events).await?,
                    );
                }
            }
        }
    }
    Ok(results)
}

/// Appends a group of streams with two calls to SQLite's worker (check, then insert) instead of two
/// per stream; `None`, having written nothing, when the group needs the stream-by-stream path.
async fn append_group(
    conn: &mut SqliteConnection,
    group: &[StreamAppend],
) -> Result<Option<Vec<AppendResult>>, EventStoreError> {
    let rows: usize = group.iter().map(|part| part.events.len()).sum();
    if group.len() < 2 || rows > GROUP_ROWS {
        return Ok(None);
    }
    let check = format!(
        "SELECT stream_id, version, \
                (SELECT count(*) FROM events WHERE event_id IN ({ids})) \
         FROM (SELECT NULL AS stream_id, NULL AS version UNION ALL \
               SELECT stream_id, version FROM streams WHERE stream_id IN ({ids}))",
        ids = vec!["?"; group.len()].join(","),
    );
    let mut query = sqlx::query(AssertSqlSafe(check));
    for part in group {
        query = query.bind(part.events[0].event_id);
    }
    for part in group {
        query = query.bind(part.stream_id.as_str());
    }
    let found = query.fetch_all(&mut *conn).await?;
    let mut versions = std::collections::HashMap::with_capacity(group.len());
    for row in &found {
        let stored: i64 = row.try_get(2)?;
        if stored > 0 {
            return Ok(None);
        }
        let stream_id: Option<String> = row.try_get(0)?;
        let version: Option<i64> = row.try_get(1)?;
        if let (Some(stream_id), Some(version)) = (stream_id, version) {
            versions.insert(stream_id, to_u64(version, 0)?);
        }
    }
    for part in group {
        if !version_matches(part.expected, versions.get(&part.stream_id).copied()) {
            return Ok(None);
        }
    }
    let now = Utc::now().timestamp_micros();
    let mut sql = String::from("INSERT INTO streams (stream_id, version) VALUES ");
    sql.push_str(&vec!["(?,?)"; group.len()].join(","));
    sql.push_str(
        " ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version; \
         INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, payload, \
         correlation_id, causation_id, actor, traceparent, tracestate, recorded_at_micros, \
         content_digest) VALUES ",
    );
    sql.push_str(&vec!["(?,?,?,?,?,?,?,?,?,?,?,?,?)"; rows].join(","));
    let digests: Vec<[u8; 32]> = group
        .iter()
        .flat_map(|part| {
            part.events.iter().map(|event| {
                EventContent::of_new(&part.stream_id, event, event.schema_version).digest()
            })
        })
        .collect();
    let mut digests = digests.iter();
    let mut query = sqlx::query(AssertSqlSafe(sql));
    let mut last_versions = Vec::with_capacity(group.len());
    for part in group {
        let start = versions.get(&part.stream_id).copied().unwrap_or(0);
        let last = start + part.events.len() as u64;
        last_versions.push(last);
        query = query
            .bind(part.stream_id.as_str())
            .bind(i64::try_from(last).unwrap_or(i64::MAX));
    }
    for part in group {
        let start = versions.get(&part.stream_id).copied().unwrap_or(0);
        for (offset, event) in part.events.iter().enumerate() {
            query = query
                .bind(event.event_id)
                .bind(part.stream_id.as_str())
                .bind(i64::try_from(start + offset as u64 + 1).unwrap_or(i64::MAX))
                .bind(event.event_type.as_str())
                .bind(i64::from(event.schema_version))
                .bind(event.payload.as_slice())
                .bind(event.metadata.correlation_id)
                .bind(event.metadata.causation_id)
                .bind(event.metadata.actor.as_str())
                .bind(event.metadata.traceparent.as_deref())
                .bind(event.metadata.tracestate.as_deref())
                .bind(now)
                .bind(digests.next().map(<[u8; 32]>::as_slice));
        }
    }
    // The events insert is the last statement: its last rowid is the group's last position, and one
    // statement's rows take consecutive positions in the order given.
    let last_position = to_u64(query.execute(&mut *conn).await?.last_insert_rowid(), 0)?;
    let first_position = last_position + 1 - rows as u64;
    let mut position = first_position;
    let mut results = Vec::with_capacity(group.len());
    for (part, stream_version) in group.iter().zip(last_versions) {
        position += part.events.len() as u64;
        results.push(AppendResult {
            stream_version,
            global_position: position - 1,
            deduplicated: false,
        });
    }
    Ok(Some(results))
}

async fn stored_ids(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
) -> Result<Vec<StoredId>, EventStoreError> {
    let mut stored = Vec::new();
    for event in events {
        let row = sqlx::query(STORED_ID_SQL)
            .bind(event.event_id)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            stored.push(StoredId {
                event_id: event.event_id,
                stream_id: row.try_get(0)?,
                stream_version: to_u64(row.try_get(1)?, 0)?,
                global_position: to_u64(row.try_get(2)?, 0)?,
            });
        }
    }
    Ok(stored)
}

pub(crate) async fn stream_version(
    conn: &mut SqliteConnection,
    stream_id: &str,
) -> Result<Option<u64>, EventStoreError> {
    let version: Option<i64> =
        sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = ?")
            .bind(stream_id)
            .fetch_optional(conn)
            .await?;
    version.map(|v| to_u64(v, 0)).transpose()
}

pub(crate) async fn read_stream(
    conn: &mut SqliteConnection,
    stream_id: &str,
    from_version: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, EventStoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND stream_version >= ? \
         ORDER BY stream_version LIMIT ?"
    )))
    .bind(stream_id)
    .bind(i64::try_from(from_version).unwrap_or(i64::MAX))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_event).collect()
}

pub(crate) async fn read_all(
    conn: &mut SqliteConnection,
    after: LogPosition,
    limit: usize,
) -> Result<Vec<RecordedEvent>, EventStoreError> {
    let mut rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE global_position > ? ORDER BY global_position LIMIT ?"
    )))
    .bind(i64::try_from(after.global_position).unwrap_or(i64::MAX))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    // Decode rows as sqlx's worker thread sends them, so decoding overlaps SQLite stepping.
    .fetch(conn);
    let mut events = Vec::with_capacity(limit.min(READ_CAPACITY));
    while let Some(row) = rows.try_next().await? {
        events.push(decode_event(&row)?);
    }
    Ok(events)
}

/// Most events a read reserves room for up front; a larger page grows the vector as rows come.
const READ_CAPACITY: usize = 16_384;

/// [`read_all`] with each row's `content_digest` column, for the chain verifier.
pub(crate) async fn read_all_with_digests(
    conn: &mut SqliteConnection,
    after: LogPosition,
    limit: usize,
) -> Result<Vec<(RecordedEvent, Option<Vec<u8>>)>, EventStoreError> {
    let mut rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS}, content_digest FROM events WHERE global_position > ? \
         ORDER BY global_position LIMIT ?"
    )))
    .bind(i64::try_from(after.global_position).unwrap_or(i64::MAX))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch(conn);
    let mut events = Vec::with_capacity(limit.min(READ_CAPACITY));
    while let Some(row) = rows.try_next().await? {
        events.push((decode_event(&row)?, row.try_get(13)?));
    }
    Ok(events)
}

/// What the sealer needs of up to `limit` events after `after`, in [`read_all`] order: no
/// payload, no metadata.
///
/// SQLite aggregates the page into one row of six values (a list per column) instead of returning
/// a row per event: sqlx hands every row from its SQLite thread to the caller's task, and that
/// hand-over, not SQLite, made reading most of the cost of sealing (15 of 19 ms per 10,000
/// events; aggregated, the read takes 4 to 5 ms). All aggregates step through the
/// same rows in the same sequence, so their lists line up; the positions must come out strictly
/// increasing, and every list as long as the count, or the page is read row by row instead.
pub(crate) async fn read_unsealed(
    conn: &mut SqliteConnection,
    after: LogPosition,
    limit: usize,
) -> Result<Vec<UnsealedEvent>, EventStoreError> {
    let after = i64::try_from(after.global_position).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let row = sqlx::query(
        "SELECT count(*), group_concat(global_position), group_concat(stream_version), \
                group_concat(recorded_at_micros), CAST(group_concat(event_id, '') AS BLOB), \
                CAST(group_concat(coalesce(content_digest, zeroblob(32)), '') AS BLOB) \
         FROM (SELECT global_position, stream_version, recorded_at_micros, event_id, content_digest \
               FROM events WHERE global_position > ? ORDER BY global_position LIMIT ?)",
    )
    .bind(after)
    .bind(limit)
    .fetch_one(&mut *conn)
    .await?;
    let count = usize::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0);
    if count == 0 {
        return Ok(Vec::new());
    }
    let lists = UnsealedLists {
        positions: row.try_get(1)?,
        stream_versions: row.try_get(2)?,
        recorded_at: row.try_get(3)?,
        event_ids: row.try_get(4)?,
        content_digests: row.try_get(5)?,
    };
    match lists.split(count) {
        Some(events) => Ok(events),
        None => read_unsealed_row_by_row(conn, after, limit).await,
    }
}

/// One aggregated page of [`read_unsealed`]: comma-separated integers, concatenated blobs.
struct UnsealedLists {
    positions: Option<String>,
    stream_versions: Option<String>,
    recorded_at: Option<String>,
    event_ids: Option<Vec<u8>>,
    content_digests: Option<Vec<u8>>,
}

impl UnsealedLists {
    /// The page's `count` events, or None if the lists do not line up (a row edited by hand:
    /// a missing value, an id or digest of another length).
    fn split(self, count: usize) -> Option<Vec<UnsealedEvent>> {
        fn integers(list: Option<&str>) -> impl Iterator<Item = Option<i64>> {
            list.unwrap_or_default().split(',').map(|n| n.parse().ok())
        }
        let event_ids = self.event_ids.unwrap_or_default();
        let digests = self.content_digests.unwrap_or_default();
        if event_ids.len() != count * 16 || digests.len() != count * 32 {
            return None;
        }
        let mut events = Vec::with_capacity(count);
        let mut previous = 0;
        let columns = integers(self.positions.as_deref())
            .zip(integers(self.stream_versions.as_deref()))
            .zip(integers(self.recorded_at.as_deref()))
            .zip(event_ids.chunks_exact(16).zip(digests.chunks_exact(32)));
        for (((position, version), recorded_at), (event_id, digest)) in columns {
            let position = u64::try_from(position?).ok()?;
            if position <= previous {
                return None;
            }
            previous = position;
            events.push(UnsealedEvent {
                position: LogPosition {
                    commit_id: 0,
                    global_position: position,
                },
                event_id: Uuid::from_slice(event_id).ok()?,
                stream_version: u64::try_from(version?).ok()?,
                recorded_at_micros: recorded_at?,
                // Zeros stand for NULL here; the sealer hashes the content of either.
                content_digest: Some(digest.to_vec()),
            });
        }
        (events.len() == count).then_some(events)
    }
}

/// [`read_unsealed`] a row per event: for a page whose aggregate did not line up.
async fn read_unsealed_row_by_row(
    conn: &mut SqliteConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<UnsealedEvent>, EventStoreError> {
    let rows = sqlx::query(
        "SELECT global_position, event_id, stream_version, recorded_at_micros, content_digest \
         FROM events WHERE global_position > ? ORDER BY global_position LIMIT ?",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let global_position = to_u64(row.try_get(0)?, 0)?;
            Ok(UnsealedEvent {
                position: LogPosition {
                    commit_id: 0,
                    global_position,
                },
                event_id: row.try_get(1)?,
                stream_version: to_u64(row.try_get(2)?, global_position)?,
                recorded_at_micros: row.try_get(3)?,
                content_digest: row.try_get(4)?,
            })
        })
        .collect()
}

/// The stored events at `positions`, in no particular order.
pub(crate) async fn read_events_at(
    conn: &mut SqliteConnection,
    positions: &[u64],
) -> Result<Vec<RecordedEvent>, EventStoreError> {
    let mut events = Vec::with_capacity(positions.len());
    // Bounded statements: SQLite limits the variables of one statement.
    for chunk in positions.chunks(1_000) {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE global_position IN ({})",
            vec!["?"; chunk.len()].join(",")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for position in chunk {
            query = query.bind(i64::try_from(*position).unwrap_or(i64::MAX));
        }
        for row in query.fetch_all(&mut *conn).await? {
            events.push(decode_event(&row)?);
        }
    }
    Ok(events)
}

pub(crate) async fn count_after(
    conn: &mut SqliteConnection,
    after: LogPosition,
) -> Result<u64, EventStoreError> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position > ?")
        .bind(i64::try_from(after.global_position).unwrap_or(i64::MAX))
        .fetch_one(conn)
        .await?;
    to_u64(count, 0)
}

pub(crate) async fn record_inbox(
    conn: &mut SqliteConnection,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, EventStoreError> {
    let result = sqlx::query(
        "INSERT INTO inbox (consumer, event_id, handled_at_micros) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(Utc::now().timestamp_micros())
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(crate) async fn load_checkpoint(
    conn: &mut SqliteConnection,
    name: &str,
) -> Result<Option<LogPosition>, EventStoreError> {
    let row = sqlx::query("SELECT commit_id, global_position FROM checkpoints WHERE name = ?")
        .bind(name)
        .fetch_optional(conn)
        .await?;
    row.map(|row| {
        Ok(LogPosition {
            commit_id: to_u64(row.try_get(0)?, 0)?,
            global_position: to_u64(row.try_get(1)?, 0)?,
        })
    })
    .transpose()
}

pub(crate) async fn save_checkpoint(
    conn: &mut SqliteConnection,
    name: &str,
    position: LogPosition,
) -> Result<(), EventStoreError> {
    sqlx::query(
        "INSERT INTO checkpoints (name, commit_id, global_position, updated_at_micros) VALUES (?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, \
         global_position = excluded.global_position, updated_at_micros = excluded.updated_at_micros",
    )
    .bind(name)
    .bind(i64::try_from(position.commit_id).unwrap_or(i64::MAX))
    .bind(i64::try_from(position.global_position).unwrap_or(i64::MAX))
    .bind(Utc::now().timestamp_micros())
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn save_snapshot(
    conn: &mut SqliteConnection,
    snapshot: &Snapshot,
) -> Result<(), EventStoreError> {
    sqlx::query(
        "INSERT INTO snapshots (snapshot_key, version, schema_version, payload, taken_at_micros) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (snapshot_key, version) DO UPDATE SET \
         schema_version = excluded.schema_version, payload = excluded.payload, \
         taken_at_micros = excluded.taken_at_micros",
    )
    .bind(&snapshot.key)
    .bind(i64::try_from(snapshot.version).unwrap_or(i64::MAX))
    .bind(i64::from(snapshot.schema_version))
    .bind(&snapshot.payload)
    .bind(Utc::now().timestamp_micros())
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn load_snapshot(
    conn: &mut SqliteConnection,
    key: &str,
    at_most: u64,
) -> Result<Option<Snapshot>, EventStoreError> {
    let row = sqlx::query(
        "SELECT version, schema_version, payload FROM snapshots \
         WHERE snapshot_key = ? AND version <= ? ORDER BY version DESC LIMIT 1",
    )
    .bind(key)
    .bind(i64::try_from(at_most).unwrap_or(i64::MAX))
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(Snapshot {
            key: key.to_owned(),
            version: to_u64(row.try_get(0)?, 0)?,
            schema_version: u32::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
            payload: row.try_get(2)?,
        })
    })
    .transpose()
}

fn decode_event(row: &SqliteRow) -> Result<RecordedEvent, EventStoreError> {
    let position = to_u64(row.try_get(0)?, 0)?;
    let corrupt = |reason: &str| EventStoreError::Corrupt {
        global_position: position,
        reason: reason.to_owned(),
    };
    let recorded_micros: i64 = row.try_get(12)?;
    Ok(RecordedEvent {
        position: LogPosition {
            commit_id: 0,
            global_position: position,
        },
        stream_id: row.try_get(1)?,
        stream_version: to_u64(row.try_get(2)?, position)?,
        event_id: row.try_get(3)?,
        event_type: row.try_get(4)?,
        schema_version: u32::try_from(row.try_get::<i64, _>(5)?)
            .map_err(|_| corrupt("schema version out of range"))?,
        payload: row.try_get(6)?,
        metadata: EventMetadata {
            correlation_id: row.try_get(7)?,
            causation_id: row.try_get(8)?,
            actor: row.try_get(9)?,
            traceparent: row.try_get(10)?,
            tracestate: row.try_get(11)?,
        },
        recorded_at: DateTime::from_timestamp_micros(recorded_micros)
            .ok_or_else(|| corrupt("recorded_at out of range"))?,
    })
}

/// The seal head and the highest seal sequence stored, read in one statement (one snapshot).
pub(crate) async fn load_seal_head(
    conn: &mut SqliteConnection,
) -> Result<SealHeadState, EventStoreError> {
    let row = sqlx::query(
        "SELECT h.sequence, h.commit_id, h.global_position, h.chain_digest, \
                (SELECT coalesce(max(last_sequence), 0) FROM event_seals) \
         FROM (SELECT 1) AS one LEFT JOIN event_seal_head h ON h.id = 1",
    )
    .fetch_one(conn)
    .await?;
    decode_seal_head(&row)
}

/// Seal rows ending after sequence `after` and at most at `up_to`, in chain order.
pub(crate) async fn load_seals(
    conn: &mut SqliteConnection,
    after: u64,
    up_to: u64,
    limit: usize,
) -> Result<Vec<StoredSeal>, EventStoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SEAL_COLUMNS} FROM event_seals \
         WHERE last_sequence > ? AND last_sequence <= ? ORDER BY last_sequence LIMIT ?"
    )))
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    .bind(i64::try_from(up_to).unwrap_or(i64::MAX))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_seal).collect()
}

/// Seal rows whose records contain the bytes of `event_id`, in chain order: the candidates for the
/// seal of that event (the caller checks the match falls on a record's event id). Only used after
/// verification found a problem, so a scan of the seal table is acceptable.
pub(crate) async fn seals_mentioning(
    conn: &mut SqliteConnection,
    event_id: Uuid,
) -> Result<Vec<StoredSeal>, EventStoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SEAL_COLUMNS} FROM event_seals WHERE instr(records, ?) > 0 ORDER BY last_sequence"
    )))
    .bind(event_id.as_bytes().as_slice())
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_seal).collect()
}

/// Where the event `event_id` is in the global order now, if it is still stored.
pub(crate) async fn event_position(
    conn: &mut SqliteConnection,
    event_id: Uuid,
) -> Result<Option<LogPosition>, EventStoreError> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT global_position FROM events WHERE event_id = ?")
            .bind(event_id)
            .fetch_optional(conn)
            .await?;
    position
        .map(|p| {
            Ok(LogPosition {
                commit_id: 0,
                global_position: to_u64(p, 0)?,
            })
        })
        .transpose()
}

/// Seal rows per `INSERT`: 9 parameters each stay well under SQLite's 32,766 variables.
const SEALS_PER_INSERT: usize = 1_000;
const _: () = assert!(SEALS_PER_INSERT * 9 <= 32_766);

/// Moves the seal head to a new sequence, position, digest and time, if it is still at the
/// expected sequence (the last parameter).
pub(crate) const SEAL_HEAD_UPDATE_SQL: &str = "UPDATE event_seal_head SET sequence = ?, \
     commit_id = ?, global_position = ?, chain_digest = ?, updated_at_micros = ? \
     WHERE id = 1 AND sequence = ?";

/// Inserts one seal row (more with further `(?,...)` groups appended).
pub(crate) const SEAL_INSERT_SQL: &str = "INSERT INTO event_seals (first_sequence, last_sequence, \
     first_commit_id, first_global_position, last_commit_id, last_global_position, event_count, \
     chain_digest, records) VALUES (?,?,?,?,?,?,?,?,?)";

/// Inserts `seals` and moves the head to `new_head`, if the head is still at `expected_sequence`;
/// false (nothing written) when another sealer moved it first.
///
/// The caller linked the events before this, outside the write lock: `BEGIN IMMEDIATE` blocks
/// appenders, so it is held only for the compare-and-set and the inserts.
pub(crate) async fn store_seals(
    pool: &SqlitePool,
    expected_sequence: u64,
    new_head: &ChainHead,
    seals: &[StoredSeal],
) -> Result<bool, EventStoreError> {
    let as_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let moved = sqlx::query(SEAL_HEAD_UPDATE_SQL)
        .bind(as_i64(new_head.sequence))
        .bind(as_i64(new_head.position.commit_id))
        .bind(as_i64(new_head.position.global_position))
        .bind(new_head.digest.as_slice())
        .bind(Utc::now().timestamp_micros())
        .bind(as_i64(expected_sequence))
        .execute(&mut *tx)
        .await?;
    if moved.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    for chunk in seals.chunks(SEALS_PER_INSERT) {
        let mut sql = String::with_capacity(200 + chunk.len() * 20);
        sql.push_str(SEAL_INSERT_SQL);
        sql.push_str(&",(?,?,?,?,?,?,?,?,?)".repeat(chunk.len() - 1));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for seal in chunk {
            query = query
                .bind(as_i64(seal.first_sequence))
                .bind(as_i64(seal.last_sequence))
                .bind(as_i64(seal.first_position.commit_id))
                .bind(as_i64(seal.first_position.global_position))
                .bind(as_i64(seal.last_position.commit_id))
                .bind(as_i64(seal.last_position.global_position))
                .bind(as_i64(seal.event_count))
                .bind(seal.chain_digest.as_slice())
                .bind(seal.records.as_slice());
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(true)
}
