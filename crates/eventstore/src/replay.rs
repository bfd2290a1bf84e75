//! Pipelined reads of the global order: the next page is fetched while the caller applies this one.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::EventStoreError;
use crate::event::{LogPosition, RecordedEvent};
use crate::store::EventStore;

/// Pages of the global order from a position to the end of what is visible.
///
/// On PostgreSQL a background task reads ahead: while the caller applies one page the server
/// produces the next and the task decodes it, instead of each side waiting for the other. On SQLite
/// the pages are read in the caller's task: sqlx already steps SQLite on a thread of its own while
/// rows are decoded, and a second reader only added contention on two cores (docs/benchmarks.md).
///
/// Pages are `read_all` pages, so every guarantee of `read_all` holds (on PostgreSQL, never an
/// event ahead of a transaction still open; upcasting on read). It ends after the first page that
/// is not full: the end of the log as of that read. Dropping it stops the background task.
#[derive(Debug)]
pub struct Replay {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    ReadAhead {
        pages: mpsc::Receiver<Result<Vec<RecordedEvent>, EventStoreError>>,
        reader: JoinHandle<()>,
    },
    InPlace {
        store: EventStore,
        position: LogPosition,
        page_size: usize,
        done: bool,
    },
}

/// Whether a replay reads ahead in a task of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadAhead {
    /// On PostgreSQL only: on SQLite a second reader only adds contention when applying is cheap.
    PostgresOnly,
    /// On both backends: when applying an event costs about as much as reading it, as rebuilding
    /// a service's read model does, the two overlap on two cores.
    Always,
}

/// Pages read ahead of the caller besides the one the task is reading: one is enough to keep the
/// database busy, more would only hold more memory.
const READ_AHEAD: usize = 1;

impl Replay {
    pub(crate) fn start(
        store: EventStore,
        after: LogPosition,
        page_size: usize,
        read_ahead: ReadAhead,
    ) -> Self {
        let page_size = page_size.max(1);
        if read_ahead == ReadAhead::PostgresOnly && store.backend_name() != "postgres" {
            return Self {
                inner: Inner::InPlace {
                    store,
                    position: after,
                    page_size,
                    done: false,
                },
            };
        }
        let (sender, pages) = mpsc::channel(READ_AHEAD);
        let reader = tokio::spawn(async move {
            let mut position = after;
            loop {
                let page = match store.read_all(position, page_size).await {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                };
                let Some(last) = page.last() else { return };
                position = last.position;
                let full = page.len() >= page_size;
                if sender.send(Ok(page)).await.is_err() || !full {
                    return;
                }
            }
        });
        Self {
            inner: Inner::ReadAhead { pages, reader },
        }
    }

    /// The next page, or `None` once the visible end of the log was reached.
    pub async fn next_page(&mut self) -> Result<Option<Vec<RecordedEvent>>, EventStoreError> {
        match &mut self.inner {
            Inner::ReadAhead { pages, .. } => pages.recv().await.transpose(),
            Inner::InPlace {
                store,
                position,
                page_size,
                done,
            } => {
                if *done {
                    return Ok(None);
                }
                let page = store.read_all(*position, *page_size).await?;
                *done = page.len() < *page_size;
                match page.last() {
                    Some(last) => {
                        *position = last.position;
                        Ok(Some(page))
                    }
                    None => Ok(None),
                }
            }
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Inner::ReadAhead { reader, .. } = &self.inner {
            // The task may be waiting for the database; stop it so it returns its connection now.
            reader.abort();
        }
    }
}
