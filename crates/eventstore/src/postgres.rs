//! The PostgreSQL backend: one-statement appends, and a global order that never skips a late commit.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use sqlx::pool::PoolConnection;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgConnection, PgPool, PgRow, PgTypeInfo, PgValueFormat, PgValueRef, Postgres,
};
use sqlx::{AssertSqlSafe, Decode, Row, Type};
use uuid::Uuid;

use crate::error::EventStoreError;
use crate::event::{
    AppendResult, EventMetadata, ExpectedVersion, LogPosition, NewEvent, RecordedEvent, Snapshot,
    StreamAppend,
};
use crate::pg_copy;
use crate::seal::{
    ChainHead, EventContent, EventRecord, SEAL_COLUMNS, SealHeadState, StoredSeal, UnsealedEvent,
    decode_seal, decode_seal_head,
};
use crate::seal_feed::join_records;
use crate::store::{StoredId, resolve_unappended, to_u64};

/// The columns the final select of an append adds when the sealer wants the records: the
/// transaction's commit id, the least and greatest `global_position - stream_version` of its rows,
/// the least and greatest `recorded_at`, and the positions in stream-version order only when they
/// cannot be derived. Appends number their rows in version order, so a statement no other appender
/// interleaved with has one difference for all rows and every position follows from its version;
/// the array (a second scan of the inserted rows, evaluated only when needed) is for the rest.
/// Scalars instead of arrays: two ordered `array_agg`s cost about 3.5 % of the append's server time
/// (docs/benchmarks.md). `$group` restricts the array to one stream in a grouped select.
macro_rules! record_columns {
    ($group:literal) => {
        concat!(
            ", pg_current_xact_id(), min(global_position - stream_version), \
             max(global_position - stream_version), min(recorded_at), max(recorded_at), \
             CASE WHEN min(global_position - stream_version) = max(global_position - stream_version) \
             THEN NULL ELSE (SELECT array_agg(r.global_position ORDER BY r.stream_version) \
             FROM ins r",
            $group,
            ") END"
        )
    };
}

/// Where [`record_columns`] start in an append's result row.
const RECORD_COLUMNS_AT: usize = 3;

/// Columns every read selects, in the order `decode_event` expects.
const EVENT_COLUMNS: &str = "tx_id, global_position, stream_id, stream_version, \
     event_id, event_type, schema_version, payload, correlation_id, causation_id, actor, traceparent, \
     tracestate, recorded_at";

/// Appends `events` in one statement: claim the stream version, then insert the batch.
///
/// The claim is an `UPDATE`/`INSERT` on `streams` whose row lock serialises appenders of one stream; it
/// matches no row when the expected version is wrong or the batch's first event id is already stored,
/// and then nothing is inserted and the slow path tells a conflict from an idempotent retry. Being one
/// statement, it is atomic without an explicit transaction and never aborts an enclosing one on conflict.
///
/// Every event of one append is stamped with one `clock_timestamp()` reading, as on SQLite: an
/// uncorrelated subquery, evaluated once when the first row is inserted, so after the claim gave the
/// transaction its id, which time marks rely on (`snapshot.rs`).
///
/// With `want_records`, also returns each event's [`EventRecord`] for this process's sealer (see
/// `seal_feed.rs`): `Some` (empty when nothing was inserted) if they are known, else `None`.
pub(crate) async fn append(
    conn: &mut PgConnection,
    stream_id: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
    want_records: bool,
) -> Result<(AppendResult, Option<Vec<EventRecord>>), EventStoreError> {
    const NOT_STORED: &str = "NOT EXISTS (SELECT 1 FROM events WHERE event_id = ($3::uuid[])[1])";
    let claim = match expected {
        ExpectedVersion::Any => format!(
            "INSERT INTO streams (stream_id, version) SELECT $1, $2 WHERE {NOT_STORED} \
             ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + EXCLUDED.version \
             RETURNING version"
        ),
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => format!(
            "INSERT INTO streams (stream_id, version) SELECT $1, $2 WHERE {NOT_STORED} \
             ON CONFLICT (stream_id) DO NOTHING RETURNING version"
        ),
        ExpectedVersion::Exact(_) => format!(
            "UPDATE streams SET version = version + $2 WHERE stream_id = $1 AND version = $13 \
             AND {NOT_STORED} RETURNING version"
        ),
    };
    let sql = format!(
        "WITH claim AS ({claim}), \
         ins AS ( \
           INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, payload, \
                               correlation_id, causation_id, actor, traceparent, tracestate, \
                               content_digest, recorded_at) \
           SELECT e.event_id, $1, claim.version - $2 + e.ord, e.event_type, e.schema_version, e.payload, \
                  e.correlation_id, e.causation_id, e.actor, e.traceparent, e.tracestate, \
                  e.content_digest, (SELECT clock_timestamp()) \
           FROM claim CROSS JOIN unnest($3::uuid[], $4::text[], $5::int4[], $6::bytea[], $7::uuid[], \
                                        $8::uuid[], $9::text[], $10::text[], $11::text[], $12::bytea[]) \
                WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, correlation_id, \
                                     causation_id, actor, traceparent, tracestate, content_digest, ord) \
           ORDER BY e.ord \
           RETURNING global_position, stream_version, recorded_at) \
         SELECT count(*)::bigint, coalesce(max(stream_version), 0)::bigint, \
                coalesce(max(global_position), 0)::bigint{} FROM ins",
        if want_records {
            record_columns!("")
        } else {
            ""
        }
    );
    let columns = EventColumns::from(events);
    let digests = content_digests(std::iter::repeat(stream_id), events, &columns);
    let digest_slices: Vec<&[u8]> = digests.iter().map(<[u8; 32]>::as_slice).collect();
    let mut query = sqlx::query(AssertSqlSafe(sql))
        .bind(stream_id)
        .bind(events.len() as i64)
        .bind(&columns.event_ids)
        .bind(&columns.event_types)
        .bind(&columns.schema_versions)
        .bind(&columns.payloads)
        .bind(&columns.correlation_ids)
        .bind(&columns.causation_ids)
        .bind(&columns.actors)
        .bind(&columns.traceparents)
        .bind(&columns.tracestates)
        .bind(&digest_slices);
    // Exact(0) means no stream and uses the insert claim, which has no version parameter.
    if let ExpectedVersion::Exact(version) = expected
        && version > 0
    {
        query = query.bind(i64::try_from(version).map_err(|_| {
            EventStoreError::InvalidInput(format!("expected version {version} is out of range"))
        })?);
    }
    let row = query.fetch_one(&mut *conn).await?;
    let inserted: i64 = row.try_get(0)?;
    if inserted == events.len() as i64 {
        let result = AppendResult {
            stream_version: to_u64(row.try_get(1)?, 0)?,
            global_position: to_u64(row.try_get(2)?, 0)?,
            deduplicated: false,
        };
        let records = want_records
            .then(|| records_of(&row, result.stream_version, events, &digests))
            .flatten();
        return Ok((result, records));
    }
    let stored = sqlx::query(
        "SELECT event_id, stream_id, stream_version, global_position FROM events WHERE event_id = ANY($1)",
    )
    .bind(&columns.event_ids)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|row| {
        Ok(StoredId {
            event_id: row.try_get(0)?,
            stream_id: row.try_get(1)?,
            stream_version: to_u64(row.try_get(2)?, 0)?,
            global_position: to_u64(row.try_get(3)?, 0)?,
        })
    })
    .collect::<Result<Vec<_>, EventStoreError>>()?;
    let actual = stream_version(&mut *conn, stream_id).await?;
    resolve_unappended(stream_id, expected, actual, events, stored)
        .map(|result| (result, Some(Vec::new())))
}

/// The records of `events`, appended as versions up to `last_version`, from the [`record_columns`]
/// of `row`. None if the row does not describe them: the records are only a shortcut for the
/// sealer, which then reads the table (the append itself succeeded).
fn records_of(
    row: &PgRow,
    last_version: u64,
    events: &[NewEvent],
    digests: &[[u8; 32]],
) -> Option<Vec<EventRecord>> {
    let commit_id: Xid8 = row.try_get(RECORD_COLUMNS_AT).ok()?;
    let least_offset: i64 = row.try_get(RECORD_COLUMNS_AT + 1).ok()?;
    let greatest_offset: i64 = row.try_get(RECORD_COLUMNS_AT + 2).ok()?;
    let earliest: DateTime<Utc> = row.try_get(RECORD_COLUMNS_AT + 3).ok()?;
    let latest: DateTime<Utc> = row.try_get(RECORD_COLUMNS_AT + 4).ok()?;
    let listed: Option<Vec<i64>> = row.try_get(RECORD_COLUMNS_AT + 5).ok()?;
    let count = events.len();
    // One clock reading per statement (see [`append`]); anything else is not what this code
    // wrote, so let the sealer read the table.
    if earliest != latest || digests.len() != count {
        return None;
    }
    let first_version = (last_version + 1).checked_sub(count as u64)?;
    let positions: Vec<i64> = match listed {
        None if least_offset == greatest_offset => (0..count as u64)
            .map(|index| {
                i64::try_from(first_version + index)
                    .ok()?
                    .checked_add(least_offset)
            })
            .collect::<Option<_>>()?,
        Some(listed) if listed.len() == count => listed,
        _ => return None,
    };
    let recorded_at_micros = earliest.timestamp_micros();
    events
        .iter()
        .zip(positions.iter().zip(digests))
        .enumerate()
        .map(|(index, (event, (position, digest)))| {
            Some(EventRecord {
                position: LogPosition {
                    commit_id: commit_id.0,
                    global_position: u64::try_from(*position).ok()?,
                },
                event_id: event.event_id,
                stream_version: first_version + index as u64,
                recorded_at_micros,
                content_digest: *digest,
            })
        })
        .collect()
}

/// Names the savepoint that makes a multi-stream append all or nothing inside the caller's transaction.
const APPEND_STREAMS_SAVEPOINT: &str = "patchbay_append_streams";

/// Appends to many streams inside the caller's transaction, all or nothing.
///
/// The fast path is one statement: lock the existing stream rows in id order (so two bulk appenders
/// cannot deadlock on each other's rows), claim every stream's version, and insert every event only
/// if every stream was claimed. A stream that cannot be claimed (wrong version, or its first event
/// id already stored) makes the statement insert nothing; the savepoint then undoes the claims and
/// the slow path appends stream by stream, which tells a conflict from an idempotent retry exactly as
/// a single append does, and is undone as a whole if any stream fails.
///
/// With `want_records`, also returns the events' records (see [`append`]).
pub(crate) async fn append_streams(
    conn: &mut PgConnection,
    appends: &[StreamAppend],
    want_records: bool,
) -> Result<(Vec<AppendResult>, Option<Vec<EventRecord>>), EventStoreError> {
    savepoint(conn, "SAVEPOINT").await?;
    let fast = append_streams_at_once(conn, appends, want_records).await;
    let fall_back = match fast {
        Ok(Some((results, fast_records))) => {
            savepoint(conn, "RELEASE SAVEPOINT").await?;
            return Ok((results, fast_records));
        }
        Ok(None) => true,
        // A reused event id beyond a part's first: the slow path says which.
        Err(EventStoreError::Database(ref error))
            if error
                .as_database_error()
                .and_then(|db| db.code())
                .is_some_and(|code| code == "23505") =>
        {
            true
        }
        Err(_) => false,
    };
    savepoint(conn, "ROLLBACK TO SAVEPOINT").await?;
    if !fall_back {
        savepoint(conn, "RELEASE SAVEPOINT").await?;
        return fast.map(|_| (Vec::new(), None));
    }
    let mut results = Vec::with_capacity(appends.len());
    let mut slow_records = Some(Vec::new());
    for part in appends {
        match append(
            &mut *conn,
            &part.stream_id,
            part.expected,
            &part.events,
            want_records,
        )
        .await
        {
            Ok((result, part_records)) => {
                results.push(result);
                join_records(&mut slow_records, part_records);
            }
            Err(error) => {
                savepoint(conn, "ROLLBACK TO SAVEPOINT").await?;
                savepoint(conn, "RELEASE SAVEPOINT").await?;
                return Err(error);
            }
        }
    }
    savepoint(conn, "RELEASE SAVEPOINT").await?;
    Ok((results, slow_records))
}

async fn savepoint(conn: &mut PgConnection, command: &str) -> Result<(), EventStoreError> {
    sqlx::query(AssertSqlSafe(format!(
        "{command} {APPEND_STREAMS_SAVEPOINT}"
    )))
    .execute(conn)
    .await?;
    Ok(())
}

/// The one-statement multi-stream append; `None` when some stream could not be claimed (nothing
/// was inserted then, but other streams' claims must be rolled back).
///
/// The stored-id check is a correlated count, not `NOT EXISTS`: the planner turns the latter into a
/// hash anti-join over a sequential scan of the whole log when its statistics are stale (right after
/// a bulk load), while the count is always one index probe per stream.
async fn append_streams_at_once(
    conn: &mut PgConnection,
    appends: &[StreamAppend],
    want_records: bool,
) -> Result<Option<(Vec<AppendResult>, Option<Vec<EventRecord>>)>, EventStoreError> {
    macro_rules! sql {
        ($($record_columns:tt)*) => { concat!("\
        WITH locked AS ( \
          SELECT stream_id FROM streams WHERE stream_id = ANY($1::text[]) ORDER BY stream_id FOR UPDATE), \
        input AS MATERIALIZED ( \
          SELECT i.stream_id, i.expected, i.n, i.ord \
          FROM unnest($1::text[], $2::int8[], $3::int8[], $4::uuid[]) \
               WITH ORDINALITY AS i(stream_id, expected, n, first_id, ord) \
          WHERE (SELECT count(*) FROM locked) >= 0 \
            AND (SELECT count(*) FROM events e WHERE e.event_id = i.first_id) = 0), \
        fresh AS ( \
          INSERT INTO streams (stream_id, version) SELECT stream_id, n FROM input WHERE expected = 0 \
          ON CONFLICT (stream_id) DO NOTHING RETURNING stream_id, version), \
        bumped AS ( \
          UPDATE streams s SET version = s.version + i.n FROM input i \
          WHERE i.expected > 0 AND s.stream_id = i.stream_id AND s.version = i.expected \
          RETURNING s.stream_id, s.version), \
        any_version AS ( \
          INSERT INTO streams (stream_id, version) SELECT stream_id, n FROM input WHERE expected < 0 \
          ON CONFLICT (stream_id) DO UPDATE SET version = streams.version + EXCLUDED.version \
          RETURNING stream_id, version), \
        claim AS MATERIALIZED ( \
          SELECT c.stream_id, c.version, i.n, i.ord \
          FROM (SELECT stream_id, version FROM fresh UNION ALL SELECT stream_id, version FROM bumped \
                UNION ALL SELECT stream_id, version FROM any_version) c \
          JOIN input i ON i.stream_id = c.stream_id), \
        ins AS ( \
          INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, payload, \
                              correlation_id, causation_id, actor, traceparent, tracestate, \
                              content_digest, recorded_at) \
          SELECT e.event_id, c.stream_id, c.version - c.n + e.seq, e.event_type, e.schema_version, \
                 e.payload, e.correlation_id, e.causation_id, e.actor, e.traceparent, e.tracestate, \
                 e.content_digest, (SELECT clock_timestamp()) \
          FROM unnest($5::int8[], $6::int8[], $7::uuid[], $8::text[], $9::int4[], $10::bytea[], \
                      $11::uuid[], $12::uuid[], $13::text[], $14::text[], $15::text[], $17::bytea[]) \
               AS e(stream_ord, seq, event_id, event_type, schema_version, payload, correlation_id, \
                    causation_id, actor, traceparent, tracestate, content_digest) \
          JOIN claim c ON c.ord = e.stream_ord \
          WHERE (SELECT count(*) FROM claim) = $16 \
          ORDER BY e.stream_ord, e.seq \
          RETURNING stream_id, stream_version, global_position, recorded_at) \
        SELECT stream_id, max(stream_version)::bigint, max(global_position)::bigint",
        $($record_columns)*, " FROM ins GROUP BY stream_id") };
    }
    const SQL: &str = sql!("");
    const SQL_WITH_RECORDS: &str = sql!(record_columns!(" WHERE r.stream_id = ins.stream_id"));
    let stream_ids: Vec<&str> = appends.iter().map(|a| a.stream_id.as_str()).collect();
    let expected = appends
        .iter()
        .map(|a| match a.expected {
            ExpectedVersion::Any => Ok(-1),
            ExpectedVersion::NoStream => Ok(0),
            ExpectedVersion::Exact(version) => i64::try_from(version).map_err(|_| {
                EventStoreError::InvalidInput(format!("expected version {version} is out of range"))
            }),
        })
        .collect::<Result<Vec<i64>, _>>()?;
    let counts: Vec<i64> = appends.iter().map(|a| a.events.len() as i64).collect();
    let first_ids: Vec<Uuid> = appends.iter().map(|a| a.events[0].event_id).collect();
    let events: Vec<NewEvent> = appends
        .iter()
        .flat_map(|a| a.events.iter().cloned())
        .collect();
    let (stream_ords, seqs): (Vec<i64>, Vec<i64>) = appends
        .iter()
        .enumerate()
        .flat_map(|(index, a)| (1..=a.events.len() as i64).map(move |seq| (index as i64 + 1, seq)))
        .unzip();
    let columns = EventColumns::from(events.as_slice());
    let stream_of_each_event = appends
        .iter()
        .flat_map(|a| std::iter::repeat_n(a.stream_id.as_str(), a.events.len()));
    let digests = content_digests(stream_of_each_event, &events, &columns);
    let digest_slices: Vec<&[u8]> = digests.iter().map(<[u8; 32]>::as_slice).collect();
    let rows = sqlx::query(if want_records { SQL_WITH_RECORDS } else { SQL })
        .bind(&stream_ids)
        .bind(&expected)
        .bind(&counts)
        .bind(&first_ids)
        .bind(&stream_ords)
        .bind(&seqs)
        .bind(&columns.event_ids)
        .bind(&columns.event_types)
        .bind(&columns.schema_versions)
        .bind(&columns.payloads)
        .bind(&columns.correlation_ids)
        .bind(&columns.causation_ids)
        .bind(&columns.actors)
        .bind(&columns.traceparents)
        .bind(&columns.tracestates)
        .bind(appends.len() as i64)
        .bind(&digest_slices)
        .fetch_all(&mut *conn)
        .await?;
    if rows.len() != appends.len() {
        return Ok(None);
    }
    let mut by_stream = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let stream_id: String = row.try_get(0)?;
        let result = AppendResult {
            stream_version: to_u64(row.try_get(1)?, 0)?,
            global_position: to_u64(row.try_get(2)?, 0)?,
            deduplicated: false,
        };
        by_stream.insert(stream_id, (result, row));
    }
    // Every event's record or none: the feed holds whole transactions.
    let mut records = want_records.then(Vec::new);
    let mut first_event = 0;
    for append in appends {
        let last_event = first_event + append.events.len();
        let part = by_stream.get(&append.stream_id).and_then(|(result, row)| {
            let digests = digests.get(first_event..last_event)?;
            records_of(row, result.stream_version, &append.events, digests)
        });
        join_records(&mut records, part);
        first_event = last_event;
    }
    let results = appends
        .iter()
        .map(|a| {
            by_stream
                .remove(&a.stream_id)
                .map(|(result, _)| result)
                .ok_or_else(|| EventStoreError::Corrupt {
                    global_position: 0,
                    reason: format!(
                        "the multi-stream append returned no row for stream '{}'",
                        a.stream_id
                    ),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((results, records)))
}

/// Each event's content digest (see `seal.rs`), hashed here, while the rows are bound, so appends
/// pay no extra round trip; with the schema version exactly as `columns` binds it.
fn content_digests<'a>(
    stream_ids: impl Iterator<Item = &'a str>,
    events: &[NewEvent],
    columns: &EventColumns<'_>,
) -> Vec<[u8; 32]> {
    stream_ids
        .zip(events)
        .zip(&columns.schema_versions)
        .map(|((stream_id, event), stored_version)| {
            let schema_version = u32::try_from(*stored_version).unwrap_or(0);
            EventContent::of_new(stream_id, event, schema_version).digest()
        })
        .collect()
}

/// A batch split into one array per column, for `unnest`.
struct EventColumns<'a> {
    event_ids: Vec<Uuid>,
    event_types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a [u8]>,
    correlation_ids: Vec<Uuid>,
    causation_ids: Vec<Option<Uuid>>,
    actors: Vec<&'a str>,
    traceparents: Vec<Option<&'a str>>,
    tracestates: Vec<Option<&'a str>>,
}

impl<'a> From<&'a [NewEvent]> for EventColumns<'a> {
    fn from(events: &'a [NewEvent]) -> Self {
        Self {
            event_ids: events.iter().map(|e| e.event_id).collect(),
            event_types: events.iter().map(|e| e.event_type.as_str()).collect(),
            // Schema versions are small counters; saturate rather than wrap on absurd input.
            schema_versions: events
                .iter()
                .map(|e| i32::try_from(e.schema_version).unwrap_or(i32::MAX))
                .collect(),
            payloads: events.iter().map(|e| e.payload.as_slice()).collect(),
            correlation_ids: events.iter().map(|e| e.metadata.correlation_id).collect(),
            causation_ids: events.iter().map(|e| e.metadata.causation_id).collect(),
            actors: events.iter().map(|e| e.metadata.actor.as_str()).collect(),
            traceparents: events
                .iter()
                .map(|e| e.metadata.traceparent.as_deref())
                .collect(),
            tracestates: events
                .iter()
                .map(|e| e.metadata.tracestate.as_deref())
                .collect(),
        }
    }
}

/// Inserts the batch as a plain multi-row `INSERT`, with no version claim: the benchmark's baseline.
#[doc(hidden)]
pub async fn raw_insert(
    conn: &mut PgConnection,
    stream_id: &str,
    first_version: u64,
    events: &[NewEvent],
) -> Result<(), EventStoreError> {
    let columns = EventColumns::from(events);
    sqlx::query(
        "INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, payload, \
                             correlation_id, causation_id, actor, traceparent, tracestate) \
         SELECT e.event_id, $1, $2 + e.ord - 1, e.event_type, e.schema_version, e.payload, \
                e.correlation_id, e.causation_id, e.actor, e.traceparent, e.tracestate \
         FROM unnest($3::uuid[], $4::text[], $5::int4[], $6::bytea[], $7::uuid[], $8::uuid[], $9::text[], \
                     $10::text[], $11::text[]) \
              WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, correlation_id, \
                                   causation_id, actor, traceparent, tracestate, ord)",
    )
    .bind(stream_id)
    .bind(i64::try_from(first_version).unwrap_or(i64::MAX))
    .bind(&columns.event_ids)
    .bind(&columns.event_types)
    .bind(&columns.schema_versions)
    .bind(&columns.payloads)
    .bind(&columns.correlation_ids)
    .bind(&columns.causation_ids)
    .bind(&columns.actors)
    .bind(&columns.traceparents)
    .bind(&columns.tracestates)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn stream_version(
    conn: &mut PgConnection,
    stream_id: &str,
) -> Result<Option<u64>, EventStoreError> {
    let version: Option<i64> =
        sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_optional(conn)
            .await?;
    version.map(|v| to_u64(v, 0)).transpose()
}

pub(crate) async fn read_stream(
    conn: &mut PgConnection,
    stream_id: &str,
    from_version: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, EventStoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version >= $2 \
         ORDER BY stream_version LIMIT $3"
    )))
    .bind(stream_id)
    .bind(i64::try_from(from_version).unwrap_or(i64::MAX))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_event).collect()
}

/// Reads the global order after `after`, stopping below the oldest transaction still in progress:
/// a transaction that commits later can then only add events after what this call returns.
///
/// The page is read as a binary `COPY` and parsed by [`pg_copy`], which costs the client about half
/// of what sqlx's row decoding did (docs/benchmarks.md, "Replay"). `COPY` takes no parameters, so
/// the position and the limit are written into the statement: all three are integers.
pub(crate) async fn read_all(
    pool: &PgPool,
    after: LogPosition,
    limit: usize,
) -> Result<Vec<RecordedEvent>, EventStoreError> {
    let mut connection = CloseUnlessCompleted {
        connection: pool.acquire().await?,
        completed: false,
    };
    let events = read_all_copy(&mut connection.connection, after, limit).await;
    connection.completed = events.is_ok();
    events
}

/// A pooled connection that goes back to the pool only once a `COPY` read on it completed. sqlx
/// checks a connection given back mid-statement with a ping, but a `COPY` cancelled (a replay
/// dropped early) after its last row and before its closing `ReadyForQuery` passes that ping on
/// the stale `ReadyForQuery` and leaves the ping's own reply unread: the next `COPY` on it then
/// failed with "expected CopyOutResponse, got ReadyForQuery" (seen in the time-travel bench). A
/// cancelled or failed read therefore closes its connection.
struct CloseUnlessCompleted {
    connection: PoolConnection<Postgres>,
    completed: bool,
}

impl Drop for CloseUnlessCompleted {
    fn drop(&mut self) {
        if !self.completed {
            self.connection.close_on_drop();
        }
    }
}

async fn read_all_copy(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: usize,
) -> Result<Vec<RecordedEvent>, EventStoreError> {
    let sql = format!(
        "COPY (SELECT {EVENT_COLUMNS} FROM events \
         WHERE (tx_id, global_position) > ('{commit_id}'::xid8, {global_position}) \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY tx_id, global_position LIMIT {limit}) TO STDOUT (FORMAT binary)",
        commit_id = after.commit_id,
        global_position = i64::try_from(after.global_position).unwrap_or(i64::MAX),
    );
    let mut chunks = conn.copy_out_raw(&sql).await?;
    let mut parser = pg_copy::CopyParser::default();
    let mut events = Vec::with_capacity(limit.min(READ_CAPACITY));
    // Each chunk is parsed as it arrives, so the client's work overlaps the server producing the
    // rest of the page, and no page of raw bytes is held.
    while let Some(chunk) = chunks.try_next().await? {
        parser.feed(&chunk, &mut |fields| {
            events.push(pg_copy::decode_event(fields)?);
            Ok(())
        })?;
    }
    parser.finish()?;
    Ok(events)
}

/// Most events a read reserves room for up front; a larger page grows the vector as rows come.
const READ_CAPACITY: usize = 16_384;

/// [`read_all`] of the stored rows with their `content_digest` column, for the chain verifier;
/// the horizon is applied after the limit, as in [`read_unsealed`] and for the same reason.
pub(crate) async fn read_all_with_digests(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: usize,
) -> Result<Vec<(RecordedEvent, Option<Vec<u8>>)>, EventStoreError> {
    let mut rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT * FROM (SELECT {EVENT_COLUMNS}, content_digest FROM events \
                        WHERE (tx_id, global_position) > (($1::bigint)::text::xid8, $2) \
                        ORDER BY tx_id, global_position LIMIT $3) AS page \
         WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY tx_id, global_position"
    )))
    .bind(i64::try_from(after.commit_id).unwrap_or(i64::MAX))
    .bind(i64::try_from(after.global_position).unwrap_or(i64::MAX))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch(conn);
    let mut events = Vec::with_capacity(limit.min(READ_CAPACITY));
    while let Some(row) = rows.try_next().await? {
        events.push((decode_event(&row)?, row.try_get(14)?));
    }
    Ok(events)
}

/// What the sealer needs of up to `limit` events after `after`, in [`read_all`] order and below
/// the same horizon: no payload, no metadata, so the rows are a fraction of a full read.
///
/// The horizon is applied after the limit, which returns the same rows: it bounds `tx_id`, the
/// leading sort key, so the visible rows are a prefix of the page. But the planner then walks the
/// `(tx_id, global_position)` index for `limit` rows, where with the horizon inside it often chose
/// a bitmap scan of every row after `after` and a sort (36 ms instead of 3 ms for 10,000 of
/// 100,000 rows), which made catching up quadratic.
pub(crate) async fn read_unsealed(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: usize,
) -> Result<Vec<UnsealedEvent>, EventStoreError> {
    let mut rows = sqlx::query(
        "SELECT * FROM (SELECT tx_id, global_position, event_id, stream_version, recorded_at, \
                               content_digest FROM events \
                        WHERE (tx_id, global_position) > (($1::bigint)::text::xid8, $2) \
                        ORDER BY tx_id, global_position LIMIT $3) AS page \
         WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY tx_id, global_position",
    )
    .bind(i64::try_from(after.commit_id).unwrap_or(i64::MAX))
    .bind(i64::try_from(after.global_position).unwrap_or(i64::MAX))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch(conn);
    let mut events = Vec::with_capacity(limit.min(READ_CAPACITY));
    while let Some(row) = rows.try_next().await? {
        let commit_id: Xid8 = row.try_get(0)?;
        let global_position = to_u64(row.try_get(1)?, 0)?;
        let recorded_at: DateTime<Utc> = row.try_get(4)?;
        events.push(UnsealedEvent {
            position: LogPosition {
                commit_id: commit_id.0,
                global_position,
            },
            event_id: row.try_get(2)?,
            stream_version: to_u64(row.try_get(3)?, global_position)?,
            recorded_at_micros: recorded_at.timestamp_micros(),
            content_digest: row.try_get(5)?,
        });
    }
    Ok(events)
}

/// The oldest transaction still running: every commit id below it is finished, and the
/// chain continues only with those (the horizon [`read_unsealed`] applies).
pub(crate) async fn visibility_horizon(conn: &mut PgConnection) -> Result<u64, EventStoreError> {
    let horizon: Xid8 = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())")
        .fetch_one(conn)
        .await?;
    Ok(horizon.0)
}

/// Whether any of `commit_ids` appended an event, or the transaction of `head` appended one after
/// it: one index probe each. The commit ids are finished (below the horizon), so the answer does
/// not change after this snapshot.
///
/// Each probe orders by the `(tx_id, global_position)` index and stops at the first row, so it is
/// an index probe whatever the statistics say: `tx_id = ANY(...)` over many ids planned as a
/// sequential scan of the whole log.
pub(crate) async fn holds_events(
    conn: &mut PgConnection,
    commit_ids: &[u64],
    head: Option<LogPosition>,
) -> Result<bool, EventStoreError> {
    let commit_ids: Vec<i64> = commit_ids
        .iter()
        .map(|id| i64::try_from(*id).unwrap_or(i64::MAX))
        .collect();
    let head_commit = head.map(|head| i64::try_from(head.commit_id).unwrap_or(i64::MAX));
    let head_position = head.map(|head| i64::try_from(head.global_position).unwrap_or(i64::MAX));
    let held: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM unnest($1::int8[]) AS unfed(commit_id), \
                        LATERAL (SELECT 1 FROM events WHERE tx_id = (unfed.commit_id)::text::xid8 \
                                 ORDER BY tx_id, global_position LIMIT 1) AS held) \
             OR EXISTS (SELECT 1 FROM events WHERE tx_id = ($2::int8)::text::xid8 \
                          AND global_position > $3 ORDER BY tx_id, global_position LIMIT 1)",
    )
    .bind(&commit_ids)
    .bind(head_commit)
    .bind(head_position)
    .fetch_one(conn)
    .await?;
    Ok(held)
}

/// The stored events at `positions`, in no particular order.
pub(crate) async fn read_events_at(
    conn: &mut PgConnection,
    positions: &[u64],
) -> Result<Vec<RecordedEvent>, EventStoreError> {
    let positions: Vec<i64> = positions
        .iter()
        .map(|p| i64::try_from(*p).unwrap_or(i64::MAX))
        .collect();
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE global_position = ANY($1)"
    )))
    .bind(&positions)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_event).collect()
}

/// Events stored after `after`, including those not yet visible to `read_all`.
pub(crate) async fn count_after(
    conn: &mut PgConnection,
    after: LogPosition,
) -> Result<u64, EventStoreError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE (tx_id, global_position) > (($1::bigint)::text::xid8, $2)",
    )
    .bind(i64::try_from(after.commit_id).unwrap_or(i64::MAX))
    .bind(i64::try_from(after.global_position).unwrap_or(i64::MAX))
    .fetch_one(conn)
    .await?;
    to_u64(count, 0)
}

pub(crate) async fn record_inbox(
    conn: &mut PgConnection,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, EventStoreError> {
    let result = sqlx::query(
        "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// One statement for a whole batch: what a consumer handling many events per transaction needs.
pub(crate) async fn record_inbox_many(
    conn: &mut PgConnection,
    consumer: &str,
    event_ids: &[Uuid],
) -> Result<Vec<bool>, EventStoreError> {
    let inserted: std::collections::HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO inbox (consumer, event_id) SELECT $1, unnest($2::uuid[]) \
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(consumer)
    .bind(event_ids)
    .fetch_all(conn)
    .await?
    .into_iter()
    .collect();
    let mut seen = std::collections::HashSet::with_capacity(event_ids.len());
    Ok(event_ids
        .iter()
        .map(|id| seen.insert(*id) && inserted.contains(id))
        .collect())
}

pub(crate) async fn load_checkpoint(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<LogPosition>, EventStoreError> {
    let row = sqlx::query("SELECT commit_id, global_position FROM checkpoints WHERE name = $1")
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
    conn: &mut PgConnection,
    name: &str,
    position: LogPosition,
) -> Result<(), EventStoreError> {
    sqlx::query(
        "INSERT INTO checkpoints (name, commit_id, global_position) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET commit_id = EXCLUDED.commit_id, \
         global_position = EXCLUDED.global_position, updated_at = now()",
    )
    .bind(name)
    .bind(i64::try_from(position.commit_id).unwrap_or(i64::MAX))
    .bind(i64::try_from(position.global_position).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn save_snapshot(
    conn: &mut PgConnection,
    snapshot: &Snapshot,
) -> Result<(), EventStoreError> {
    sqlx::query(
        "INSERT INTO snapshots (snapshot_key, version, schema_version, payload) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (snapshot_key, version) DO UPDATE SET schema_version = EXCLUDED.schema_version, \
         payload = EXCLUDED.payload, taken_at = now()",
    )
    .bind(&snapshot.key)
    .bind(i64::try_from(snapshot.version).unwrap_or(i64::MAX))
    .bind(i32::try_from(snapshot.schema_version).unwrap_or(i32::MAX))
    .bind(&snapshot.payload)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn load_snapshot(
    conn: &mut PgConnection,
    key: &str,
    at_most: u64,
) -> Result<Option<Snapshot>, EventStoreError> {
    let row = sqlx::query(
        "SELECT version, schema_version, payload FROM snapshots \
         WHERE snapshot_key = $1 AND version <= $2 ORDER BY version DESC LIMIT 1",
    )
    .bind(key)
    .bind(i64::try_from(at_most).unwrap_or(i64::MAX))
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(Snapshot {
            key: key.to_owned(),
            version: to_u64(row.try_get(0)?, 0)?,
            schema_version: u32::try_from(row.try_get::<i32, _>(1)?).unwrap_or(0),
            payload: row.try_get(2)?,
        })
    })
    .transpose()
}

/// A transaction id (`xid8`) as PostgreSQL sends it, so reads select `tx_id` itself: casting it
/// through `text` to `bigint` in SQL cost the server a string conversion per row.
struct Xid8(u64);

/// `xid8`'s type oid, fixed in PostgreSQL's catalog (`pg_type.dat`) since version 13.
const XID8_OID: Oid = Oid(5069);

impl Type<Postgres> for Xid8 {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(XID8_OID)
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        ty.oid() == Some(XID8_OID)
    }
}

impl<'r> Decode<'r, Postgres> for Xid8 {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        match value.format() {
            // Binary: the 64-bit id, big-endian (`xid8send`).
            PgValueFormat::Binary => {
                let bytes: [u8; 8] = value
                    .as_bytes()?
                    .try_into()
                    .map_err(|_| "an xid8 value is not 8 bytes long")?;
                Ok(Self(u64::from_be_bytes(bytes)))
            }
            PgValueFormat::Text => Ok(Self(value.as_str()?.parse()?)),
        }
    }
}

fn decode_event(row: &PgRow) -> Result<RecordedEvent, EventStoreError> {
    let global_position: i64 = row.try_get(1)?;
    let position = to_u64(global_position, 0)?;
    let corrupt = |reason: &str| EventStoreError::Corrupt {
        global_position: position,
        reason: reason.to_owned(),
    };
    let commit_id: Xid8 = row.try_get(0)?;
    Ok(RecordedEvent {
        position: LogPosition {
            commit_id: commit_id.0,
            global_position: position,
        },
        stream_id: row.try_get(2)?,
        stream_version: to_u64(row.try_get(3)?, position)?,
        event_id: row.try_get(4)?,
        event_type: row.try_get(5)?,
        schema_version: u32::try_from(row.try_get::<i32, _>(6)?)
            .map_err(|_| corrupt("negative schema version"))?,
        payload: row.try_get(7)?,
        metadata: EventMetadata {
            correlation_id: row.try_get(8)?,
            causation_id: row.try_get(9)?,
            actor: row.try_get(10)?,
            traceparent: row.try_get(11)?,
            tracestate: row.try_get(12)?,
        },
        recorded_at: row.try_get(13)?,
    })
}

/// The seal head and the highest seal sequence stored, read in one statement (one snapshot).
pub(crate) async fn load_seal_head(
    conn: &mut PgConnection,
) -> Result<SealHeadState, EventStoreError> {
    let row = sqlx::query(
        "SELECT h.sequence, h.commit_id, h.global_position, h.chain_digest, \
                (SELECT coalesce(max(last_sequence), 0) FROM event_seals)::bigint \
         FROM (SELECT 1) AS one LEFT JOIN event_seal_head h ON h.id = 1",
    )
    .fetch_one(conn)
    .await?;
    decode_seal_head(&row)
}

/// Seal rows ending after sequence `after` and at most at `up_to`, in chain order.
pub(crate) async fn load_seals(
    conn: &mut PgConnection,
    after: u64,
    up_to: u64,
    limit: usize,
) -> Result<Vec<StoredSeal>, EventStoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SEAL_COLUMNS} FROM event_seals \
         WHERE last_sequence > $1 AND last_sequence <= $2 ORDER BY last_sequence LIMIT $3"
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
    conn: &mut PgConnection,
    event_id: Uuid,
) -> Result<Vec<StoredSeal>, EventStoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {SEAL_COLUMNS} FROM event_seals WHERE position($1::bytea IN records) > 0 \
         ORDER BY last_sequence"
    )))
    .bind(event_id.as_bytes().as_slice())
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_seal).collect()
}

/// Where the event `event_id` is in the global order now, if it is still stored.
pub(crate) async fn event_position(
    conn: &mut PgConnection,
    event_id: Uuid,
) -> Result<Option<LogPosition>, EventStoreError> {
    let row = sqlx::query("SELECT tx_id, global_position FROM events WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(conn)
        .await?;
    row.map(|row| {
        let commit_id: Xid8 = row.try_get(0)?;
        Ok(LogPosition {
            commit_id: commit_id.0,
            global_position: to_u64(row.try_get(1)?, 0)?,
        })
    })
    .transpose()
}

/// Inserts `seals` and moves the head to `new_head`, if the head is still at `expected_sequence`;
/// false (nothing written) when another sealer moved it first.
///
/// One statement, so it is atomic without BEGIN/COMMIT and the transaction id it takes (which holds
/// back every reader's visibility horizon on the cluster) lives only as long as the statement. The
/// head update re-checks `sequence` after waiting for a concurrent sealer's row lock (READ
/// COMMITTED), so the loser of a race matches no row and inserts nothing.
pub(crate) async fn store_seals(
    conn: &mut PgConnection,
    expected_sequence: u64,
    new_head: &ChainHead,
    seals: &[StoredSeal],
) -> Result<bool, EventStoreError> {
    let as_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let column = |value: fn(&StoredSeal) -> u64| -> Vec<i64> {
        seals.iter().map(|s| as_i64(value(s))).collect()
    };
    let digests: Vec<&[u8]> = seals.iter().map(|s| s.chain_digest.as_slice()).collect();
    let records: Vec<&[u8]> = seals.iter().map(|s| s.records.as_slice()).collect();
    let result = sqlx::query(
        "WITH head AS ( \
           UPDATE event_seal_head SET sequence = $1, commit_id = $2, global_position = $3, \
                  chain_digest = $4, updated_at = now() \
           WHERE id = 1 AND sequence = $5 RETURNING 1) \
         INSERT INTO event_seals (first_sequence, last_sequence, first_commit_id, \
                                  first_global_position, last_commit_id, last_global_position, \
                                  event_count, chain_digest, records) \
         SELECT s.* \
         FROM unnest($6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
                     $12::int8[], $13::bytea[], $14::bytea[]) \
              AS s(first_sequence, last_sequence, first_commit_id, first_global_position, \
                   last_commit_id, last_global_position, event_count, chain_digest, records) \
         WHERE EXISTS (SELECT 1 FROM head)",
    )
    .bind(as_i64(new_head.sequence))
    .bind(as_i64(new_head.position.commit_id))
    .bind(as_i64(new_head.position.global_position))
    .bind(new_head.digest.as_slice())
    .bind(as_i64(expected_sequence))
    .bind(column(|s| s.first_sequence))
    .bind(column(|s| s.last_sequence))
    .bind(column(|s| s.first_position.commit_id))
    .bind(column(|s| s.first_position.global_position))
    .bind(column(|s| s.last_position.commit_id))
    .bind(column(|s| s.last_position.global_position))
    .bind(column(|s| s.event_count))
    .bind(&digests)
    .bind(&records)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == seals.len() as u64)
}
