//! The records of events a SQLite writer just committed, kept for the sealer so it need not read them back.
//!
//! Every link field of an event (position, stream version, recorded_at, content digest) is known to
//! the writer when it commits: it bound them, or SQLite assigned them consecutively within the
//! insert. Reading them back cost the sealer more CPU than hashing them (an aggregate query, its
//! text parsed), and on two cores every bit of the sealer's CPU came out of append throughput. The
//! feed is only a shortcut: the sealer takes from it a run of consecutive positions that starts
//! right after its head, and reads the table for anything else (events appended through the pool,
//! by another process, or before the feed was wanted). Positions are integers, so a run of
//! consecutive ones leaves no room for an event the feed did not see.

use std::collections::VecDeque;

use crate::seal::EventRecord;

/// Records the feed holds at most (about 80 bytes each); past that the oldest are dropped and the
/// sealer reads those events from the table. Four default seal batches: a sealer that lingers
/// between batches finds its events here even under the fastest appends measured.
pub(crate) const SEAL_FEED_CAPACITY: usize = 4 * crate::seal::DEFAULT_SEAL_BATCH;

#[derive(Debug, Default)]
pub(crate) struct SealFeed {
    /// Only once a sealer has asked: a store nobody seals in this process keeps nothing.
    wanted: bool,
    /// In position order (the writer pushes in commit order, which is position order on SQLite).
    records: VecDeque<EventRecord>,
}

impl SealFeed {
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
        self.wanted = true;
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

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::event::LogPosition;

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
        assert!(feed.take_after(0, 10).is_empty());
        feed.push(committed.iter().copied().map(record));
        feed
    }

    #[test]
    fn keeps_nothing_until_a_sealer_asks() {
        let mut feed = SealFeed::default();
        feed.push([record(1), record(2)]);
        assert!(feed.take_after(0, 10).is_empty());
        feed.push([record(3)]);
        assert_eq!(positions(&feed.take_after(2, 10)), [3]);
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
}
