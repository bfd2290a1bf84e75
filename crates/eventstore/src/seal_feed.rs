//! The records of events this process just committed, kept for the sealer so it need not read them back.
//!
//! Every link field of an event (position, stream version, recorded_at, content digest) is known to
//! the writer when it commits: it bound them, or SQLite assigned them consecutively within the
//! insert. Reading them back cost the sealer more CPU than hashing them (an aggregate query, its
//! text parsed), and on two cores every bit of the sealer's CPU came out of append throughput. The
//! feed is only a shortcut: the sealer takes from it a run of consecutive positions that starts
//! right after its head, and reads the table for anything else (events appended through the pool,
//! by another process, or before the feed was wanted). Positions are integers, so a run of
//! consecutive ones leaves no room for an event the feed did not see.
//!
//! On PostgreSQL ([`CommitFeed`]) the chain's order is commit id first, and ids are handed out as
//! transactions start, so consecutive positions prove nothing. There the feed holds whole committed
//! transactions by commit id, and the sealer asks the database only about the commit ids between its
//! head and the visibility horizon that the feed did not see (one index probe each, mostly its own
//! seal transactions): if none of them holds an event, the feed's transactions are exactly what the
//! chain continues with.

use std::collections::{BTreeMap, VecDeque};

use crate::event::LogPosition;
use crate::seal::EventRecord;

/// Records the feed holds at most (about 80 bytes each); past that the oldest are dropped and the
/// sealer reads those events from the table. Four default seal batches: a sealer that lingers
/// between batches finds its events here even under the fastest appends measured.
pub(crate) const SEAL_FEED_CAPACITY: usize = 4 * crate::seal::DEFAULT_SEAL_BATCH;

#[derive(Debug, Default)]
pub(crate) struct SealFeed {
    /// Only while a sealer runs in this process: otherwise appends keep nothing.
    wanted: bool,
    /// In position order (the writer pushes in commit order, which is position order on SQLite).
    records: VecDeque<EventRecord>,
}

impl SealFeed {
    /// Starts or stops keeping records (stopping forgets what it held).
    pub(crate) fn set_wanted(&mut self, wanted: bool) {
        self.wanted = wanted;
        if !wanted {
            self.records = VecDeque::new();
        }
    }

    /// Adds the records of one commit, in position order.
    pub(crate) fn push(&mut self, committed: impl IntoIterator<Item = EventRecord>) {
        if !self.wanted {
            return;
        }
        for record in committed {
            if self.records.len() == SEAL_FEED_CAPACITY {
                self.records.pop_front();
            }
            self.records.push_back(record);
        }
    }

    /// Up to `limit` records of consecutive positions starting right after `after`, removed from
    /// the feed; empty when the feed does not hold the next position (the caller reads the table).
    pub(crate) fn take_after(&mut self, after: u64, limit: usize) -> Vec<EventRecord> {
        while self
            .records
            .front()
            .is_some_and(|record| record.position.global_position <= after)
        {
            self.records.pop_front();
        }
        let mut run = Vec::new();
        let mut next = after + 1;
        while run.len() < limit {
            match self.records.front() {
                Some(record) if record.position.global_position == next => {
                    next += 1;
                    run.extend(self.records.pop_front());
                }
                _ => break,
            }
        }
        run
    }
}

/// Commit ids a [`CommitFeed`] asks the database about at most per seal; past that (a sealer far
/// behind, or a database shared with busy neighbours) the sealer reads the table instead.
pub(crate) const MAX_UNFED_COMMITS: u64 = 1_024;

/// The transactions this process committed on PostgreSQL, whole, by commit id (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct CommitFeed {
    /// Sealers running in this process (see [`crate::SealFeedGuard`]): with none, appends keep
    /// nothing and return no records.
    holders: usize,
    /// Each committed transaction's records, in position order.
    commits: BTreeMap<u64, Vec<EventRecord>>,
    /// Records held, over all transactions.
    len: usize,
}

/// What the sealer may take from a [`CommitFeed`], once the database confirms that the commit ids
/// the feed did not see appended nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FeedCandidates {
    /// The next events of the chain, in chain order.
    pub records: Vec<EventRecord>,
    /// Commit ids after the head's and below the horizon that the feed holds nothing of.
    pub unfed_commits: Vec<u64>,
    /// The head's own transaction is not in the feed, so it may hold events after the head.
    pub probe_head_commit: bool,
}

impl CommitFeed {
    /// Whether appenders should collect their records (a sealer runs).
    pub(crate) fn wanted(&self) -> bool {
        self.holders > 0
    }

    /// One more sealer wants the records.
    pub(crate) fn hold(&mut self) {
        self.holders += 1;
    }

    /// One sealer fewer; returns whether any still wants the records (else they are forgotten).
    pub(crate) fn release(&mut self) -> bool {
        self.holders = self.holders.saturating_sub(1);
        if self.holders == 0 {
            self.commits = BTreeMap::new();
            self.len = 0;
        }
        self.wanted()
    }

    /// Adds the records of one committed transaction.
    pub(crate) fn push(&mut self, commit_id: u64, mut records: Vec<EventRecord>) {
        if !self.wanted() || records.is_empty() {
            return;
        }
        records.sort_by_key(|record| record.position.global_position);
        self.len += records.len();
        match self.commits.entry(commit_id) {
            std::collections::btree_map::Entry::Occupied(held) => {
                // Two pushes for one commit id cannot both be whole; keep neither.
                self.len -= held.get().len() + records.len();
                held.remove();
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(records);
            }
        }
        // Whole transactions, oldest first: a transaction the feed dropped is read from the table.
        while self.len > SEAL_FEED_CAPACITY {
            match self.commits.pop_first() {
                Some((_, dropped)) => self.len -= dropped.len(),
                None => break,
            }
        }
    }

    /// The events after `head` of the transactions committed below `horizon`, up to about
    /// `limit` (whole transactions while they fit), if the feed can know them. Forgets what `head`
    /// already passed.
    ///
    /// Looks no further than the newest transaction it holds: a commit id past it is most often
    /// one of this process's appends that committed a moment ago and is not pushed yet, which a
    /// probe would find and send the sealer to the table for nothing. None (read the table) when
    /// the feed holds nothing to seal, or too many commit ids in between are unknown to it.
    pub(crate) fn candidates(
        &mut self,
        head: LogPosition,
        horizon: u64,
        limit: usize,
    ) -> Option<FeedCandidates> {
        self.forget_through(head);
        let newest_fed = self.commits.last_key_value().map(|(id, _)| *id)?;
        let horizon = horizon.min(newest_fed.saturating_add(1));
        let candidates = self.candidates_below(head, horizon, limit)?;
        (!candidates.records.is_empty()).then_some(candidates)
    }

    fn candidates_below(
        &self,
        head: LogPosition,
        horizon: u64,
        limit: usize,
    ) -> Option<FeedCandidates> {
        let first_unknown = head.commit_id.saturating_add(1);
        if horizon <= first_unknown {
            // Nothing after the head's transaction is visible yet (or the head is at START on an
            // empty log); only the head's own transaction may go on.
            return Some(self.head_commit_only(head, horizon));
        }
        let fed_between = self.commits.range(first_unknown..horizon).count() as u64;
        let unfed = (horizon - first_unknown).saturating_sub(fed_between);
        if unfed > MAX_UNFED_COMMITS {
            return None;
        }
        let unfed_commits: Vec<u64> = (first_unknown..horizon)
            .filter(|id| !self.commits.contains_key(id))
            .collect();
        let mut candidates = self.head_commit_only(head, horizon);
        candidates.unfed_commits = unfed_commits;
        for records in self.commits.range(first_unknown..horizon).map(|(_, r)| r) {
            if !candidates.records.is_empty() && candidates.records.len() + records.len() > limit {
                break;
            }
            candidates.records.extend_from_slice(records);
        }
        // A transaction larger than `limit` is sealed in parts; the feed keeps its rest.
        candidates.records.truncate(limit.max(1));
        Some(candidates)
    }

    /// The head transaction's remaining records when the feed holds it, else a probe for it.
    fn head_commit_only(&self, head: LogPosition, horizon: u64) -> FeedCandidates {
        let held = self.commits.get(&head.commit_id);
        FeedCandidates {
            records: match held {
                Some(records) if head.commit_id < horizon => records.clone(),
                _ => Vec::new(),
            },
            unfed_commits: Vec::new(),
            // At START (commit id 0) there is no head transaction to look into.
            probe_head_commit: held.is_none() && head.commit_id > 0,
        }
    }

    /// Drops every record at or before `head` in chain order.
    fn forget_through(&mut self, head: LogPosition) {
        while let Some(entry) = self.commits.first_entry() {
            if *entry.key() > head.commit_id {
                break;
            }
            if *entry.key() < head.commit_id {
                self.len -= entry.remove().len();
                continue;
            }
            let records = entry.into_mut();
            let before = records.len();
            records.retain(|record| record.position.global_position > head.global_position);
            self.len -= before - records.len();
            if records.is_empty() {
                self.commits.remove(&head.commit_id);
            }
            break;
        }
    }
}

/// Adds `part` to the records of one transaction; unknown (None) if either is.
pub(crate) fn join_records(all: &mut Option<Vec<EventRecord>>, part: Option<Vec<EventRecord>>) {
    *all = all.take().zip(part).map(|(mut all, part)| {
        all.extend(part);
        all
    });
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn record(position: u64) -> EventRecord {
        EventRecord {
            position: LogPosition {
                commit_id: 0,
                global_position: position,
            },
            event_id: Uuid::nil(),
            stream_version: position,
            recorded_at_micros: 0,
            content_digest: [0; 32],
        }
    }

    fn positions(records: &[EventRecord]) -> Vec<u64> {
        records.iter().map(|r| r.position.global_position).collect()
    }

    fn wanted_feed(committed: &[u64]) -> SealFeed {
        let mut feed = SealFeed::default();
        feed.set_wanted(true);
        feed.push(committed.iter().copied().map(record));
        feed
    }

    #[test]
    fn keeps_nothing_unless_a_sealer_runs() {
        let mut feed = SealFeed::default();
        feed.push([record(1), record(2)]);
        assert!(feed.take_after(0, 10).is_empty());
        feed.set_wanted(true);
        feed.push([record(3)]);
        assert_eq!(positions(&feed.take_after(2, 10)), [3]);
        feed.push([record(4)]);
        feed.set_wanted(false);
        assert!(feed.take_after(3, 10).is_empty());
    }

    #[test]
    fn gives_the_run_right_after_the_head_up_to_the_limit() {
        let mut feed = wanted_feed(&[5, 6, 7, 8]);
        assert_eq!(positions(&feed.take_after(4, 3)), [5, 6, 7]);
        assert_eq!(positions(&feed.take_after(7, 3)), [8]);
    }

    #[test]
    fn stops_at_a_gap_an_event_appended_elsewhere_left() {
        let mut feed = wanted_feed(&[5, 6, 8, 9]);
        assert_eq!(positions(&feed.take_after(4, 10)), [5, 6]);
        // Position 7 came from another writer: the sealer must read the table.
        assert!(feed.take_after(6, 10).is_empty());
        // Once it sealed 7 from the table, the feed serves the rest.
        assert_eq!(positions(&feed.take_after(7, 10)), [8, 9]);
    }

    #[test]
    fn gives_nothing_when_the_head_is_behind_the_feed() {
        let mut feed = wanted_feed(&[10, 11]);
        assert!(feed.take_after(3, 10).is_empty());
        assert_eq!(positions(&feed.take_after(9, 10)), [10, 11]);
    }

    #[test]
    fn drops_what_the_head_already_passed() {
        let mut feed = wanted_feed(&[1, 2, 3, 4]);
        assert_eq!(positions(&feed.take_after(3, 10)), [4]);
    }

    #[test]
    fn drops_the_oldest_past_its_capacity() {
        let mut feed = wanted_feed(&[]);
        let total = SEAL_FEED_CAPACITY as u64 + 5;
        feed.push((1..=total).map(record));
        assert!(feed.take_after(0, 10).is_empty());
        assert_eq!(positions(&feed.take_after(5, 2)), [6, 7]);
    }

    fn committed(commit_id: u64, positions: &[u64]) -> Vec<EventRecord> {
        positions
            .iter()
            .map(|&position| EventRecord {
                position: LogPosition {
                    commit_id,
                    global_position: position,
                },
                ..record(position)
            })
            .collect()
    }

    fn at(commit_id: u64, global_position: u64) -> LogPosition {
        LogPosition {
            commit_id,
            global_position,
        }
    }

    fn wanted_commit_feed() -> CommitFeed {
        let mut feed = CommitFeed::default();
        feed.hold();
        // Nothing to seal from: the sealer reads the table.
        assert_eq!(feed.candidates(LogPosition::START, 1, 10), None);
        feed
    }

    #[test]
    fn commit_feed_keeps_nothing_unless_a_sealer_runs() {
        let mut feed = CommitFeed::default();
        feed.push(10, committed(10, &[1, 2]));
        assert!(!feed.wanted());
        assert_eq!(feed.candidates(at(9, 0), 11, 10), None);
        // Two sealers; the feed keeps records until the last one stops.
        feed.hold();
        feed.hold();
        feed.push(11, committed(11, &[3]));
        assert!(feed.release());
        assert_eq!(feed.len, 1);
        assert!(!feed.release());
        assert_eq!(feed.len, 0);
        feed.push(12, committed(12, &[4]));
        assert_eq!(feed.len, 0);
    }

    #[test]
    fn commit_feed_gives_transactions_below_the_horizon_in_commit_order() {
        let mut feed = wanted_commit_feed();
        // Commit 12 took its positions before commit 11 did: commit order wins.
        feed.push(12, committed(12, &[3, 4]));
        feed.push(11, committed(11, &[6, 5]));
        feed.push(14, committed(14, &[7]));
        let candidates = feed.candidates(at(10, 2), 14, 100).unwrap();
        assert_eq!(positions(&candidates.records), [5, 6, 3, 4]);
        // 13 (perhaps the sealer's own transaction) is asked about; 14 is not visible yet.
        assert_eq!(candidates.unfed_commits, [13]);
        // The head's transaction 10 is not in the feed: it may hold more events.
        assert!(candidates.probe_head_commit);
    }

    #[test]
    fn commit_feed_continues_a_transaction_sealed_in_parts() {
        let mut feed = wanted_commit_feed();
        feed.push(20, committed(20, &[1, 2, 3, 4, 5]));
        feed.push(21, committed(21, &[6]));
        let first = feed.candidates(at(19, 0), 22, 3).unwrap();
        assert_eq!(positions(&first.records), [1, 2, 3]);
        let rest = feed.candidates(at(20, 3), 22, 3).unwrap();
        assert_eq!(positions(&rest.records), [4, 5, 6]);
        assert!(!rest.probe_head_commit);
        assert!(rest.unfed_commits.is_empty());
    }

    #[test]
    fn commit_feed_looks_no_further_than_its_newest_transaction() {
        let mut feed = wanted_commit_feed();
        feed.push(5, committed(5, &[10]));
        // 6 .. 99 committed too, but the feed has not seen them (yet): the next seal asks.
        let candidates = feed.candidates(at(3, 9), 100, 10).unwrap();
        assert_eq!(positions(&candidates.records), [10]);
        assert_eq!(candidates.unfed_commits, [4]);
    }

    #[test]
    fn commit_feed_takes_whole_transactions_while_they_fit() {
        let mut feed = wanted_commit_feed();
        feed.push(30, committed(30, &[1, 2]));
        feed.push(31, committed(31, &[3, 4, 5]));
        let candidates = feed.candidates(at(29, 0), 32, 4).unwrap();
        assert_eq!(positions(&candidates.records), [1, 2]);
    }

    #[test]
    fn commit_feed_forgets_what_the_head_passed() {
        let mut feed = wanted_commit_feed();
        feed.push(40, committed(40, &[1, 2]));
        feed.push(41, committed(41, &[3]));
        // Another sealer (or a read of the table) got to 41 first.
        assert_eq!(feed.candidates(at(41, 3), 42, 10), None);
        assert_eq!(feed.len, 0);
    }

    #[test]
    fn commit_feed_gives_up_when_too_many_commits_are_unknown() {
        let mut feed = wanted_commit_feed();
        let far = 2 + MAX_UNFED_COMMITS + 10;
        feed.push(far, committed(far, &[1]));
        assert!(feed.candidates(at(1, 0), far + 1, 10).is_none());
    }

    #[test]
    fn commit_feed_keeps_neither_of_two_pushes_for_one_commit() {
        let mut feed = wanted_commit_feed();
        feed.push(60, committed(60, &[1]));
        feed.push(60, committed(60, &[2]));
        assert_eq!(feed.len, 0);
        assert_eq!(feed.candidates(at(59, 0), 61, 10), None);
    }

    #[test]
    fn commit_feed_drops_whole_transactions_past_its_capacity() {
        let mut feed = wanted_commit_feed();
        let size = SEAL_FEED_CAPACITY as u64 / 2;
        feed.push(70, committed(70, &(1..=size).collect::<Vec<_>>()));
        feed.push(
            71,
            committed(71, &(size + 1..=2 * size).collect::<Vec<_>>()),
        );
        feed.push(72, committed(72, &[2 * size + 1]));
        let candidates = feed.candidates(at(69, 0), 73, usize::MAX).unwrap();
        assert_eq!(candidates.unfed_commits, [70]);
        assert_eq!(candidates.records.len() as u64, size + 1);
        assert_eq!(feed.len as u64, size + 1);
    }
}
