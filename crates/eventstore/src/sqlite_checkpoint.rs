//! WAL checkpoints of a SQLite file store on a thread of their own, off the append path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crossed the threshold (1,000 pages):
//! that append copies the WAL into the database file and syncs it, 4 to 6 ms on the reference
//! machine, about every 70 ms under a steady load; appends slower than 2 ms, mostly these, added up
//! to a sixth of append time.
//! The writer connection therefore wakes this thread after its commits; it runs a `PASSIVE`
//! checkpoint, which never blocks appends, at most once per [`CHECKPOINT_INTERVAL`].
//!
//! A checkpoint running beside a writer never finishes (new frames arrive while it copies), and
//! SQLite reuses the WAL from its start only after a checkpoint that finished; alone, this thread
//! would let the WAL grow for as long as appends continue. So the writer keeps SQLite's automatic
//! checkpoint, at a threshold four times the default ([`WRITER_AUTOCHECKPOINT_PAGES`]): by then this
//! thread has copied almost every frame, and the writer's own checkpoint copies the rest, finishes,
//! and lets the next append start the WAL over.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Shortest pause between two checkpoints: about as much WAL as SQLite's default threshold under
/// the fastest appends measured (~60 MB/s), and a bound on how stale the database file gets.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// The writer's own automatic checkpoint threshold, in pages (SQLite's default is 1,000), while
/// this thread runs: a WAL of about 16 MB, unless a reader holds an old snapshot for long.
pub(crate) const WRITER_AUTOCHECKPOINT_PAGES: i64 = 4_000;

/// Wakes the checkpoint thread; dropping it ends the thread after a last checkpoint.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Opens a connection of its own to `path` (in WAL mode already) and starts the thread.
    pub(crate) fn start(path: &Path, synchronous: &str) -> Result<Self, CheckpointerError> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // A checkpoint that meets a writer finishes what it can and returns: no waiting here.
        connection.busy_timeout(Duration::from_millis(100))?;
        // A checkpoint syncs the database file as the writer's own would (under FULL and NORMAL).
        connection.pragma_update(None, "synchronous", synchronous)?;
        let (wake, woken) = sync_channel(1);
        std::thread::Builder::new()
            .name("patchbay-sqlite-checkpoint".to_owned())
            .spawn(move || checkpoint_loop(&connection, &woken))
            .map_err(CheckpointerError::Thread)?;
        Ok(Self { wake })
    }

    /// Asks for a checkpoint soon; never blocks (one pending request stands for any number).
    pub(crate) fn after_commit(&self) {
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

/// Why the checkpoint thread could not start; the writer then keeps SQLite's own checkpoints.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckpointerError {
    #[error("opening its connection: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("starting its thread: {0}")]
    Thread(std::io::Error),
}

fn checkpoint_loop(connection: &Connection, woken: &Receiver<()>) {
    while woken.recv().is_ok() {
        checkpoint(connection);
        std::thread::sleep(CHECKPOINT_INTERVAL);
    }
    // The writer closed: leave as little WAL behind as possible.
    checkpoint(connection);
}

fn checkpoint(connection: &Connection) {
    let outcome = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match outcome {
        Ok((wal_frames, checkpointed)) => {
            tracing::trace!(wal_frames, checkpointed, "checkpointed the SQLite WAL");
        }
        // Busy or locked: another checkpoint is running; the next wake-up tries again.
        Err(error) => tracing::debug!(%error, "a SQLite WAL checkpoint did not run"),
    }
}
