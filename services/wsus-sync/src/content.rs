//! Content download: the payloads of approved updates, fetched lazily (only when approved and only
//! when the settings ask for content), verified against their SHA-1 and SHA-256, and resumed with
//! HTTP ranges after an interruption.

use std::path::{Path, PathBuf};
use std::time::Duration;

use patchbay_bus::{EventHandler, HandlerError, IncomingEvent};
use patchbay_eventstore::{ExpectedVersion, Transaction};
use patchbay_proto::approvals::v1 as approvals;
use patchbay_proto::wsus::v1 as pb;
use prost::Message as _;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use crate::client::http_client;
use crate::events::{SCHEMA_VERSION, WsusEvent, content_request_stream, content_stream};
use crate::service::{WsusSync, WsusSyncError};

/// Durable consumer name.
pub const CONSUMER: &str = "wsus-content";
/// The producing service.
pub const SERVICE: &str = "approvals";
/// The one event type this consumer reads.
pub const EVENT_TYPE: &str = "UpdateApproved";
/// Attempts per payload before the downloader leaves it to an administrator.
pub const MAX_FAILURES: u32 = 3;
/// How often the downloader looks again when nothing wakes it.
const IDLE_TICK: Duration = Duration::from_secs(30);

/// Records a download request for each approved WSUS update with payloads, when the settings ask
/// for content; downloads happen outside the consumer's transaction.
#[derive(Debug, Clone)]
pub struct ContentRequester {
    wsus: WsusSync,
}

impl ContentRequester {
    pub fn new(wsus: WsusSync) -> Self {
        Self { wsus }
    }
}

impl EventHandler for ContentRequester {
    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        if incoming.service != SERVICE || incoming.event.event_type != EVENT_TYPE {
            return Ok(());
        }
        let approved = approvals::UpdateApproved::decode(incoming.event.payload.as_slice())
            .map_err(|e| HandlerError::Permanent(format!("UpdateApproved does not decode: {e}")))?;
        self.wsus
            .catch_up()
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        let requested = {
            let view = self.wsus.view();
            let wanted = view.config.as_ref().is_some_and(|c| c.download_content);
            match view.revisions.get(&approved.update_id) {
                Some(known) if wanted && !known.files.is_empty() => {
                    WsusEvent::WsusContentRequested(pb::WsusContentRequested {
                        update_id: approved.update_id.clone(),
                        revision_number: known.revision_number,
                        files: known.files.clone(),
                    })
                }
                _ => return Ok(()),
            }
        };
        let event = incoming.follow_up(
            requested.event_type(),
            SCHEMA_VERSION,
            requested.encode_payload(),
        );
        tx.append(
            &content_request_stream(&approved.update_id),
            ExpectedVersion::Any,
            &[event],
        )
        .await?;
        Ok(())
    }
}

/// Why one payload could not be downloaded.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("cannot download {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error(
        "{file}: the {algorithm} of the downloaded file is {actual}, the metadata says {expected}; the file was discarded"
    )]
    DigestMismatch {
        file: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{file}: the server sent more than the {size} bytes the metadata gives")]
    TooLarge { file: String, size: u64 },
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What one pass of the downloader did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DownloadPass {
    pub downloaded: u32,
    pub failed: u32,
}

/// Downloads requested payloads into a directory, one file per SHA-1.
#[derive(Debug, Clone)]
pub struct Downloader {
    wsus: WsusSync,
    dir: PathBuf,
    http: reqwest::Client,
}

impl Downloader {
    pub fn new(wsus: WsusSync, dir: PathBuf, timeout: Duration) -> Result<Self, ContentError> {
        let http = http_client(timeout, |builder| builder.read_timeout(timeout)).map_err(|e| {
            ContentError::Http {
                url: String::new(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self { wsus, dir, http })
    }

    /// Where a verified payload is kept.
    pub fn path_of(&self, sha1_hex: &str) -> PathBuf {
        self.dir.join(sha1_hex)
    }

    /// Downloads every requested payload not downloaded yet (and not given up on).
    pub async fn download_pending(&self) -> Result<DownloadPass, WsusSyncError> {
        self.wsus.catch_up().await?;
        let (pending, base_url) = {
            let view = self.wsus.view();
            let base = view
                .config
                .as_ref()
                .map(|c| c.upstream_url.clone())
                .unwrap_or_default();
            (view.pending_content(MAX_FAILURES), base)
        };
        let mut pass = DownloadPass::default();
        for (update_id, file) in pending {
            let event = match self.download(&file, &base_url).await {
                Ok((path, size)) => {
                    pass.downloaded += 1;
                    WsusEvent::WsusContentDownloaded(pb::WsusContentDownloaded {
                        update_id,
                        file_name: file.file_name.clone(),
                        sha1: file.sha1.clone(),
                        sha256: file.sha256.clone(),
                        size,
                        path: path.display().to_string(),
                    })
                }
                Err(error) => {
                    pass.failed += 1;
                    tracing::warn!(file = %file.file_name, %error, "WSUS content download failed");
                    WsusEvent::WsusContentFailed(pb::WsusContentFailed {
                        update_id,
                        file_name: file.file_name.clone(),
                        sha1: file.sha1.clone(),
                        reason: error.to_string(),
                    })
                }
            };
            self.wsus
                .store()
                .append(
                    &content_stream(&file.sha1),
                    ExpectedVersion::Any,
                    &[event.to_new_event("service:wsus-sync")],
                )
                .await?;
        }
        self.wsus.catch_up().await?;
        Ok(pass)
    }

    /// Works through requests as they arrive until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WsusSyncError> {
        let mut changes = self.wsus.changes();
        loop {
            if let Err(error) = self.download_pending().await {
                tracing::warn!(%error, "WSUS content downloads stopped; retrying later");
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = changes.changed() => {}
                () = tokio::time::sleep(IDLE_TICK) => {}
            }
        }
    }

    /// Fetches one payload into `<dir>/<sha1>.part` (continuing a partial one with a Range
    /// request), verifies both digests, then moves it to `<dir>/<sha1>`.
    async fn download(
        &self,
        file: &pb::WsusFile,
        base_url: &str,
    ) -> Result<(PathBuf, u64), ContentError> {
        let done = self.path_of(&file.sha1);
        if tokio::fs::try_exists(&done).await.unwrap_or(false) && verify(&done, file).await.is_ok()
        {
            let size = tokio::fs::metadata(&done).await.map_or(0, |m| m.len());
            return Ok((done, size));
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|source| io_error(&self.dir, source))?;
        let url = if file.url.is_empty() {
            // Spec 2.1: http://<server>/Content/<last two hex digits of the SHA-1>/<file name>.
            let folder = file
                .sha1
                .get(file.sha1.len().saturating_sub(2)..)
                .unwrap_or("00");
            format!(
                "{base_url}Content/{}/{}",
                folder.to_ascii_uppercase(),
                file.file_name
            )
        } else {
            file.url.clone()
        };
        let part = self.dir.join(format!("{}.part", file.sha1));
        let offset = tokio::fs::metadata(&part).await.map_or(0, |m| m.len());
        let mut request = self.http.get(&url);
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let http_error = |e: reqwest::Error| ContentError::Http {
            url: url.clone(),
            reason: e.to_string(),
        };
        let mut response = request.send().await.map_err(http_error)?;
        let status = response.status().as_u16();
        let mut written = match status {
            206 => offset,
            200 => 0,
            // The part already holds the whole file.
            416 if offset > 0 => {
                return finish(&part, &done, file).await;
            }
            _ => return Err(ContentError::Status { url, status }),
        };
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(status == 206)
            .truncate(status == 200)
            .open(&part)
            .await
            .map_err(|source| io_error(&part, source))?;
        while let Some(chunk) = response.chunk().await.map_err(http_error)? {
            written += chunk.len() as u64;
            if file.size > 0 && written > file.size {
                drop(out);
                let _ = tokio::fs::remove_file(&part).await;
                return Err(ContentError::TooLarge {
                    file: file.file_name.clone(),
                    size: file.size,
                });
            }
            out.write_all(&chunk)
                .await
                .map_err(|source| io_error(&part, source))?;
        }
        out.flush()
            .await
            .map_err(|source| io_error(&part, source))?;
        drop(out);
        finish(&part, &done, file).await
    }
}

async fn finish(
    part: &Path,
    done: &Path,
    file: &pb::WsusFile,
) -> Result<(PathBuf, u64), ContentError> {
    if let Err(error) = verify(part, file).await {
        let _ = tokio::fs::remove_file(part).await;
        return Err(error);
    }
    tokio::fs::rename(part, done)
        .await
        .map_err(|source| io_error(done, source))?;
    let size = tokio::fs::metadata(done).await.map_or(0, |m| m.len());
    Ok((done.to_path_buf(), size))
}

/// Checks the file's SHA-1 and (when the metadata has one) SHA-256.
async fn verify(path: &Path, file: &pb::WsusFile) -> Result<(), ContentError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| io_error(path, source))?;
    let checks = [
        ("SHA-1", hex::encode(Sha1::digest(&bytes)), &file.sha1),
        ("SHA-256", hex::encode(Sha256::digest(&bytes)), &file.sha256),
    ];
    for (algorithm, actual, expected) in checks {
        if !expected.is_empty() && !actual.eq_ignore_ascii_case(expected) {
            return Err(ContentError::DigestMismatch {
                file: file.file_name.clone(),
                algorithm,
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}

fn io_error(path: &Path, source: std::io::Error) -> ContentError {
    ContentError::Io {
        path: path.display().to_string(),
        source,
    }
}
