//! Verifying the hash chain: walks the log and its seals together in global read order, read-only.
//!
//! Each seal row covers a batch of events and lists one record per event (see `seal.rs`). For
//! every batch the verifier folds the records from the previous seal's digest, which must give the
//! seal's chain digest: that authenticates the records. It recomputes every event's content digest
//! from the stored content (never trusting `events.content_digest`) and compares each event with
//! its record, so the first altered, removed, moved or inserted event is named, not only its batch.
//! When the records do not fold to the seal's digest, the events decide: if they still fold to it,
//! the records were edited (a tampered seal), otherwise the first event that differs is reported.

use uuid::Uuid;

use crate::error::EventStoreError;
use crate::event::{LogPosition, RecordedEvent};
use crate::seal::{ChainHead, EventRecord, StoredSeal};
use crate::store::{Backend, EventStore};
use crate::{postgres, sqlite};

/// Events read per page while verifying: memory stays bounded on any log length.
const EVENT_PAGE: usize = 10_000;

/// Seal rows read per page; each holds up to [`crate::EVENTS_PER_SEAL`] records of 80 bytes.
const SEAL_PAGE: usize = 16;

/// The outcome of [`EventStore::verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Events whose seals verified, counted from the first: all sealed events when the chain is
    /// intact, otherwise those before the first problem.
    pub sealed: u64,
    /// Events stored after the newest seal. Not a problem: the sealer has not reached them yet.
    pub unsealed_after: u64,
    /// The newest seal as recorded when verification started. Keep its digest outside the database
    /// (a ticket, a signed report): a later verification whose chain passes through the same
    /// sequence with a different digest shows that the log was rewritten wholesale.
    pub head: ChainHead,
    /// The first place where the log and its seals disagree, in chain order.
    pub first_problem: Option<ChainProblem>,
}

impl ChainReport {
    /// True when every sealed event is present, unchanged and in its sealed order.
    pub fn is_intact(&self) -> bool {
        self.first_problem.is_none()
    }
}

impl std::fmt::Display for ChainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.first_problem {
            None => {
                write!(
                    f,
                    "the hash chain is intact: {} sealed events are present, unchanged and in order",
                    self.sealed
                )?;
                if self.unsealed_after > 0 {
                    write!(
                        f,
                        "; {} events appended since are not sealed yet",
                        self.unsealed_after
                    )?;
                }
                write!(f, "; head: {}", self.head)
            }
            Some(problem) => {
                write!(f, "TAMPERING DETECTED: {problem}. ")?;
                match self.sealed {
                    0 => f.write_str("Nothing before it is sealed."),
                    1 => f.write_str("Sealed event #1, before it, verifies."),
                    n => write!(f, "Sealed events #1 to #{n}, before it, verify."),
                }
            }
        }
    }
}

/// Where the log stopped matching its seals. Positions are global positions, sequences are seal
/// numbers (the n-th event of the chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// The event is where it was sealed, but its stored row no longer matches its seal: its content
    /// no longer hashes to the sealed content digest, or its `content_digest` column was changed.
    Altered {
        sequence: u64,
        position: LogPosition,
        stream_id: String,
        stream_version: u64,
        event_id: Uuid,
    },
    /// A sealed event is no longer stored. `event_id` and `position` are unknown when its seal was
    /// deleted with it (the seal numbers jump).
    Removed {
        sequence: u64,
        event_id: Option<Uuid>,
        position: Option<LogPosition>,
    },
    /// A sealed event is stored, but at another place in the global order than when it was sealed.
    Reordered {
        sequence: u64,
        event_id: Uuid,
        sealed_position: LogPosition,
        current_position: LogPosition,
    },
    /// An event that was never sealed sits between sealed events: it was written into the past.
    Inserted {
        before_sequence: u64,
        event_id: Uuid,
        position: LogPosition,
        stream_id: String,
        stream_version: u64,
    },
    /// A seal row (or the seal head) was edited or deleted; `detail` says how, and whether the
    /// events it covers are intact. `sequence` is the first event whose seal data is wrong: the
    /// event whose record was edited, the last event of a seal whose chain digest was edited, or
    /// the first event of a deleted seal.
    SealTampered { sequence: u64, detail: String },
    /// The seal head records more sealed events than there are seals: the newest seals were deleted.
    Truncated {
        head_sequence: u64,
        last_sequence: u64,
    },
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainProblem::Altered {
                sequence,
                position,
                stream_id,
                stream_version,
                event_id,
            } => write!(
                f,
                "event {event_id} (stream '{stream_id}' version {stream_version}, global position {}) \
                 was altered after it was sealed as event #{sequence}: its stored row (id, type, \
                 payload, stream, version, metadata, recorded_at or content digest) no longer \
                 matches its seal. Treat this event as untrustworthy and restore it from a backup \
                 taken before the change",
                position.global_position
            ),
            ChainProblem::Removed {
                sequence,
                event_id: Some(event_id),
                position,
            } => write!(
                f,
                "event {event_id}, sealed as event #{sequence}{}, was deleted from the log: no event \
                 with that id is stored any more. State rebuilt from this log lacks it",
                at_position(position.as_ref())
            ),
            ChainProblem::Removed {
                sequence,
                event_id: None,
                position,
            } => write!(
                f,
                "the event sealed as #{sequence}{} was deleted together with its seal (the seal \
                 numbers jump over it), so which event it was is unknown. State rebuilt from this \
                 log lacks it",
                at_position(position.as_ref())
            ),
            ChainProblem::Reordered {
                sequence,
                event_id,
                sealed_position,
                current_position,
            } => write!(
                f,
                "event {event_id}, sealed as event #{sequence} at global position {} (commit {}), \
                 now stands at global position {} (commit {}): the log's order was rewritten, so a \
                 replay applies events in a different order than they happened",
                sealed_position.global_position,
                sealed_position.commit_id,
                current_position.global_position,
                current_position.commit_id
            ),
            ChainProblem::Inserted {
                before_sequence,
                event_id,
                position,
                stream_id,
                stream_version,
            } => write!(
                f,
                "event {event_id} (stream '{stream_id}' version {stream_version}, global position {}) \
                 was never sealed but stands before sealed event #{before_sequence}: it was written \
                 into the log's past after sealing, which appends cannot do",
                position.global_position
            ),
            ChainProblem::SealTampered { sequence, detail } => write!(
                f,
                "the seal of event #{sequence} was tampered with: {detail}. The seal tables were \
                 written by something other than the sealer"
            ),
            ChainProblem::Truncated {
                head_sequence,
                last_sequence,
            } => write!(
                f,
                "the seal head records {head_sequence} sealed events, but the seals end at \
                 #{last_sequence}: the newest {} seals were deleted, and the events they covered \
                 may have been deleted or changed with them",
                head_sequence - last_sequence
            ),
        }
    }
}

fn at_position(position: Option<&LogPosition>) -> String {
    position.map_or_else(String::new, |p| {
        format!(" at global position {}", p.global_position)
    })
}

impl EventStore {
    /// Walks the log in global read order together with its seals and reports the first altered,
    /// removed, reordered or inserted event, or edited seal. Read-only; reads pages of 10,000
    /// events and 16 seals, so memory does not grow with the log.
    ///
    /// Seals added while it runs (a sealer is following the log) are not checked; the report's
    /// `head` says how far it checked.
    pub async fn verify_chain(&self) -> Result<ChainReport, EventStoreError> {
        let start = self.seal_head_state().await?;
        let head = start.head.unwrap_or(ChainHead::GENESIS);
        let (verified, mut first_problem) = self.walk_chain(&head).await?;
        if first_problem.is_none() {
            first_problem = self.check_head(start.head, &verified).await?;
        }
        Ok(ChainReport {
            sealed: verified.sequence,
            unsealed_after: self.count_after(head.position).await?,
            head,
            first_problem,
        })
    }

    /// Checks seals up to `head.sequence` against the events; returns the verified prefix and the
    /// first problem.
    async fn walk_chain(
        &self,
        head: &ChainHead,
    ) -> Result<(ChainHead, Option<ChainProblem>), EventStoreError> {
        let mut seals = SealCursor::new(self, head.sequence);
        let mut events = EventCursor::new(self);
        let mut verified = ChainHead::GENESIS;
        while let Some(seal) = seals.next().await? {
            let expected_sequence = verified.sequence + 1;
            if seal.first_sequence != expected_sequence {
                let problem = self.seal_gap(&seal, expected_sequence, &mut events).await?;
                return Ok((verified, Some(problem)));
            }
            let records = match well_formed_records(&seal) {
                Ok(records) => records,
                Err(detail) => {
                    let problem = ChainProblem::SealTampered {
                        sequence: seal.first_sequence,
                        detail,
                    };
                    return Ok((verified, Some(problem)));
                }
            };
            let records_digest = fold(&verified.digest, &records);
            let records_authentic = records_digest == seal.chain_digest;
            let mut matched = Vec::with_capacity(records.len());
            let mut mismatch = None;
            for record in &records {
                match events.next().await? {
                    Some(event) if event.matches(record) => matched.push(event),
                    other => {
                        mismatch = Some((record, other));
                        break;
                    }
                }
            }
            let Some((record, found)) = mismatch else {
                if records_authentic {
                    if let Some(problem) = position_columns_problem(&seal, &records) {
                        return Ok((verified, Some(problem)));
                    }
                    verified = ChainHead {
                        sequence: seal.last_sequence,
                        position: seal.last_position,
                        digest: seal.chain_digest,
                    };
                    continue;
                }
                let problem = self
                    .edited_chain_digest(&seal, &records_digest, &mut seals, head)
                    .await?;
                return Ok((verified, Some(problem)));
            };
            let sequence = seal.first_sequence + matched.len() as u64;
            let prefix = ChainHead {
                sequence: sequence - 1,
                position: matched
                    .last()
                    .map_or(verified.position, |event| event.event.position),
                digest: fold(&verified.digest, &records[..matched.len()]),
            };
            if !records_authentic
                && let Some(problem) = edited_records(
                    &seal,
                    &verified.digest,
                    &records,
                    &matched,
                    found.as_ref(),
                    &mut events,
                )
                .await?
            {
                return Ok((prefix, Some(problem)));
            }
            let problem = self.event_problem(record, sequence, found).await?;
            return Ok((prefix, Some(problem)));
        }
        Ok((verified, None))
    }

    /// Where the records say event #`sequence` should be, the log has `found` (or nothing), and
    /// it differs from the record.
    async fn event_problem(
        &self,
        record: &EventRecord,
        sequence: u64,
        found: Option<CheckedEvent>,
    ) -> Result<ChainProblem, EventStoreError> {
        let Some(found) = found else {
            return self.missing(record, sequence).await;
        };
        let event = &found.event;
        if event.event_id != record.event_id {
            return self.out_of_place(record, sequence, &found).await;
        }
        if event.position != record.position {
            return Ok(ChainProblem::Reordered {
                sequence,
                event_id: event.event_id,
                sealed_position: record.position,
                current_position: event.position,
            });
        }
        Ok(altered(sequence, event))
    }

    /// The log ended before the event of `record`: deleted, or moved beyond what is visible.
    async fn missing(
        &self,
        record: &EventRecord,
        sequence: u64,
    ) -> Result<ChainProblem, EventStoreError> {
        Ok(match self.event_position(record.event_id).await? {
            None => ChainProblem::Removed {
                sequence,
                event_id: Some(record.event_id),
                position: Some(record.position),
            },
            Some(current_position) => ChainProblem::Reordered {
                sequence,
                event_id: record.event_id,
                sealed_position: record.position,
                current_position,
            },
        })
    }

    /// Where the chain expects the event of `record`, the log has another event, `found`.
    async fn out_of_place(
        &self,
        record: &EventRecord,
        sequence: u64,
        found: &CheckedEvent,
    ) -> Result<ChainProblem, EventStoreError> {
        let event = &found.event;
        // `found` is exactly what was linked into the chain here (its content digest covers its
        // id): the record's event id was edited.
        if found.recomputed.same_link(record) && found.digest_column_intact() {
            return Ok(ChainProblem::SealTampered {
                sequence,
                detail: format!(
                    "its event id was changed to {}; the event it covers, {} at global position {}, \
                     is unchanged",
                    record.event_id, event.event_id, event.position.global_position
                ),
            });
        }
        match self.event_position(record.event_id).await? {
            // Positions are never reused, so another id at the sealed position is the sealed event
            // with its id rewritten.
            None if event.position == record.position => return Ok(altered(sequence, event)),
            None => {
                return Ok(ChainProblem::Removed {
                    sequence,
                    event_id: Some(record.event_id),
                    position: Some(record.position),
                });
            }
            Some(current_position) if current_position != record.position => {
                return Ok(ChainProblem::Reordered {
                    sequence,
                    event_id: record.event_id,
                    sealed_position: record.position,
                    current_position,
                });
            }
            // The sealed event is where it was; `found` was put in front of it.
            Some(_) => {}
        }
        Ok(match self.sealed_record_of(event.event_id).await? {
            Some((own_sequence, own_record)) => ChainProblem::Reordered {
                sequence: own_sequence,
                event_id: event.event_id,
                sealed_position: own_record.position,
                current_position: event.position,
            },
            None => ChainProblem::Inserted {
                before_sequence: sequence,
                event_id: event.event_id,
                position: event.position,
                stream_id: event.stream_id.clone(),
                stream_version: event.stream_version,
            },
        })
    }

    /// The next seal starts at `seal.first_sequence` instead of `expected_sequence`: seals were
    /// deleted (a gap) or one was added by hand (an overlap). Whether the events of a gap are still
    /// there tells a deleted seal from events deleted with their seal.
    async fn seal_gap(
        &self,
        seal: &StoredSeal,
        expected_sequence: u64,
        events: &mut EventCursor<'_>,
    ) -> Result<ChainProblem, EventStoreError> {
        if seal.first_sequence < expected_sequence {
            return Ok(ChainProblem::SealTampered {
                sequence: seal.first_sequence,
                detail: format!(
                    "a seal of events #{} to #{} overlaps the seal before it, which ends at #{}: \
                     it was inserted or edited by hand",
                    seal.first_sequence,
                    seal.last_sequence,
                    expected_sequence - 1
                ),
            });
        }
        let missing = seal.first_sequence - expected_sequence;
        let next_sealed_id = EventRecord::decode_all(&seal.records)
            .and_then(|records| records.first().map(|record| record.event_id));
        let mut present = 0;
        while present < missing {
            match events.next().await? {
                Some(event) if Some(event.event.event_id) != next_sealed_id => present += 1,
                _ => break,
            }
        }
        if present < missing {
            return Ok(ChainProblem::Removed {
                sequence: expected_sequence,
                event_id: None,
                position: None,
            });
        }
        Ok(ChainProblem::SealTampered {
            sequence: expected_sequence,
            detail: format!(
                "it was deleted (the seals jump from #{} to #{}), while the {missing} events it \
                 covered are still stored",
                expected_sequence - 1,
                seal.first_sequence
            ),
        })
    }

    /// The events of `seal` match its records, but the records do not fold to its chain digest:
    /// the digest was edited, or events and records were rewritten together. The next seal (or
    /// the head) links to one of the two digests, which tells them apart.
    async fn edited_chain_digest(
        &self,
        seal: &StoredSeal,
        records_digest: &[u8; 32],
        seals: &mut SealCursor<'_>,
        head: &ChainHead,
    ) -> Result<ChainProblem, EventStoreError> {
        let rest_agrees_with_records = match seals.next().await? {
            Some(next) if next.first_sequence == seal.last_sequence + 1 => {
                well_formed_records(&next)
                    .is_ok_and(|records| fold(records_digest, &records) == next.chain_digest)
            }
            Some(_) => false,
            // The last seal: the head holds a copy of its digest.
            None => head.sequence == seal.last_sequence && head.digest == *records_digest,
        };
        let detail = if rest_agrees_with_records {
            format!(
                "its chain digest was changed; events #{} to #{} are unchanged and still hash to \
                 the digest the rest of the chain links to",
                seal.first_sequence, seal.last_sequence
            )
        } else {
            format!(
                "its chain digest does not follow from events #{} to #{}, although they match its \
                 records: the digest was changed, or some of those events were rewritten together \
                 with their records",
                seal.first_sequence, seal.last_sequence
            )
        };
        Ok(ChainProblem::SealTampered {
            sequence: seal.last_sequence,
            detail,
        })
    }

    /// The chain position and record of `event_id` in any seal, if it was ever sealed.
    async fn sealed_record_of(
        &self,
        event_id: Uuid,
    ) -> Result<Option<(u64, EventRecord)>, EventStoreError> {
        let candidates = match self.backend() {
            Backend::Postgres(pool) => {
                postgres::seals_mentioning(&mut *pool.acquire().await?, event_id).await?
            }
            Backend::Sqlite(pool) => {
                sqlite::seals_mentioning(&mut *pool.acquire().await?, event_id).await?
            }
        };
        Ok(candidates.iter().find_map(|seal| {
            let records = EventRecord::decode_all(&seal.records)?;
            let index = records.iter().position(|r| r.event_id == event_id)?;
            Some((seal.first_sequence + index as u64, *records.get(index)?))
        }))
    }

    /// After an intact walk: the head must name the last seal, and no seal may lie beyond it.
    async fn check_head(
        &self,
        head_at_start: Option<ChainHead>,
        verified: &ChainHead,
    ) -> Result<Option<ChainProblem>, EventStoreError> {
        let Some(head) = head_at_start else {
            return Ok(Some(ChainProblem::SealTampered {
                sequence: 0,
                detail:
                    "the seal head row (event_seal_head, id 1) is missing, so how far the chain \
                         reached cannot be checked and the sealer cannot extend it"
                        .to_owned(),
            }));
        };
        if verified.sequence < head.sequence {
            return Ok(Some(ChainProblem::Truncated {
                head_sequence: head.sequence,
                last_sequence: verified.sequence,
            }));
        }
        if *verified != head {
            return Ok(Some(ChainProblem::SealTampered {
                sequence: head.sequence,
                detail: format!("the seal head ({head}) does not match the last seal ({verified})"),
            }));
        }
        // Read again: a sealer may have moved the head meanwhile, always together with its seals.
        let now = self.seal_head_state().await?;
        let head_now = now.head.map_or(0, |h| h.sequence);
        if now.max_sequence > head_now {
            return Ok(Some(ChainProblem::SealTampered {
                sequence: head_now + 1,
                detail: format!(
                    "seals up to #{} exist beyond the seal head at #{head_now}; they were inserted \
                     by hand or the head was moved back",
                    now.max_sequence
                ),
            }));
        }
        Ok(None)
    }

    async fn load_seals(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredSeal>, EventStoreError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                postgres::load_seals(&mut *pool.acquire().await?, after, up_to, limit).await
            }
            Backend::Sqlite(pool) => {
                sqlite::load_seals(&mut *pool.acquire().await?, after, up_to, limit).await
            }
        }
    }

    async fn event_position(&self, event_id: Uuid) -> Result<Option<LogPosition>, EventStoreError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                postgres::event_position(&mut *pool.acquire().await?, event_id).await
            }
            Backend::Sqlite(pool) => {
                sqlite::event_position(&mut *pool.acquire().await?, event_id).await
            }
        }
    }

    async fn read_page_with_digests(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<(RecordedEvent, Option<Vec<u8>>)>, EventStoreError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                postgres::read_all_with_digests(&mut *pool.acquire().await?, after, limit).await
            }
            Backend::Sqlite(pool) => match self.sqlite_reader() {
                Some(reader) => reader.read_all_with_digests(after, limit).await,
                None => {
                    sqlite::read_all_with_digests(&mut *pool.acquire().await?, after, limit).await
                }
            },
        }
    }
}

/// The records of `seal`, if its columns agree with them; otherwise what was edited.
fn well_formed_records(seal: &StoredSeal) -> Result<Vec<EventRecord>, String> {
    let range = format!("events #{} to #{}", seal.first_sequence, seal.last_sequence);
    let records = EventRecord::decode_all(&seal.records).ok_or_else(|| {
        format!(
            "the records of {range} are {} bytes long, not a whole number of records",
            seal.records.len()
        )
    })?;
    let count = records.len() as u64;
    let consistent = count > 0
        && seal.last_sequence.checked_sub(seal.first_sequence) == Some(count - 1)
        && seal.event_count == count;
    if consistent {
        Ok(records)
    } else {
        Err(format!(
            "the seal of {range} ({} events) holds {count} records: its columns or records were \
             edited by hand",
            seal.event_count
        ))
    }
}

/// After a batch verified against its records: its first and last position columns must name
/// the positions of its first and last record. They only locate the batch (the verifier follows
/// the records), so they are checked last, when the records are known to be right.
fn position_columns_problem(seal: &StoredSeal, records: &[EventRecord]) -> Option<ChainProblem> {
    let first = records.first().map(|r| r.position);
    let last = records.last().map(|r| r.position);
    if first == Some(seal.first_position) && last == Some(seal.last_position) {
        return None;
    }
    Some(ChainProblem::SealTampered {
        sequence: seal.first_sequence,
        detail: format!(
            "its position columns (global positions {} to {}) were changed; events #{} to #{} are \
             unchanged",
            seal.first_position.global_position,
            seal.last_position.global_position,
            seal.first_sequence,
            seal.last_sequence
        ),
    })
}

/// The chain digest after `records`, following `previous`.
fn fold(previous: &[u8; 32], records: &[EventRecord]) -> [u8; 32] {
    records
        .iter()
        .fold(*previous, |digest, record| record.link(&digest))
}

fn altered(sequence: u64, event: &RecordedEvent) -> ChainProblem {
    ChainProblem::Altered {
        sequence,
        position: event.position,
        stream_id: event.stream_id.clone(),
        stream_version: event.stream_version,
        event_id: event.event_id,
    }
}

/// The records of `seal` do not fold to its chain digest and the event for `records[matched.len()]`
/// differs from its record. If the batch's events, recomputed from their content, still fold to
/// the chain digest, they are intact and the record was edited: that seal problem, named by what
/// differs. Otherwise None: the event is the problem. Reads the rest of the batch's events.
async fn edited_records(
    seal: &StoredSeal,
    previous: &[u8; 32],
    records: &[EventRecord],
    matched: &[CheckedEvent],
    found: Option<&CheckedEvent>,
    events: &mut EventCursor<'_>,
) -> Result<Option<ChainProblem>, EventStoreError> {
    let Some(found) = found else {
        return Ok(None);
    };
    let index = matched.len();
    let (Some(record), Some(rest)) = (records.get(index), records.get(index + 1..)) else {
        return Ok(None);
    };
    if found.event.event_id != record.event_id || !found.digest_column_intact() {
        return Ok(None);
    }
    let mut digest = matched
        .iter()
        .fold(*previous, |digest, event| event.recomputed.link(&digest));
    digest = found.recomputed.link(&digest);
    for record in rest {
        match events.next().await? {
            Some(event) if event.event.event_id == record.event_id => {
                digest = event.recomputed.link(&digest);
            }
            _ => return Ok(None),
        }
    }
    if digest != seal.chain_digest {
        return Ok(None);
    }
    let sequence = seal.first_sequence + index as u64;
    let event = &found.event;
    let detail = if event.position.global_position != record.position.global_position {
        format!(
            "its recorded position (global position {}) was changed; event {} is unchanged at \
             global position {}",
            record.position.global_position, event.event_id, event.position.global_position
        )
    } else {
        format!(
            "its record of event {} at global position {} (stream version, recorded_at or content \
             digest) was changed; the event itself is unchanged",
            event.event_id, event.position.global_position
        )
    };
    Ok(Some(ChainProblem::SealTampered { sequence, detail }))
}

/// A stored event as the verifier checks it: its content as stored, the `content_digest` column
/// beside it, and its record recomputed from the content.
struct CheckedEvent {
    event: RecordedEvent,
    stored_digest: Option<Vec<u8>>,
    recomputed: EventRecord,
}

impl CheckedEvent {
    fn new((event, stored_digest): (RecordedEvent, Option<Vec<u8>>)) -> Self {
        let recomputed = EventRecord::of(&event);
        Self {
            event,
            stored_digest,
            recomputed,
        }
    }

    /// Whether the `content_digest` column still matches the content. NULL is not a mismatch:
    /// events appended before the column existed have none.
    fn digest_column_intact(&self) -> bool {
        self.stored_digest
            .as_deref()
            .is_none_or(|digest| digest == self.recomputed.content_digest)
    }

    /// Whether this is exactly the event `record` sealed, where it was sealed.
    fn matches(&self, record: &EventRecord) -> bool {
        self.recomputed.event_id == record.event_id
            && self.recomputed.position == record.position
            && self.recomputed.same_link(record)
            && self.digest_column_intact()
    }
}

/// The stored events in global read order with their digest column, one page in memory at a time.
struct EventCursor<'a> {
    store: &'a EventStore,
    after: LogPosition,
    page: std::vec::IntoIter<(RecordedEvent, Option<Vec<u8>>)>,
    exhausted: bool,
}

impl<'a> EventCursor<'a> {
    fn new(store: &'a EventStore) -> Self {
        Self {
            store,
            after: LogPosition::START,
            page: Vec::new().into_iter(),
            exhausted: false,
        }
    }

    async fn next(&mut self) -> Result<Option<CheckedEvent>, EventStoreError> {
        loop {
            if let Some(row) = self.page.next() {
                self.after = row.0.position;
                return Ok(Some(CheckedEvent::new(row)));
            }
            if self.exhausted {
                return Ok(None);
            }
            let page = self
                .store
                .read_page_with_digests(self.after, EVENT_PAGE)
                .await?;
            // A short page is the visible end of the log as of that read.
            self.exhausted = page.len() < EVENT_PAGE;
            if page.is_empty() {
                return Ok(None);
            }
            self.page = page.into_iter();
        }
    }
}

/// Seal rows ending at most at `up_to`, in chain order, one page in memory at a time.
struct SealCursor<'a> {
    store: &'a EventStore,
    after: u64,
    up_to: u64,
    page: std::vec::IntoIter<StoredSeal>,
    exhausted: bool,
}

impl<'a> SealCursor<'a> {
    fn new(store: &'a EventStore, up_to: u64) -> Self {
        Self {
            store,
            after: 0,
            up_to,
            page: Vec::new().into_iter(),
            exhausted: up_to == 0,
        }
    }

    async fn next(&mut self) -> Result<Option<StoredSeal>, EventStoreError> {
        loop {
            if let Some(seal) = self.page.next() {
                self.after = seal.last_sequence;
                return Ok(Some(seal));
            }
            if self.exhausted {
                return Ok(None);
            }
            let page = self
                .store
                .load_seals(self.after, self.up_to, SEAL_PAGE)
                .await?;
            self.exhausted = page.len() < SEAL_PAGE;
            if page.is_empty() {
                return Ok(None);
            }
            self.page = page.into_iter();
        }
    }
}
