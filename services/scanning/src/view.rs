//! The scanning read model: devices, their last scan, scan tasks, and the matching index built from
//! the catalog events this service has observed.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use patchbay_eventstore::{Projection, RecordedEvent, Snapshottable};
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::scanning::v1 as pb;
use prost::Message as _;

use crate::domain::{DeviceState, ScanTaskState, evolve_device, evolve_task};
use crate::engine::MatchingIndex;
use crate::events::{DecodeError, ScanningEvent};
use crate::scan_payload::SCAN_COMPLETED;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceEntry {
    pub state: DeviceState,
    /// Version of the device's stream (registration, inventories); scans have a stream of their own.
    pub stream_version: u64,
    pub last_scan: Option<LastScan>,
    pub last_scanned_at: Option<DateTime<Utc>>,
}

/// A device's last scan, kept as the `ScanCompleted` payload it was stored as.
///
/// Scans are most of a long scanning log and a device's newer scan replaces the older, so a replay
/// decoded (and then dropped) tens of strings per scan only to keep the last one: that was most of
/// the cost of rebuilding this view (docs/benchmarks.md, "Time travel"). Applying a scan now reads
/// only the device id and the two counts a device summary shows; whoever needs the scan itself
/// decodes that one payload.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LastScan {
    payload: Vec<u8>,
    pub required_count: u32,
    pub vulnerability_count: u32,
}

impl LastScan {
    /// The scan as it was completed.
    pub fn decode(&self) -> Result<pb::ScanCompleted, DecodeError> {
        pb::ScanCompleted::decode(self.payload.as_slice()).map_err(scan_decode_error)
    }
}

fn scan_decode_error(source: prost::DecodeError) -> DecodeError {
    DecodeError::Payload {
        event_type: SCAN_COMPLETED.to_owned(),
        source,
    }
}

/// An item of a repeated field, skipped: prost still checks its framing but keeps nothing, and a
/// `Vec` of a zero-sized type never allocates, so the `Vec`'s length is the count.
#[derive(Clone, Copy, PartialEq, prost::Message)]
struct Skipped {}

/// The part of a `ScanCompleted` (`proto/patchbay/scanning/v1/events.proto`) a replay keeps
/// decoded; the tags are that message's.
#[derive(Clone, PartialEq, prost::Message)]
struct ScanOutline {
    #[prost(string, tag = "1")]
    device_id: String,
    #[prost(message, repeated, tag = "4")]
    required: Vec<Skipped>,
    #[prost(message, repeated, tag = "5")]
    vulnerabilities: Vec<Skipped>,
}

/// One scan task as the view holds it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskEntry {
    pub state: ScanTaskState,
    /// Version of the task's stream.
    pub version: u64,
    pub last_completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScanningView {
    pub devices: BTreeMap<String, DeviceEntry>,
    pub tasks: BTreeMap<String, TaskEntry>,
    /// Shared with scans in progress, which evaluate outside the view's lock; a catalog event
    /// arriving meanwhile changes a copy (`Arc::make_mut`), so a scan sees one catalog position.
    pub index: Arc<MatchingIndex>,
    /// Position in the catalog's log of the last catalog event the index applied.
    pub catalog_position: u64,
}

/// Snapshots for `audit state --at` on long logs; raise `FORMAT` when a field changes.
impl Snapshottable for ScanningView {
    const NAME: &'static str = "scanning-view";
    // 2: a device's last scan is kept encoded (`LastScan`).
    // 3: the matching index keeps each package name's newest version and each candidate's CVEs.
    // 4: a last scan's payload is `ScanCompleted` v2 (a format-3 snapshot may hold v1 bytes, which
    //    the snapshot does not upcast).
    // 5: a candidate keeps up to three CVE ids itself.
    // 6: the index no longer stores each CVE's sort key (CVE order is derived as ranks).
    const FORMAT: u32 = 6;
}

impl Projection for ScanningView {
    type Error = DecodeError;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), DecodeError> {
        if event.event_type == SCAN_COMPLETED {
            return self.apply_scan(event);
        }
        let decoded =
            ScanningEvent::decode(&event.event_type, event.schema_version, &event.payload)?;
        match &decoded {
            ScanningEvent::DeviceRegistered(pb::DeviceRegistered { device_id, .. })
            | ScanningEvent::InventoryReported(pb::InventoryReported { device_id, .. })
            | ScanningEvent::DeviceGroupsSet(pb::DeviceGroupsSet { device_id, .. }) => {
                let entry = self.devices.entry(device_id.clone()).or_default();
                entry.state = evolve_device(std::mem::take(&mut entry.state), &decoded);
                entry.stream_version = event.stream_version;
            }
            ScanningEvent::ScanCompleted(_) => {}
            ScanningEvent::ScanTaskCreated(pb::ScanTaskCreated { task_id, .. })
            | ScanningEvent::ScanStarted(pb::ScanStarted { task_id, .. })
            | ScanningEvent::ScanTaskPaused(pb::ScanTaskPaused { task_id })
            | ScanningEvent::ScanTaskResumed(pb::ScanTaskResumed { task_id })
            | ScanningEvent::ScanTaskStopped(pb::ScanTaskStopped { task_id, .. })
            | ScanningEvent::ScanTaskCompleted(pb::ScanTaskCompleted { task_id, .. }) => {
                let entry = self.tasks.entry(task_id.clone()).or_default();
                entry.state = evolve_task(std::mem::take(&mut entry.state), &decoded);
                entry.version = event.stream_version;
                if matches!(decoded, ScanningEvent::ScanTaskCompleted(_)) {
                    entry.last_completed_at = Some(event.recorded_at);
                }
            }
            ScanningEvent::CatalogEventObserved(observed) => {
                self.observe_catalog(observed)
                    .map_err(|source| DecodeError::Payload {
                        event_type: observed.event_type.clone(),
                        source,
                    })?;
                self.catalog_position = self.catalog_position.max(observed.catalog_position);
            }
        }
        Ok(())
    }
}

impl ScanningView {
    /// A `ScanCompleted`: only its outline is decoded (see [`LastScan`]). Like every event, it must
    /// be at the schema version this Patchbay writes.
    fn apply_scan(&mut self, event: &RecordedEvent) -> Result<(), DecodeError> {
        let current = crate::events::schema_version(&event.event_type);
        if event.schema_version != current {
            // The full decoder names the problem exactly as for every other event.
            ScanningEvent::decode(&event.event_type, event.schema_version, &event.payload)?;
        }
        let outline = ScanOutline::decode(event.payload.as_slice()).map_err(scan_decode_error)?;
        let scan = LastScan {
            payload: event.payload.clone(),
            required_count: u32::try_from(outline.required.len()).unwrap_or(u32::MAX),
            vulnerability_count: u32::try_from(outline.vulnerabilities.len()).unwrap_or(u32::MAX),
        };
        let entry = match self.devices.get_mut(&outline.device_id) {
            Some(entry) => entry,
            None => self.devices.entry(outline.device_id).or_default(),
        };
        entry.last_scan = Some(scan);
        entry.last_scanned_at = Some(event.recorded_at);
        Ok(())
    }

    /// Feeds one catalog event into the matching index; other catalog event types are ignored.
    fn observe_catalog(
        &mut self,
        observed: &pb::CatalogEventObserved,
    ) -> Result<(), prost::DecodeError> {
        let payload = observed.payload.as_slice();
        match observed.event_type.as_str() {
            "UpdatePublished" => {
                let e = catalog::UpdatePublished::decode(payload)?;
                // An update the engine cannot match (no applicability) is counted in its stats, not an error.
                let _ = Arc::make_mut(&mut self.index)
                    .upsert(&e.update_id, &e.details.unwrap_or_default());
            }
            "UpdateRevised" => {
                let e = catalog::UpdateRevised::decode(payload)?;
                let _ = Arc::make_mut(&mut self.index)
                    .upsert(&e.update_id, &e.details.unwrap_or_default());
            }
            "UpdateSuperseded" => {
                let e = catalog::UpdateSuperseded::decode(payload)?;
                Arc::make_mut(&mut self.index).supersede(&e.update_id, &e.superseded_by);
            }
            "UpdateExpired" => {
                let e = catalog::UpdateExpired::decode(payload)?;
                Arc::make_mut(&mut self.index).expire(&e.update_id);
            }
            "VulnerabilityPublished" => {
                let e = catalog::VulnerabilityPublished::decode(payload)?;
                Arc::make_mut(&mut self.index).set_known_exploited(&e.cve_id, e.known_exploited);
            }
            _ => {}
        }
        Ok(())
    }

    /// Devices a scan over `targets` covers, in id order.
    pub fn targeted(&self, targets: &pb::ScanTargets) -> Vec<String> {
        self.devices
            .iter()
            .filter(|(id, entry)| {
                entry.state.device_id.is_some()
                    && (targets.all_devices
                        || targets.device_ids.contains(id)
                        || entry
                            .state
                            .groups
                            .iter()
                            .any(|g| targets.groups.contains(g)))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn device_summary(&self, id: &str, entry: &DeviceEntry) -> pb::Device {
        let inventory = entry.state.inventory.as_ref();
        pb::Device {
            device_id: id.to_owned(),
            hostname: entry.state.hostname.clone(),
            groups: entry.state.groups.clone(),
            os: inventory.map(|i| i.os.clone()).unwrap_or_default(),
            package_count: inventory.map_or(0, |i| i.packages.len() as u32),
            has_inventory: inventory.is_some(),
            required_count: entry.last_scan.as_ref().map_or(0, |s| s.required_count),
            vulnerability_count: entry
                .last_scan
                .as_ref()
                .map_or(0, |s| s.vulnerability_count),
            last_scanned_at: entry
                .last_scanned_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
        }
    }
}
