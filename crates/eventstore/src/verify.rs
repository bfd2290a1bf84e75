//! Verifying the hash chain: walks the log and its seals together in global read order, read-only.

use uuid::Uuid;

use crate::error::EventStoreError;
use crate::event::{LogPosition, RecordedEvent};
use crate::replay::Replay;
use crate::seal::{ChainHead, StoredSeal, chain_digest};
use crate::store::{Backend, EventStore};
use crate::{postgres, sqlite};

/// Events and seals read per page while verifying: memory stays bounded on any log length.
const PAGE: usize = 10_000;

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
    /// The event is where it was sealed, but its stored content no longer hashes to its seal.
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
    /// A seal row (or the seal head) was edited or deleted while the events it covers are intact.
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
                 was altered after it was sealed as event #{sequence}: its stored content (id, type, \
                 payload, stream, version or metadata) no longer hashes to its seal. Treat this event as untrustworthy and restore \
                 it from a backup taken before the change",
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
                "seal #{sequence} was tampered with: {detail}. The events themselves verify; the \
                 seal tables were written by something other than the sealer"
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
    /// removed, reordered or inserted event, or edited seal. Read-only; streams pages of
    /// 10,000 events and seals, so memory does not grow with the log.
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

    /// Checks seals 1..=`head.sequence` against the events; returns the verified prefix and the
    /// first problem.
    async fn walk_chain(
        &self,
        head: &ChainHead,
    ) -> Result<(ChainHead, Option<ChainProblem>), EventStoreError> {
        let mut seals = SealCursor::new(self, head.sequence);
        let mut events = EventCursor::new(self.replay_stored(LogPosition::START, PAGE));
        let mut verified = ChainHead::GENESIS;
        while let Some(seal) = seals.next().await? {
            let expected_sequence = verified.sequence + 1;
            let event = events.next().await?;
            if seal.sequence != expected_sequence {
                let problem = match event {
                    // The event the missing seal covered is still there: only the seal went.
                    Some(event) if event.event_id != seal.event_id => ChainProblem::SealTampered {
                        sequence: expected_sequence,
                        detail: format!(
                            "it was deleted (the seals jump to #{}), while the event it covered, {} \
                             at global position {}, is still stored",
                            seal.sequence, event.event_id, event.position.global_position
                        ),
                    },
                    _ => ChainProblem::Removed {
                        sequence: expected_sequence,
                        event_id: None,
                        position: None,
                    },
                };
                return Ok((verified, Some(problem)));
            }
            let Some(event) = event else {
                return Ok((verified, Some(self.missing(&seal).await?)));
            };
            if event.event_id != seal.event_id {
                let problem = self.out_of_place(&seal, &event, &verified.digest).await?;
                return Ok((verified, Some(problem)));
            }
            let computed = chain_digest(&verified.digest, &event);
            if event.position != seal.position {
                // The digest covers the global position: if it still matches, the event is where
                // it was hashed and the seal's position was edited instead.
                let problem = if computed == seal.chain_digest
                    && event.position.global_position != seal.position.global_position
                {
                    ChainProblem::SealTampered {
                        sequence: seal.sequence,
                        detail: format!(
                            "its recorded position (global position {}) was changed; event {} is \
                             unchanged at global position {}",
                            seal.position.global_position,
                            event.event_id,
                            event.position.global_position
                        ),
                    }
                } else {
                    ChainProblem::Reordered {
                        sequence: seal.sequence,
                        event_id: event.event_id,
                        sealed_position: seal.position,
                        current_position: event.position,
                    }
                };
                return Ok((verified, Some(problem)));
            }
            if computed == seal.chain_digest {
                verified = ChainHead {
                    sequence: seal.sequence,
                    position: seal.position,
                    digest: seal.chain_digest,
                };
                continue;
            }
            // The link from the previous seal to this one is broken: the event changed, or this
            // seal's digest did. The next link tells which one the rest of the chain agrees with.
            let seal_digest_edited = match (seals.next().await?, events.next().await?) {
                (Some(next_seal), Some(next_event))
                    if next_seal.event_id == next_event.event_id =>
                {
                    chain_digest(&seal.chain_digest, &next_event) != next_seal.chain_digest
                        && chain_digest(&computed, &next_event) == next_seal.chain_digest
                }
                // The last seal: the head holds a copy of its digest.
                (None, _) => head.sequence == seal.sequence && head.digest == computed,
                _ => false,
            };
            let problem = if seal_digest_edited {
                ChainProblem::SealTampered {
                    sequence: seal.sequence,
                    detail: format!(
                        "its chain digest was changed; event {} at global position {} still \
                         hashes to the digest the rest of the chain links to",
                        event.event_id, event.position.global_position
                    ),
                }
            } else {
                ChainProblem::Altered {
                    sequence: seal.sequence,
                    position: event.position,
                    stream_id: event.stream_id,
                    stream_version: event.stream_version,
                    event_id: event.event_id,
                }
            };
            return Ok((verified, Some(problem)));
        }
        Ok((verified, None))
    }

    /// The log ended before the event of `seal`: deleted, or moved beyond what is visible.
    async fn missing(&self, seal: &StoredSeal) -> Result<ChainProblem, EventStoreError> {
        Ok(match self.event_position(seal.event_id).await? {
            None => ChainProblem::Removed {
                sequence: seal.sequence,
                event_id: Some(seal.event_id),
                position: Some(seal.position),
            },
            Some(current_position) => ChainProblem::Reordered {
                sequence: seal.sequence,
                event_id: seal.event_id,
                sealed_position: seal.position,
                current_position,
            },
        })
    }

    /// Where the chain expects the event of `seal`, the log has `found` instead.
    async fn out_of_place(
        &self,
        seal: &StoredSeal,
        found: &RecordedEvent,
        previous_digest: &[u8; 32],
    ) -> Result<ChainProblem, EventStoreError> {
        // `found` is exactly what was hashed into this seal: the seal's event id was edited.
        if chain_digest(previous_digest, found) == seal.chain_digest {
            return Ok(ChainProblem::SealTampered {
                sequence: seal.sequence,
                detail: format!(
                    "its event id was changed to {}; the event it covers, {} at global position {}, \
                     is unchanged",
                    seal.event_id, found.event_id, found.position.global_position
                ),
            });
        }
        match self.event_position(seal.event_id).await? {
            // Positions are never reused, so another id at the sealed position is the sealed event
            // with its id rewritten.
            None if found.position == seal.position => {
                return Ok(ChainProblem::Altered {
                    sequence: seal.sequence,
                    position: found.position,
                    stream_id: found.stream_id.clone(),
                    stream_version: found.stream_version,
                    event_id: found.event_id,
                });
            }
            None => {
                return Ok(ChainProblem::Removed {
                    sequence: seal.sequence,
                    event_id: Some(seal.event_id),
                    position: Some(seal.position),
                });
            }
            Some(current_position) if current_position != seal.position => {
                return Ok(ChainProblem::Reordered {
                    sequence: seal.sequence,
                    event_id: seal.event_id,
                    sealed_position: seal.position,
                    current_position,
                });
            }
            // The sealed event is where it was; `found` was put in front of it.
            Some(_) => {}
        }
        Ok(match self.seal_at(found.position.global_position).await? {
            Some(own_seal) if own_seal.event_id == found.event_id => ChainProblem::Reordered {
                sequence: own_seal.sequence,
                event_id: found.event_id,
                sealed_position: own_seal.position,
                current_position: found.position,
            },
            _ => ChainProblem::Inserted {
                before_sequence: seal.sequence,
                event_id: found.event_id,
                position: found.position,
                stream_id: found.stream_id.clone(),
                stream_version: found.stream_version,
            },
        })
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

    async fn seal_at(&self, global_position: u64) -> Result<Option<StoredSeal>, EventStoreError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                postgres::seal_at(&mut *pool.acquire().await?, global_position).await
            }
            Backend::Sqlite(pool) => {
                sqlite::seal_at(&mut *pool.acquire().await?, global_position).await
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
}

/// The stored events in global read order, one page in memory at a time.
struct EventCursor {
    replay: Replay,
    page: std::vec::IntoIter<RecordedEvent>,
}

impl EventCursor {
    fn new(replay: Replay) -> Self {
        Self {
            replay,
            page: Vec::new().into_iter(),
        }
    }

    async fn next(&mut self) -> Result<Option<RecordedEvent>, EventStoreError> {
        loop {
            if let Some(event) = self.page.next() {
                return Ok(Some(event));
            }
            match self.replay.next_page().await? {
                Some(page) => self.page = page.into_iter(),
                None => return Ok(None),
            }
        }
    }
}

/// Seals 1..=`up_to` in sequence order, one page in memory at a time.
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
                self.after = seal.sequence;
                return Ok(Some(seal));
            }
            if self.exhausted {
                return Ok(None);
            }
            let page = self.store.load_seals(self.after, self.up_to, PAGE).await?;
            self.exhausted = page.len() < PAGE;
            if page.is_empty() {
                return Ok(None);
            }
            self.page = page.into_iter();
        }
    }
}
