//! The WSUS sync read model, rebuilt from the service's log: settings, anchors, runs, and the
//! newest stored revision of every upstream update and category.

use std::collections::{BTreeMap, HashMap};

use patchbay_eventstore::{Projection, RecordedEvent};
use patchbay_proto::wsus::v1 as pb;

use crate::domain::{CategoryInfo, RunSummary, UpstreamState, evolve_run};
use crate::events::{CONFIG_STREAM, DecodeError, UPSTREAM_STREAM, WsusEvent};

/// The newest stored revision of one upstream update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownRevision {
    pub revision_number: i32,
    pub update_type: i32,
    pub expired: bool,
    /// Version of the `wsus-update-<id>` stream.
    pub stream_version: u64,
    /// Payload files of the revision, for content download.
    pub files: Vec<pb::WsusFile>,
}

#[derive(Debug, Default, PartialEq)]
pub struct WsusView {
    pub config: Option<pb::WsusConfigured>,
    pub config_version: u64,
    pub upstream: UpstreamState,
    pub upstream_version: u64,
    /// Runs by id; ids are UUIDv7, so the map is in start order.
    pub runs: BTreeMap<String, RunSummary>,
    /// Version of each run's stream, so a writer can wait until the view shows its own append.
    pub run_versions: HashMap<String, u64>,
    pub revisions: HashMap<String, KnownRevision>,
    pub categories: HashMap<String, CategoryInfo>,
    /// Downloaded payloads by SHA-1 (hex).
    pub content: HashMap<String, pb::WsusContentDownloaded>,
    /// Payloads requested for download by SHA-1 (hex), with the update that needs them.
    pub content_requested: BTreeMap<String, (String, pb::WsusFile)>,
    /// Failed attempts per payload SHA-1 (hex), and the last reason.
    pub content_failures: HashMap<String, (u32, String)>,
}

impl WsusView {
    /// Requested payloads not downloaded yet that have failed fewer than `max_failures` times.
    pub fn pending_content(&self, max_failures: u32) -> Vec<(String, pb::WsusFile)> {
        self.content_requested
            .iter()
            .filter(|(sha1, _)| !self.content.contains_key(*sha1))
            .filter(|(sha1, _)| {
                self.content_failures
                    .get(*sha1)
                    .is_none_or(|(n, _)| *n < max_failures)
            })
            .map(|(_, (update_id, file))| (update_id.clone(), file.clone()))
            .collect()
    }

    /// The newest run, if any.
    pub fn last_run(&self) -> Option<&RunSummary> {
        self.runs.values().next_back()
    }

    /// `(updates, expired updates, categories)` known from the upstream.
    pub fn counts(&self) -> (u64, u64, u64) {
        let mut counts = (0, 0, 0);
        for revision in self.revisions.values() {
            if is_update(revision.update_type) {
                counts.0 += 1;
                counts.1 += u64::from(revision.expired);
            } else {
                counts.2 += 1;
            }
        }
        counts
    }
}

/// Software and driver updates, as opposed to categories and detectoids.
pub fn is_update(update_type: i32) -> bool {
    update_type == pb::WsusUpdateType::Software as i32
        || update_type == pb::WsusUpdateType::Driver as i32
}

impl Projection for WsusView {
    type Error = DecodeError;

    fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), Self::Error> {
        let event = WsusEvent::decode(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.payload,
        )?;
        if recorded.stream_id == CONFIG_STREAM {
            self.config_version = recorded.stream_version;
        } else if recorded.stream_id == UPSTREAM_STREAM {
            self.upstream_version = recorded.stream_version;
        }
        match &event {
            WsusEvent::WsusConfigured(configured) => {
                self.config = Some(configured.clone());
                self.upstream = std::mem::take(&mut self.upstream).evolve(&event);
            }
            WsusEvent::WsusConfigAnchorStored(_)
            | WsusEvent::WsusSyncAnchorStored(_)
            | WsusEvent::WsusAnchorsReset(_) => {
                self.upstream = std::mem::take(&mut self.upstream).evolve(&event);
            }
            WsusEvent::WsusSyncStarted(pb::WsusSyncStarted { run_id, .. })
            | WsusEvent::WsusSyncProgressed(pb::WsusSyncProgressed { run_id, .. })
            | WsusEvent::WsusSyncCompleted(pb::WsusSyncCompleted { run_id, .. })
            | WsusEvent::WsusSyncFailed(pb::WsusSyncFailed { run_id, .. }) => {
                let run = self.runs.remove(run_id).unwrap_or_default();
                let run = evolve_run(run, &event, recorded.recorded_at);
                self.runs.insert(run_id.clone(), run);
                self.run_versions
                    .insert(run_id.clone(), recorded.stream_version);
            }
            WsusEvent::WsusUpdateSynced(synced) => {
                if synced.update_type == pb::WsusUpdateType::Category as i32 {
                    let title = synced
                        .texts
                        .first()
                        .map(|t| t.title.clone())
                        .unwrap_or_default();
                    self.categories.insert(
                        synced.update_id.clone(),
                        CategoryInfo {
                            category_type: synced.category_type,
                            title,
                        },
                    );
                }
                self.revisions.insert(
                    synced.update_id.clone(),
                    KnownRevision {
                        revision_number: synced.revision_number,
                        update_type: synced.update_type,
                        expired: synced.expired,
                        stream_version: recorded.stream_version,
                        files: synced.files.clone(),
                    },
                );
            }
            WsusEvent::WsusContentRequested(requested) => {
                for file in &requested.files {
                    self.content_requested.insert(
                        file.sha1.clone(),
                        (requested.update_id.clone(), file.clone()),
                    );
                }
            }
            WsusEvent::WsusContentDownloaded(downloaded) => {
                self.content
                    .insert(downloaded.sha1.clone(), downloaded.clone());
            }
            WsusEvent::WsusContentFailed(failed) => {
                let entry = self
                    .content_failures
                    .entry(failed.sha1.clone())
                    .or_default();
                entry.0 += 1;
                entry.1 = failed.reason.clone();
            }
        }
        Ok(())
    }
}
