//! Group commit: concurrent appends to different streams share one store transaction and one commit.

use std::collections::{HashSet, VecDeque};

use patchbay_eventstore::{AppendResult, EventStore, EventStoreError, StreamAppend};
use tokio::sync::{mpsc, oneshot};

/// Most appends written in one transaction. Bounds the transaction's size (a report is ~10 kB) and
/// how long the writer holds SQLite's write lock.
const MAX_BATCH: usize = 256;
/// Appends waiting for the writer before callers wait to enqueue (backpressure).
const QUEUE: usize = 1_024;

/// What the writer tells one caller.
enum Outcome {
    /// The shared transaction committed; this is the caller's own result (its conflict, if any).
    Done(Result<AppendResult, EventStoreError>),
    /// The shared transaction failed as a whole (connection lost, database busy, commit failed):
    /// the caller appends on its own, so it gets its own error. Safe even if the commit did land,
    /// because re-appending the same event ids is an idempotent retry.
    Alone,
}

struct Pending {
    append: StreamAppend,
    reply: oneshot::Sender<Outcome>,
}

/// Hands appends to one background writer that drains whatever is queued and appends it in a single
/// transaction. Cheap to clone; the writer stops once every clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    store: EventStore,
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer on the current tokio runtime.
    pub(crate) fn spawn(store: EventStore) -> Self {
        let (queue, received) = mpsc::channel(QUEUE);
        tokio::spawn(run(store.clone(), received));
        Self { store, queue }
    }

    /// Appends as [`EventStore::append`] would — same optimistic concurrency, idempotency and errors —
    /// but committed together with whatever other appends are waiting.
    pub(crate) async fn append(
        &self,
        append: StreamAppend,
    ) -> Result<AppendResult, EventStoreError> {
        // Kept for appending alone: the writer may fail as a whole, or be gone (runtime shutting down).
        let own = append.clone();
        let (reply, outcome) = oneshot::channel();
        if self.queue.send(Pending { append, reply }).await.is_ok()
            && let Ok(Outcome::Done(result)) = outcome.await
        {
            return result;
        }
        self.store
            .append(&own.stream_id, own.expected, &own.events)
            .await
    }
}

/// The writer: one batch at a time, so while a batch commits the next one gathers in the queue.
async fn run(store: EventStore, mut received: mpsc::Receiver<Pending>) {
    // Appends to a stream already in the batch being gathered wait for the next one: one
    // multi-stream append takes each stream once, and their order per stream is kept.
    let mut deferred: VecDeque<Pending> = VecDeque::new();
    loop {
        let mut batch = Vec::new();
        let mut streams = HashSet::new();
        let mut later = VecDeque::new();
        for pending in deferred.drain(..) {
            gather(pending, &mut batch, &mut streams, &mut later);
        }
        if batch.is_empty() {
            match received.recv().await {
                Some(pending) => gather(pending, &mut batch, &mut streams, &mut later),
                None => return,
            }
        }
        while batch.len() < MAX_BATCH {
            match received.try_recv() {
                Ok(pending) => gather(pending, &mut batch, &mut streams, &mut later),
                Err(_) => break,
            }
        }
        deferred = later;
        write(&store, batch).await;
    }
}

fn gather(
    pending: Pending,
    batch: &mut Vec<Pending>,
    streams: &mut HashSet<String>,
    later: &mut VecDeque<Pending>,
) {
    if batch.len() < MAX_BATCH && streams.insert(pending.append.stream_id.clone()) {
        batch.push(pending);
    } else {
        later.push_back(pending);
    }
}

async fn write(store: &EventStore, batch: Vec<Pending>) {
    let (appends, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.append, pending.reply))
        .unzip();
    match append_together(store, &appends).await {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that went away (its request was cancelled) needs no answer.
                let _ = reply.send(Outcome::Done(result));
            }
        }
        Err(_) => {
            for reply in replies {
                let _ = reply.send(Outcome::Alone);
            }
        }
    }
}

/// Appends every part in one transaction; each part gets its own result. A part that fails on its
/// own (conflict, reused event id, invalid input) leaves the others to commit; any other error
/// fails the whole transaction, which then commits nothing.
async fn append_together(
    store: &EventStore,
    appends: &[StreamAppend],
) -> Result<Vec<Result<AppendResult, EventStoreError>>, EventStoreError> {
    let mut tx = store.begin().await?;
    let results = match tx.append_streams(appends).await {
        Ok(results) => results.into_iter().map(Ok).collect(),
        // All or nothing, so nothing of the batch is written: append part by part, each part all or
        // nothing on its own, so one conflicting report does not fail the others.
        Err(error) if fails_alone(&error) => {
            let mut results = Vec::with_capacity(appends.len());
            for part in appends {
                match tx.append_streams(std::slice::from_ref(part)).await {
                    Ok(mut result) => results.push(result.pop().ok_or_else(|| {
                        EventStoreError::InvalidInput(format!(
                            "the store returned no result for the append to '{}'",
                            part.stream_id
                        ))
                    })),
                    Err(error) if fails_alone(&error) => results.push(Err(error)),
                    Err(error) => return Err(error),
                }
            }
            results
        }
        Err(error) => return Err(error),
    };
    tx.commit().await?;
    Ok(results)
}

/// Errors that concern one part only and leave the transaction usable.
fn fails_alone(error: &EventStoreError) -> bool {
    matches!(
        error,
        EventStoreError::Conflict { .. }
            | EventStoreError::EventIdReused { .. }
            | EventStoreError::InvalidInput(_)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use patchbay_eventstore::{ExpectedVersion, NewEvent};
    use patchbay_testkit::TestSqlite;

    use super::*;

    fn part(stream: &str, expected: ExpectedVersion) -> StreamAppend {
        let event = NewEvent::new("InventoryReported", 1, stream.as_bytes().to_vec());
        StreamAppend::new(stream, expected, vec![event])
    }

    /// Writes `parts` as one batch, as the writer would, and returns what each caller is told.
    async fn write_batch(store: &EventStore, parts: Vec<StreamAppend>) -> Vec<Outcome> {
        let mut answers = Vec::new();
        let mut batch = Vec::new();
        for append in parts {
            let (reply, answer) = oneshot::channel();
            batch.push(Pending { append, reply });
            answers.push(answer);
        }
        write(store, batch).await;
        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await.unwrap());
        }
        outcomes
    }

    async fn store(dir: &TestSqlite) -> EventStore {
        EventStore::connect(&dir.url("group.db")).await.unwrap()
    }

    #[tokio::test]
    async fn a_conflicting_or_invalid_part_fails_alone_and_the_rest_commits_once() {
        let dir = TestSqlite::new();
        let store = store(&dir).await;
        store
            .append(
                "device-b",
                ExpectedVersion::NoStream,
                &[part("device-b", ExpectedVersion::NoStream).events[0].clone()],
            )
            .await
            .unwrap();
        let mut invalid = part("device-d", ExpectedVersion::NoStream);
        invalid.events.clear();
        let outcomes = write_batch(
            &store,
            vec![
                part("device-a", ExpectedVersion::NoStream),
                part("device-b", ExpectedVersion::NoStream),
                part("device-c", ExpectedVersion::Exact(0)),
                invalid,
                part("device-e", ExpectedVersion::Any),
            ],
        )
        .await;
        let results: Vec<_> = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Done(result) => result,
                Outcome::Alone => panic!("the batch failed as a whole"),
            })
            .collect();
        assert!(results[0].as_ref().is_ok_and(|r| r.stream_version == 1));
        assert!(matches!(
            &results[1],
            Err(EventStoreError::Conflict {
                actual: Some(1),
                ..
            })
        ));
        assert!(results[2].as_ref().is_ok_and(|r| r.stream_version == 1));
        assert!(matches!(&results[3], Err(EventStoreError::InvalidInput(_))));
        assert!(results[4].as_ref().is_ok_and(|r| r.stream_version == 1));
        for (stream, events) in [
            ("device-a", 1),
            ("device-b", 1),
            ("device-c", 1),
            ("device-d", 0),
            ("device-e", 1),
        ] {
            let stored = store.read_stream(stream, 1, 10).await.unwrap();
            assert_eq!(stored.len(), events, "{stream}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_each_get_their_own_result_and_retries_are_idempotent() {
        let dir = TestSqlite::new();
        let store = store(&dir).await;
        let group = GroupCommit::spawn(store.clone());
        let parts: Vec<_> = (0..200)
            .map(|n| part(&format!("device-{}", n % 100), ExpectedVersion::Exact(0)))
            .collect();
        let appends: Vec<_> = parts
            .iter()
            .cloned()
            .map(|append| {
                let group = group.clone();
                tokio::spawn(async move { group.append(append).await })
            })
            .collect();
        let mut stored = 0;
        for append in appends {
            match append.await.unwrap() {
                Ok(result) => {
                    assert_eq!(result.stream_version, 1);
                    stored += 1;
                }
                Err(EventStoreError::Conflict { .. }) => {}
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(
            stored, 100,
            "one append per stream wins, the other conflicts"
        );
        // A retry of a stored append (same event ids) is recognised, not stored twice.
        let retried = group.append(parts[0].clone()).await;
        let retried_twin = group.append(parts[100].clone()).await;
        assert!(
            retried.as_ref().is_ok_and(|r| r.deduplicated)
                || retried_twin.as_ref().is_ok_and(|r| r.deduplicated)
        );
        assert_eq!(store.read_stream("device-0", 1, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn when_the_batch_fails_as_a_whole_each_caller_gets_its_own_error() {
        let dir = TestSqlite::new();
        let store = store(&dir).await;
        store.close().await;
        let group = GroupCommit::spawn(store);
        let (a, b) = tokio::join!(
            group.append(part("device-a", ExpectedVersion::NoStream)),
            group.append(part("device-b", ExpectedVersion::NoStream)),
        );
        assert!(matches!(a, Err(EventStoreError::Database(_))), "{a:?}");
        assert!(matches!(b, Err(EventStoreError::Database(_))), "{b:?}");
    }
}
