//! PostgreSQL's binary `COPY` format, parsed straight into events for fast reads of the global order.
//!
//! A page of the global order read with `COPY (SELECT ...) TO STDOUT (FORMAT binary)` arrives as
//! raw bytes: the client skips sqlx's per-row machinery (a row object, its column table, a decode
//! call per column), which was most of the client's cost of a replay (docs/benchmarks.md,
//! "Replay"). The format: an 11-byte signature, a 32-bit flags word and a header extension, then
//! per tuple a 16-bit field count and per field a 32-bit length (-1 for NULL) and the value in the
//! type's binary send format, then a field count of -1.
//! <https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4>

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::EventStoreError;
use crate::event::{EventMetadata, LogPosition, RecordedEvent};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Fields of the tuples [`decode_event`] reads: `postgres::EVENT_COLUMNS`.
pub(crate) const EVENT_FIELDS: usize = 14;

/// One tuple's fields as borrowed values, None for NULL.
pub(crate) type Fields<'a> = [Option<&'a [u8]>; EVENT_FIELDS];

/// What [`CopyParser::feed`] hands each whole tuple to.
pub(crate) type OnTuple<'f> = dyn FnMut(&Fields<'_>) -> Result<(), EventStoreError> + 'f;

/// Microseconds from 1970-01-01 (Unix) to 2000-01-01 (PostgreSQL's epoch for timestamps).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A parser fed the `CopyData` chunks of one binary `COPY ... TO STDOUT` in order. PostgreSQL
/// sends one tuple per chunk, but the protocol does not promise it, so a tuple split across chunks
/// is kept until it is whole.
#[derive(Debug, Default)]
pub(crate) struct CopyParser {
    /// Bytes of an incomplete header or tuple.
    pending: Vec<u8>,
    header_read: bool,
    finished: bool,
}

impl CopyParser {
    /// Parses `chunk`, handing each whole tuple's fields (None = NULL) to `on_tuple`.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        on_tuple: &mut OnTuple<'_>,
    ) -> Result<(), EventStoreError> {
        if self.pending.is_empty() {
            let used = self.parse(chunk, on_tuple)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut data = std::mem::take(&mut self.pending);
            data.extend_from_slice(chunk);
            let used = self.parse(&data, on_tuple)?;
            data.drain(..used);
            self.pending = data;
        }
        Ok(())
    }

    /// Checks the stream ended with its trailer and nothing after it.
    pub(crate) fn finish(&self) -> Result<(), EventStoreError> {
        if self.finished && self.pending.is_empty() {
            Ok(())
        } else {
            Err(protocol("the binary COPY stream ended before its trailer"))
        }
    }

    /// Parses whole items from the front of `data`; returns how many bytes they took.
    fn parse(&mut self, data: &[u8], on_tuple: &mut OnTuple<'_>) -> Result<usize, EventStoreError> {
        let mut at = 0;
        if !self.header_read {
            let Some(header) = data.get(..SIGNATURE.len() + 8) else {
                return Ok(0);
            };
            if &header[..SIGNATURE.len()] != SIGNATURE {
                return Err(protocol("the COPY stream is not in binary format"));
            }
            let extension = be_u32(&header[SIGNATURE.len() + 4..]) as usize;
            at = header.len() + extension;
            if data.len() < at {
                return Ok(0);
            }
            self.header_read = true;
        }
        loop {
            let Some(count) = data.get(at..at + 2) else {
                return Ok(at);
            };
            let count = i16::from_be_bytes([count[0], count[1]]);
            if count == -1 {
                if self.finished || data.len() > at + 2 {
                    return Err(protocol("bytes after the binary COPY trailer"));
                }
                self.finished = true;
                return Ok(at + 2);
            }
            if usize::try_from(count).ok() != Some(EVENT_FIELDS) {
                return Err(protocol(&format!(
                    "a COPY tuple has {count} fields, expected {EVENT_FIELDS}"
                )));
            }
            let mut fields: Fields<'_> = [None; EVENT_FIELDS];
            let mut next = at + 2;
            for field in &mut fields {
                let Some(length) = data.get(next..next + 4) else {
                    return Ok(at);
                };
                let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
                next += 4;
                if length < 0 {
                    continue;
                }
                let end = next + length as usize;
                let Some(value) = data.get(next..end) else {
                    return Ok(at);
                };
                *field = Some(value);
                next = end;
            }
            on_tuple(&fields)?;
            at = next;
        }
    }
}

fn protocol(message: &str) -> EventStoreError {
    EventStoreError::Database(sqlx::Error::Protocol(message.to_owned()))
}

fn be_u32(bytes: &[u8]) -> u32 {
    bytes
        .get(..4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// One tuple of `postgres::EVENT_COLUMNS` as an event: the binary COPY twin of the row decoder.
/// A value of the wrong size is a corrupt row, named by its position.
pub(crate) fn decode_event(fields: &Fields<'_>) -> Result<RecordedEvent, EventStoreError> {
    let global_position = fields[1]
        .and_then(|value| <[u8; 8]>::try_from(value).ok())
        .map(i64::from_be_bytes)
        .and_then(|position| u64::try_from(position).ok())
        .ok_or_else(|| protocol("a COPY tuple without a global position"))?;
    let corrupt = |column: &str| EventStoreError::Corrupt {
        global_position,
        reason: format!("column {column} is missing or has the wrong size"),
    };
    let required = |index: usize, column: &str| fields[index].ok_or_else(|| corrupt(column));
    let int8 = |index: usize, column: &str| {
        <[u8; 8]>::try_from(required(index, column)?)
            .map(i64::from_be_bytes)
            .map_err(|_| corrupt(column))
    };
    let text = |value: &[u8], column: &str| {
        std::str::from_utf8(value)
            .map(str::to_owned)
            .map_err(|_| corrupt(column))
    };
    let optional_text =
        |index: usize, column: &str| fields[index].map(|value| text(value, column)).transpose();
    let uuid = |value: &[u8], column: &str| Uuid::from_slice(value).map_err(|_| corrupt(column));
    let schema_version = <[u8; 4]>::try_from(required(6, "schema_version")?)
        .map(i32::from_be_bytes)
        .map_err(|_| corrupt("schema_version"))?;
    let recorded_at = int8(13, "recorded_at")?
        .checked_add(POSTGRES_EPOCH_MICROS)
        .and_then(DateTime::<Utc>::from_timestamp_micros)
        .ok_or_else(|| corrupt("recorded_at"))?;
    Ok(RecordedEvent {
        position: LogPosition {
            commit_id: int8(0, "tx_id")? as u64,
            global_position,
        },
        stream_id: text(required(2, "stream_id")?, "stream_id")?,
        stream_version: u64::try_from(int8(3, "stream_version")?)
            .map_err(|_| corrupt("stream_version"))?,
        event_id: uuid(required(4, "event_id")?, "event_id")?,
        event_type: text(required(5, "event_type")?, "event_type")?,
        schema_version: u32::try_from(schema_version).map_err(|_| corrupt("schema_version"))?,
        payload: required(7, "payload")?.to_vec(),
        metadata: EventMetadata {
            correlation_id: uuid(required(8, "correlation_id")?, "correlation_id")?,
            causation_id: fields[9]
                .map(|value| uuid(value, "causation_id"))
                .transpose()?,
            actor: text(required(10, "actor")?, "actor")?,
            traceparent: optional_text(11, "traceparent")?,
            tracestate: optional_text(12, "tracestate")?,
        },
        recorded_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            None => out.extend_from_slice(&(-1_i32).to_be_bytes()),
            Some(value) => {
                out.extend_from_slice(&(value.len() as i32).to_be_bytes());
                out.extend_from_slice(value);
            }
        }
    }

    fn stream_of(positions: &[i64]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0_u32.to_be_bytes());
        out.extend_from_slice(&0_u32.to_be_bytes());
        for &position in positions {
            out.extend_from_slice(&(EVENT_FIELDS as i16).to_be_bytes());
            field(&mut out, Some(&7_i64.to_be_bytes()));
            field(&mut out, Some(&position.to_be_bytes()));
            field(&mut out, Some(b"device-1"));
            field(&mut out, Some(&3_i64.to_be_bytes()));
            field(&mut out, Some(Uuid::from_u128(1).as_bytes()));
            field(&mut out, Some(b"ScanCompleted"));
            field(&mut out, Some(&2_i32.to_be_bytes()));
            field(&mut out, Some(b"\x08\x01"));
            field(&mut out, Some(Uuid::from_u128(2).as_bytes()));
            field(&mut out, None);
            field(&mut out, Some(b"user:alice"));
            field(&mut out, None);
            field(&mut out, None);
            // 2026-01-01T00:00:00Z in microseconds since 2000-01-01.
            field(&mut out, Some(&820_540_800_000_000_i64.to_be_bytes()));
        }
        out.extend_from_slice(&(-1_i16).to_be_bytes());
        out
    }

    fn parse_in_chunks(bytes: &[u8], chunk: usize) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let mut parser = CopyParser::default();
        let mut events = Vec::new();
        for piece in bytes.chunks(chunk) {
            parser.feed(piece, &mut |fields| {
                events.push(decode_event(fields)?);
                Ok(())
            })?;
        }
        parser.finish()?;
        Ok(events)
    }

    #[test]
    fn tuples_decode_whatever_the_chunking() {
        let bytes = stream_of(&[10, 11, 12]);
        for chunk in [1, 2, 7, 64, bytes.len()] {
            let events = parse_in_chunks(&bytes, chunk).unwrap();
            let positions: Vec<u64> = events.iter().map(|e| e.position.global_position).collect();
            assert_eq!(positions, [10, 11, 12], "chunks of {chunk}");
            let first = &events[0];
            assert_eq!(first.position.commit_id, 7);
            assert_eq!(first.stream_id, "device-1");
            assert_eq!(first.stream_version, 3);
            assert_eq!(first.event_type, "ScanCompleted");
            assert_eq!(first.schema_version, 2);
            assert_eq!(first.payload, b"\x08\x01");
            assert_eq!(first.metadata.causation_id, None);
            assert_eq!(first.metadata.actor, "user:alice");
            assert_eq!(first.recorded_at.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        }
    }

    #[test]
    fn a_stream_cut_short_or_malformed_is_an_error_not_a_panic() {
        let bytes = stream_of(&[10]);
        assert!(parse_in_chunks(&bytes[..bytes.len() - 2], 5).is_err());
        assert!(parse_in_chunks(b"not a copy stream at all", 4).is_err());
        let mut wrong_size = bytes.clone();
        // The stream_version field's length says 8; make the value short by claiming 4.
        let at = SIGNATURE.len() + 8 + 2 + (4 + 8) + (4 + 8) + (4 + 8);
        wrong_size[at..at + 4].copy_from_slice(&4_i32.to_be_bytes());
        assert!(parse_in_chunks(&wrong_size, 16).is_err());
    }
}
