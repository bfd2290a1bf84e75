//! Tells other processes' subscribers of a PostgreSQL store that events were appended, off the commit path.
//!
//! A `NOTIFY` in the appending transaction (the old `events_notify` trigger) makes PostgreSQL take a
//! cluster-wide lock at commit and hold it through the WAL flush, which serialises every notifying
//! commit on the server (see docs/benchmarks.md). Instead, appenders signal this task after their
//! commit, and it sends `pg_notify` on a connection of its own: at most one notify in flight and
//! one pending, however many commits signal meanwhile.

use std::sync::Mutex;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The channel subscribers `LISTEN` on.
pub(crate) const CHANNEL: &str = "patchbay_events";

/// Longest pause after failing notifies, so a database that is down is not hammered.
const FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Sends one `NOTIFY` on behalf of any number of commits signalled while it was busy.
#[derive(Debug)]
pub(crate) struct Notifier {
    /// Capacity 1: a full channel means a notify is pending already, which covers this commit too.
    signal: mpsc::Sender<()>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Notifier {
    /// Starts the task; `payload` names this store, so its own listener can skip the echo of
    /// notifies whose subscribers it has already woken in-process.
    pub(crate) fn start(pool: PgPool, payload: String) -> Self {
        let (signal, signals) = mpsc::channel(1);
        let task = tokio::spawn(run(pool, payload, signals));
        Self {
            signal,
            task: Mutex::new(Some(task)),
        }
    }

    /// Asks for a `NOTIFY` after a commit that appended; never waits.
    pub(crate) fn signal(&self) {
        // Full: one is pending and will be sent after this commit. Closed: the pool was closed.
        let _ = self.signal.try_send(());
    }

    /// Waits until the task has closed its connection (it stops when the pool is closed).
    pub(crate) async fn stopped(&self) {
        let task = match self.task.lock() {
            Ok(mut task) => task.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn run(pool: PgPool, payload: String, mut signals: mpsc::Receiver<()>) {
    let mut close = pool.close_event();
    let mut conn: Option<PgConnection> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::select! {
            () = &mut close => break,
            signal = signals.recv() => if signal.is_none() { break },
        }
        let attempt = async {
            // One retry on a fresh connection: the old one may have been dropped by the server.
            if notify(&pool, &mut conn, &payload).await.is_ok() {
                return Ok(());
            }
            conn = None;
            notify(&pool, &mut conn, &payload).await
        };
        // Closing the store must not wait for a server that does not answer.
        let result = tokio::select! {
            () = &mut close => break,
            result = attempt => result,
        };
        match result {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => {
                conn = None;
                tracing::warn!(%error, "cannot notify subscribers in other processes of new events; they poll until it works again");
                tokio::select! {
                    () = &mut close => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(FAILURE_BACKOFF_MAX);
            }
        }
    }
    if let Some(conn) = conn {
        // Bounded: the server may be the reason the store is being closed.
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
    }
}

async fn notify(
    pool: &PgPool,
    conn: &mut Option<PgConnection>,
    payload: &str,
) -> Result<(), sqlx::Error> {
    let conn = match conn {
        Some(conn) => conn,
        None => {
            let mut fresh = PgConnection::connect_with(&pool.connect_options()).await?;
            // A lost notification only costs subscribers a poll interval: not worth waiting for
            // this transaction's commit record to reach the disk.
            sqlx::query("SET synchronous_commit = off")
                .execute(&mut fresh)
                .await?;
            conn.insert(fresh)
        }
    };
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use crate::{EventStore, ExpectedVersion, NewEvent};

    /// A failure guard only: a wake-up normally takes milliseconds.
    const GUARD: Duration = Duration::from_secs(30);

    fn event() -> NewEvent {
        NewEvent::new("Happened", 1, b"x".to_vec())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_stores_on_the_database_are_woken_by_notify_and_the_appending_one_directly() {
        let Some(db) = patchbay_testkit::TestPostgres::create().await else {
            return;
        };
        let writer = EventStore::connect(&db.url).await.unwrap();
        // Another replica or service on the same database, as if in another process.
        let reader = EventStore::connect(&db.url).await.unwrap();
        let triggers: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal",
        )
        .fetch_one(writer.postgres_pool().unwrap())
        .await
        .unwrap();
        assert_eq!(
            triggers, 0,
            "appends must not notify inside their transaction"
        );

        // Only the NOTIFY can wake the reader's receiver: polling does not touch it. Its listener
        // wakes it once when LISTEN is in place, so no notify after that can be missed.
        let mut reader_wake = reader.append_wake_ups();
        let mut writer_wake = writer.append_wake_ups();
        for wake in [&mut reader_wake, &mut writer_wake] {
            tokio::time::timeout(GUARD, wake.changed())
                .await
                .expect("the listener is in place")
                .unwrap();
        }

        writer
            .append("s-1", ExpectedVersion::NoStream, &[event()])
            .await
            .unwrap();
        tokio::time::timeout(GUARD, writer_wake.changed())
            .await
            .expect("the appending store wakes its own subscribers")
            .unwrap();
        tokio::time::timeout(GUARD, reader_wake.changed())
            .await
            .expect("an append notifies other stores")
            .unwrap();

        let mut tx = writer.begin().await.unwrap();
        tx.append("s-2", ExpectedVersion::NoStream, &[event()])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        tokio::time::timeout(GUARD, reader_wake.changed())
            .await
            .expect("a transaction that appended notifies other stores")
            .unwrap();

        let mut subscription = reader.subscribe("reader", 10).await.unwrap();
        let events = tokio::time::timeout(GUARD, subscription.next_batch())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(events.len(), 2);
        writer.close().await;
        reader.close().await;
    }
}
