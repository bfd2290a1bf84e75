//! `EventStore`: one API over the PostgreSQL and SQLite backends, and `Transaction` for inbox + append.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::EventStoreError;
use crate::event::{
    AppendResult, ExpectedVersion, LogPosition, NewEvent, RecordedEvent, Snapshot, StreamAppend,
    validate_append, validate_append_streams, validate_stream_id,
};
use crate::notify::{CHANNEL, Notifier};
use crate::replay::{ReadAhead, Replay};
use crate::seal::EventRecord;
use crate::seal_feed::{CommitFeed, join_records};
use crate::sqlite_reader::SqliteReader;
use crate::sqlite_writer::SqliteWriter;
use crate::subscription::Subscription;
use crate::upcast::Upcasters;
use crate::{postgres, sqlite};

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size. SQLite in-memory databases always use one connection.
    pub max_connections: u32,
    /// How long to wait for a pooled connection before failing with a transient error.
    pub acquire_timeout: Duration,
    /// SQLite only: `FULL` survives power loss; `NORMAL` (WAL) survives a process crash and is faster.
    pub sqlite_durability: SqliteDurability,
    /// Upgrades applied to old payloads on every read.
    pub upcasters: Upcasters,
}

/// SQLite `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteDurability {
    Full,
    Normal,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(30),
            sqlite_durability: SqliteDurability::Full,
            upcasters: Upcasters::new(),
        }
    }
}

/// A service's event log. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    upcasters: Upcasters,
    /// Bumped after every commit through this store that appended, and on PostgreSQL on every
    /// NOTIFY from another store on the same database; wakes subscribers.
    appended: Arc<watch::Sender<u64>>,
    listener_running: Arc<AtomicBool>,
    /// Events this process appended through the store (for the metrics endpoint).
    appended_events: AtomicU64,
    /// PostgreSQL: tells other processes' subscribers; started by the first append.
    notifier: OnceLock<Notifier>,
    /// The payload of this store's notifies, so its own listener can tell them from others'.
    notify_id: String,
    /// SQLite files (not `:memory:`): reads of the global order bypass sqlx (see [`SqliteReader`]).
    sqlite_reader: Option<SqliteReader>,
    /// SQLite files: [`EventStore::append`] bypasses sqlx too (see [`SqliteWriter`]).
    sqlite_writer: Option<SqliteWriter>,
    /// PostgreSQL: what this process committed, for its sealer (see [`CommitFeed`]).
    commit_feed: std::sync::Mutex<CommitFeed>,
    /// Events sealed from what this process had just committed, without reading them back.
    sealed_from_feed: AtomicU64,
    /// `sqlite::memory:`: a second connection to the (shared-cache) database that is never used.
    /// The database lives as long as one connection to it is open, and the pool closes its only
    /// connection when an operation on it is cancelled midway; without this, the next one would
    /// open a new, empty database.
    _memory_anchor: Option<std::sync::Mutex<rusqlite::Connection>>,
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl EventStore {
    /// Opens (and migrates) the store at `url`: `postgres://...`, `sqlite://PATH` or `sqlite::memory:`.
    pub async fn connect(url: &str) -> Result<Self, EventStoreError> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Self, EventStoreError> {
        let mut sqlite_reader = None;
        let mut sqlite_writer = None;
        let mut memory_anchor = None;
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect(url)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Backend::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(match options.sqlite_durability {
                    SqliteDurability::Full => SqliteSynchronous::Full,
                    SqliteDurability::Normal => SqliteSynchronous::Normal,
                })
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30));
            if in_memory {
                memory_anchor = Some(std::sync::Mutex::new(open_memory_anchor(
                    connect.get_filename(),
                )?));
            } else {
                let path = connect.get_filename().to_path_buf();
                sqlite_reader = Some(SqliteReader::new(path.clone()));
                sqlite_writer = Some(SqliteWriter::new(path, options.sqlite_durability));
            }
            let pool = SqlitePoolOptions::new()
                // Each connection to `:memory:` would be a separate database.
                .max_connections(if in_memory {
                    1
                } else {
                    options.max_connections
                })
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Backend::Sqlite(pool)
        } else {
            return Err(EventStoreError::UnsupportedUrl(redact(url)));
        };
        let (appended, _) = watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                upcasters: options.upcasters,
                appended: Arc::new(appended),
                listener_running: Arc::new(AtomicBool::new(false)),
                appended_events: AtomicU64::new(0),
                notifier: OnceLock::new(),
                notify_id: Uuid::new_v4().simple().to_string(),
                sqlite_reader,
                sqlite_writer,
                commit_feed: std::sync::Mutex::default(),
                sealed_from_feed: AtomicU64::new(0),
                _memory_anchor: memory_anchor,
            }),
        })
    }

    /// How many events this process has appended through this store (and its clones) since it opened.
    pub fn appended_events(&self) -> u64 {
        self.inner.appended_events.load(Ordering::Relaxed)
    }

    fn count_appended(&self, events: usize) {
        self.inner
            .appended_events
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    /// How many events this process sealed from the records of its own commits instead of reading
    /// them back from the log (see `seal_feed.rs`): for metrics, and to check the shortcut works.
    pub fn sealed_from_feed(&self) -> u64 {
        self.inner.sealed_from_feed.load(Ordering::Relaxed)
    }

    pub(crate) fn count_sealed_from_feed(&self, events: usize) {
        self.inner
            .sealed_from_feed
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Keeps the records of what this process commits for a sealer in this process, as long as the
    /// guard lives, so it need not read them back (see `seal_feed.rs`). [`Sealer::run`] holds one;
    /// a caller that runs [`EventStore::seal`] on its own schedule may too. Without one, appends
    /// keep nothing.
    ///
    /// [`Sealer::run`]: crate::Sealer::run
    pub fn keep_commits_for_sealer(&self) -> SealFeedGuard {
        self.count_feed_holder(true);
        SealFeedGuard {
            store: self.clone(),
        }
    }

    /// One sealer more or fewer wants the records; both backends' feeds follow, under one lock so
    /// that a guard taken and one dropped at once cannot leave them disagreeing.
    fn count_feed_holder(&self, more: bool) {
        let mut feed = self.commit_feed();
        if more {
            feed.hold();
        } else {
            feed.release();
        }
        if let Some(writer) = &self.inner.sqlite_writer {
            writer.set_feed_wanted(feed.wanted());
        }
    }

    /// Whether PostgreSQL appends should return their events' records for this process's sealer.
    fn wants_records(&self) -> bool {
        self.commit_feed().wanted()
    }

    /// Hands the records of one committed PostgreSQL transaction to the sealer; all or nothing.
    fn feed_committed(&self, records: Option<Vec<EventRecord>>) {
        let Some(records) = records.filter(|records| !records.is_empty()) else {
            return;
        };
        let commit_id = records[0].position.commit_id;
        if records.iter().all(|r| r.position.commit_id == commit_id) {
            self.commit_feed().push(commit_id, records);
        }
    }

    pub(crate) fn commit_feed(&self) -> std::sync::MutexGuard<'_, CommitFeed> {
        // The feed is only a shortcut: a panic while it was held leaves it consistent enough
        // (whole transactions or none), and the sealer checks it against the database anyway.
        self.inner
            .commit_feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// The PostgreSQL pool, for a service's own read-model tables in the same database.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.inner.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite(_) => None,
        }
    }

    /// The SQLite pool, for a service's own read-model tables in the same database.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.inner.backend {
            Backend::Sqlite(pool) => Some(pool),
            Backend::Postgres(_) => None,
        }
    }

    /// Appends `events` to `stream_id` atomically, if the stream is at `expected`.
    ///
    /// Re-appending a batch whose event ids are all stored already appends nothing and returns the
    /// original result with `deduplicated: true`.
    pub async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, EventStoreError> {
        validate_append(stream_id, events)?;
        match &self.inner.backend {
            // One statement: atomic on its own, no BEGIN/COMMIT round trips.
            Backend::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                let (result, records) =
                    postgres::append(&mut conn, stream_id, expected, events, self.wants_records())
                        .await?;
                drop(conn);
                if !result.deduplicated {
                    self.feed_committed(records);
                    self.count_appended(events.len());
                    self.notify_appended();
                }
                Ok(result)
            }
            Backend::Sqlite(_) => {
                if let Some(writer) = &self.inner.sqlite_writer {
                    let store = self.clone();
                    let count = events.len();
                    return writer
                        .append(stream_id, expected, events, move || {
                            store.count_appended(count);
                            store.notify_appended();
                        })
                        .await;
                }
                let mut tx = self.begin().await?;
                let result = tx.append(stream_id, expected, events).await?;
                tx.commit().await?;
                Ok(result)
            }
        }
    }

    /// Appends to several streams in one transaction; see [`Transaction::append_streams`].
    pub async fn append_streams(
        &self,
        appends: &[StreamAppend],
    ) -> Result<Vec<AppendResult>, EventStoreError> {
        let mut tx = self.begin().await?;
        let results = tx.append_streams(appends).await?;
        tx.commit().await?;
        Ok(results)
    }

    /// Opens a write transaction: record inbox rows, append, save checkpoints, then commit once.
    pub async fn begin(&self) -> Result<Transaction, EventStoreError> {
        let inner = match &self.inner.backend {
            Backend::Postgres(pool) => TxInner::Postgres(pool.begin().await?),
            // IMMEDIATE takes the write lock now, so the version check and the insert see one state.
            Backend::Sqlite(pool) => TxInner::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        };
        Ok(Transaction {
            inner,
            store: self.clone(),
            appended: false,
            appended_events: 0,
            records: Some(Vec::new()),
        })
    }

    /// The stream's current version, `None` if it has no events.
    pub async fn stream_version(&self, stream_id: &str) -> Result<Option<u64>, EventStoreError> {
        validate_stream_id(stream_id)?;
        match &self.inner.backend {
            Backend::Postgres(pool) => {
                postgres::stream_version(&mut *pool.acquire().await?, stream_id).await
            }
            Backend::Sqlite(pool) => {
                sqlite::stream_version(&mut *pool.acquire().await?, stream_id).await
            }
        }
    }

    /// Up to `limit` events of `stream_id` from `from_version` (1-based) on, upcast.
    pub async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        validate_stream_id(stream_id)?;
        let events = match &self.inner.backend {
            Backend::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                postgres::read_stream(&mut conn, stream_id, from_version, limit).await?
            }
            Backend::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                sqlite::read_stream(&mut conn, stream_id, from_version, limit).await?
            }
        };
        self.upcast(events)
    }

    /// Up to `limit` events after `after` in the service's global order, upcast.
    ///
    /// On PostgreSQL this never returns an event while an earlier-ordered transaction is still open,
    /// so a reader that checkpoints the last position it saw never skips a late commit.
    pub async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        let events = self.read_all_stored(after, limit).await?;
        self.upcast(events)
    }

    /// [`EventStore::read_all`] without upcasting: payloads and schema versions exactly as stored,
    /// which is what the hash chain covers.
    async fn read_all_stored(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, EventStoreError> {
        match &self.inner.backend {
            Backend::Postgres(pool) => postgres::read_all(pool, after, limit).await,
            Backend::Sqlite(pool) => match &self.inner.sqlite_reader {
                Some(reader) => reader.read_all(after, limit).await,
                None => sqlite::read_all(&mut *pool.acquire().await?, after, limit).await,
            },
        }
    }

    /// Reads the global order after `after` to its visible end in pages of `page_size`, fetching the
    /// next page while the caller applies the current one: what a projection rebuild should use.
    /// Each page is what [`EventStore::read_all`] returns; see [`Replay`].
    pub fn replay(&self, after: LogPosition, page_size: usize) -> Replay {
        Replay::start(self.clone(), after, page_size, ReadAhead::PostgresOnly)
    }

    /// [`EventStore::replay`] that reads ahead on SQLite too: for callers whose work per event is
    /// about the cost of reading it (rebuilding the services' read models), so reading and
    /// applying overlap on two cores (docs/benchmarks.md, "Time travel").
    pub fn replay_read_ahead(&self, after: LogPosition, page_size: usize) -> Replay {
        Replay::start(self.clone(), after, page_size, ReadAhead::Always)
    }

    /// How many events are stored after `after` (visible to `read_all` or not yet): a subscriber's lag.
    pub async fn count_after(&self, after: LogPosition) -> Result<u64, EventStoreError> {
        match &self.inner.backend {
            Backend::Postgres(pool) => {
                postgres::count_after(&mut *pool.acquire().await?, after).await
            }
            Backend::Sqlite(pool) => sqlite::count_after(&mut *pool.acquire().await?, after).await,
        }
    }

    /// The saved position of subscription `name`, or the start of the log.
    pub async fn load_checkpoint(&self, name: &str) -> Result<LogPosition, EventStoreError> {
        let saved = match &self.inner.backend {
            Backend::Postgres(pool) => {
                postgres::load_checkpoint(&mut *pool.acquire().await?, name).await?
            }
            Backend::Sqlite(pool) => {
                sqlite::load_checkpoint(&mut *pool.acquire().await?, name).await?
            }
        };
        Ok(saved.unwrap_or(LogPosition::START))
    }

    pub async fn save_checkpoint(
        &self,
        name: &str,
        position: LogPosition,
    ) -> Result<(), EventStoreError> {
        match &self.inner.backend {
            Backend::Postgres(pool) => {
                postgres::save_checkpoint(&mut *pool.acquire().await?, name, position).await
            }
            Backend::Sqlite(pool) => {
                sqlite::save_checkpoint(&mut *pool.acquire().await?, name, position).await
            }
        }
    }

    pub async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), EventStoreError> {
        validate_stream_id(&snapshot.key)?;
        match &self.inner.backend {
            Backend::Postgres(pool) => {
                postgres::save_snapshot(&mut *pool.acquire().await?, snapshot).await
            }
            Backend::Sqlite(pool) => {
                sqlite::save_snapshot(&mut *pool.acquire().await?, snapshot).await
            }
        }
    }

    /// The newest snapshot of `key` taken at a version no greater than `at_most`.
    pub async fn load_snapshot(
        &self,
        key: &str,
        at_most: u64,
    ) -> Result<Option<Snapshot>, EventStoreError> {
        match &self.inner.backend {
            Backend::Postgres(pool) => {
                postgres::load_snapshot(&mut *pool.acquire().await?, key, at_most).await
            }
            Backend::Sqlite(pool) => {
                sqlite::load_snapshot(&mut *pool.acquire().await?, key, at_most).await
            }
        }
    }

    /// A catch-up + live subscription to the global order, resuming from checkpoint `name`.
    pub async fn subscribe(
        &self,
        name: &str,
        batch_size: usize,
    ) -> Result<Subscription, EventStoreError> {
        let position = self.load_checkpoint(name).await?;
        Ok(Subscription::new(
            self.clone(),
            name.to_owned(),
            position,
            batch_size.max(1),
            self.append_wake_ups(),
        ))
    }

    /// A subscription that starts after `position` instead of a saved checkpoint: for in-memory read
    /// models that rebuild from the log and never commit. `name` is still used if it commits.
    pub fn subscribe_at(
        &self,
        name: &str,
        position: LogPosition,
        batch_size: usize,
    ) -> Subscription {
        Subscription::new(
            self.clone(),
            name.to_owned(),
            position,
            batch_size.max(1),
            self.append_wake_ups(),
        )
    }

    /// A receiver marked changed whenever events may have been appended (the same wake-ups
    /// subscriptions use); followers still poll, as a notification can be lost.
    pub(crate) fn append_wake_ups(&self) -> watch::Receiver<u64> {
        // Receiver first: the listener task stops at once when it finds no receiver.
        let wake_ups = self.inner.appended.subscribe();
        self.ensure_listener();
        wake_ups
    }

    /// The rusqlite reader of a SQLite file store (see [`SqliteReader`]).
    pub(crate) fn sqlite_reader(&self) -> Option<&SqliteReader> {
        self.inner.sqlite_reader.as_ref()
    }

    /// The rusqlite writer of a SQLite file store (see [`SqliteWriter`]).
    pub(crate) fn sqlite_writer(&self) -> Option<&SqliteWriter> {
        self.inner.sqlite_writer.as_ref()
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// Closes the pool; later calls fail.
    pub async fn close(&self) {
        match &self.inner.backend {
            Backend::Postgres(pool) => {
                pool.close().await;
                if let Some(notifier) = self.inner.notifier.get() {
                    notifier.stopped().await;
                }
            }
            Backend::Sqlite(pool) => {
                if let Some(reader) = &self.inner.sqlite_reader {
                    reader.close();
                }
                if let Some(writer) = &self.inner.sqlite_writer {
                    writer.close().await;
                }
                pool.close().await;
            }
        }
    }

    fn upcast(&self, events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, EventStoreError> {
        if self.inner.upcasters.is_empty() {
            return Ok(events);
        }
        events
            .into_iter()
            .map(|event| self.inner.upcasters.apply(event))
            .collect()
    }

    /// After a commit that appended: wakes this store's subscribers, and on PostgreSQL has the
    /// notifier tell other stores on the database (other replicas and services, other processes).
    fn notify_appended(&self) {
        self.inner.appended.send_modify(|n| *n = n.wrapping_add(1));
        if let Backend::Postgres(pool) = &self.inner.backend {
            self.inner
                .notifier
                .get_or_init(|| Notifier::start(pool.clone(), self.inner.notify_id.clone()))
                .signal();
        }
    }

    /// On PostgreSQL, starts the task that turns `NOTIFY patchbay_events` from other stores into
    /// subscriber wake-ups. Subscriptions also poll, so a lost listener only adds latency, never
    /// loses events.
    fn ensure_listener(&self) {
        let Backend::Postgres(pool) = &self.inner.backend else {
            return;
        };
        if self.inner.listener_running.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = pool.clone();
        let appended = Arc::clone(&self.inner.appended);
        let running = Arc::clone(&self.inner.listener_running);
        let own_id = self.inner.notify_id.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !appended.is_closed() && !pool.is_closed() {
                match listen(&pool, &appended, &own_id).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, "event notification listener failed; subscribers poll until it reconnects");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            running.store(false, Ordering::SeqCst);
        });
    }
}

/// Forwards notifications from other stores until every subscriber is gone.
async fn listen(
    pool: &PgPool,
    appended: &watch::Sender<u64>,
    own_id: &str,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Events appended before LISTEN took effect were not announced to this listener.
    appended.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        tokio::select! {
            () = appended.closed() => return Ok(()),
            notification = listener.try_recv() => {
                // None: the connection was lost and re-established; events may have been missed, so wake.
                // This store's own notifies: its subscribers were woken at commit already.
                if notification?.is_some_and(|n| n.payload() == own_id) {
                    continue;
                }
                appended.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}

/// Keeps this process's commits' records for its sealer while it lives; see
/// [`EventStore::keep_commits_for_sealer`].
#[derive(Debug)]
#[must_use = "the records are kept only while the guard lives"]
pub struct SealFeedGuard {
    store: EventStore,
}

impl Drop for SealFeedGuard {
    fn drop(&mut self) {
        self.store.count_feed_holder(false);
    }
}

/// A write transaction on a service's store: inbox rows, appends and checkpoints commit together.
#[derive(Debug)]
pub struct Transaction {
    inner: TxInner,
    store: EventStore,
    appended: bool,
    /// Events appended in this transaction, counted when it commits.
    appended_events: usize,
    /// PostgreSQL: the records of every event appended, for the sealer once this commits; None
    /// when some are unknown (see [`CommitFeed`]).
    records: Option<Vec<EventRecord>>,
}

#[derive(Debug)]
enum TxInner {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl Transaction {
    /// Appends within this transaction; see [`EventStore::append`].
    pub async fn append(
        &mut self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, EventStoreError> {
        validate_append(stream_id, events)?;
        let result = match &mut self.inner {
            TxInner::Postgres(tx) => {
                let want_records = self.store.wants_records();
                let (result, records) =
                    postgres::append(tx, stream_id, expected, events, want_records).await?;
                join_records(&mut self.records, records);
                result
            }
            TxInner::Sqlite(tx) => sqlite::append(tx, stream_id, expected, events).await?,
        };
        if !result.deduplicated {
            self.appended = true;
            self.appended_events += events.len();
        }
        Ok(result)
    }

    /// Appends to many streams at once, each at its own expected version: all of them, or (on a
    /// conflict or a reused event id in any stream) none, with the transaction still usable.
    ///
    /// Each stream behaves as [`Transaction::append`] would: a typed conflict naming the stream, and
    /// a part whose event ids are all stored already is an idempotent retry (`deduplicated: true`).
    /// Results come in the order of `appends`. On PostgreSQL every version is claimed and every row
    /// inserted in one statement, which is what makes appending to thousands of streams fast.
    pub async fn append_streams(
        &mut self,
        appends: &[StreamAppend],
    ) -> Result<Vec<AppendResult>, EventStoreError> {
        validate_append_streams(appends)?;
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        let results = match &mut self.inner {
            TxInner::Postgres(tx) => {
                let want_records = self.store.wants_records();
                let (results, records) =
                    postgres::append_streams(tx, appends, want_records).await?;
                join_records(&mut self.records, records);
                results
            }
            TxInner::Sqlite(tx) => sqlite::append_streams(tx, appends).await?,
        };
        for (append, result) in appends.iter().zip(&results) {
            if !result.deduplicated {
                self.appended = true;
                self.appended_events += append.events.len();
            }
        }
        Ok(results)
    }

    /// Records that `consumer` handled `event_id`. Returns false if it already had: the caller must
    /// then skip the event (a duplicate delivery).
    pub async fn record_inbox(
        &mut self,
        consumer: &str,
        event_id: Uuid,
    ) -> Result<bool, EventStoreError> {
        match &mut self.inner {
            TxInner::Postgres(tx) => postgres::record_inbox(tx, consumer, event_id).await,
            TxInner::Sqlite(tx) => sqlite::record_inbox(tx, consumer, event_id).await,
        }
    }

    /// Records many events as handled by `consumer` at once; for each id, in order, true if it is
    /// new (an id already recorded, or repeated earlier in `event_ids`, is false).
    pub async fn record_inbox_many(
        &mut self,
        consumer: &str,
        event_ids: &[Uuid],
    ) -> Result<Vec<bool>, EventStoreError> {
        match &mut self.inner {
            TxInner::Postgres(tx) => postgres::record_inbox_many(tx, consumer, event_ids).await,
            TxInner::Sqlite(tx) => {
                let mut fresh = Vec::with_capacity(event_ids.len());
                for event_id in event_ids {
                    fresh.push(sqlite::record_inbox(tx, consumer, *event_id).await?);
                }
                Ok(fresh)
            }
        }
    }

    /// Saves a subscription checkpoint in this transaction (exactly-once projections).
    pub async fn save_checkpoint(
        &mut self,
        name: &str,
        position: LogPosition,
    ) -> Result<(), EventStoreError> {
        match &mut self.inner {
            TxInner::Postgres(tx) => postgres::save_checkpoint(tx, name, position).await,
            TxInner::Sqlite(tx) => sqlite::save_checkpoint(tx, name, position).await,
        }
    }

    pub async fn stream_version(
        &mut self,
        stream_id: &str,
    ) -> Result<Option<u64>, EventStoreError> {
        match &mut self.inner {
            TxInner::Postgres(tx) => postgres::stream_version(tx, stream_id).await,
            TxInner::Sqlite(tx) => sqlite::stream_version(tx, stream_id).await,
        }
    }

    /// The PostgreSQL connection of this transaction, for read-model writes in the same commit.
    pub fn postgres(&mut self) -> Option<&mut PgConnection> {
        // The sealer cannot know what is written through it, so this commit feeds it nothing.
        self.records = None;
        match &mut self.inner {
            TxInner::Postgres(tx) => Some(tx),
            TxInner::Sqlite(_) => None,
        }
    }

    /// The SQLite connection of this transaction, for read-model writes in the same commit.
    pub fn sqlite(&mut self) -> Option<&mut SqliteConnection> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => Some(tx),
            TxInner::Postgres(_) => None,
        }
    }

    pub async fn commit(self) -> Result<(), EventStoreError> {
        match self.inner {
            TxInner::Postgres(tx) => {
                tx.commit().await?;
                self.store.feed_committed(self.records);
            }
            TxInner::Sqlite(tx) => tx.commit().await?,
        }
        if self.appended {
            self.store.notify_appended();
        }
        self.store.count_appended(self.appended_events);
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), EventStoreError> {
        match self.inner {
            TxInner::Postgres(tx) => tx.rollback().await?,
            TxInner::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

/// Where an event id of a batch is already stored.
#[derive(Debug)]
pub(crate) struct StoredId {
    pub event_id: Uuid,
    pub stream_id: String,
    pub stream_version: u64,
    pub global_position: u64,
}

/// The outcome of an append that inserted nothing: the original result when the whole batch was
/// stored before (an idempotent retry), otherwise a conflict or a reused event id.
pub(crate) fn resolve_unappended(
    stream_id: &str,
    expected: ExpectedVersion,
    actual: Option<u64>,
    events: &[NewEvent],
    stored: Vec<StoredId>,
) -> Result<AppendResult, EventStoreError> {
    if stored.is_empty() {
        return Err(EventStoreError::Conflict {
            stream_id: stream_id.to_owned(),
            expected,
            actual,
        });
    }
    if let Some(elsewhere) = stored.iter().find(|s| s.stream_id != stream_id) {
        return Err(EventStoreError::EventIdReused {
            event_id: elsewhere.event_id,
            detail: format!("in stream '{}'", elsewhere.stream_id),
        });
    }
    if stored.len() != events.len() {
        return Err(EventStoreError::EventIdReused {
            event_id: stored[0].event_id,
            detail: format!(
                "but only {} of the batch's {} events are; the batch differs from the stored one",
                stored.len(),
                events.len()
            ),
        });
    }
    Ok(AppendResult {
        stream_version: stored.iter().map(|s| s.stream_version).max().unwrap_or(0),
        global_position: stored.iter().map(|s| s.global_position).max().unwrap_or(0),
        deduplicated: true,
    })
}

/// Converts a stored integer that must not be negative.
pub(crate) fn to_u64(value: i64, global_position: u64) -> Result<u64, EventStoreError> {
    u64::try_from(value).map_err(|_| EventStoreError::Corrupt {
        global_position,
        reason: format!("negative value {value} where a count or position is stored"),
    })
}

/// Opens `filename` (sqlx's name for an in-memory database, `file:sqlx-in-memory-N`) as sqlx
/// does: a shared-cache in-memory database, so both connections see the same one.
fn open_memory_anchor(filename: &std::path::Path) -> Result<rusqlite::Connection, EventStoreError> {
    use rusqlite::OpenFlags;
    rusqlite::Connection::open_with_flags(
        filename,
        OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_MEMORY
            | OpenFlags::SQLITE_OPEN_SHARED_CACHE
            | OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| EventStoreError::sqlite("opening the in-memory database", &error))
}

/// A URL for error messages, without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}
