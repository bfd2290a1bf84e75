//! The scanning read model: devices, their last scan, scan tasks, and the matching index built from
//! the catalog events this service has observed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use patchbay_eventstore::{Projection, RecordedEvent, Snapshottable};
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::scanning::v1 as pb;
use prost::Message as _;

use crate::domain::{DeviceState, ScanTaskState, evolve_device, evolve_task};
use crate::engine::MatchingIndex;
use crate::events::{DecodeError, ScanningEvent};

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceEntry {
    pub state: DeviceState,
    /// Version of the device's stream (registration, inventories); scans have a stream of their own.
    pub stream_version: u64,
    pub last_scan: Option<pb::ScanCompleted>,
    pub last_scanned_at: Option<DateTime<Utc>>,
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
    pub index: MatchingIndex,
    /// Position in the catalog's log of the last catalog event the index applied.
    pub catalog_position: u64,
}

/// Snapshots for `audit state --at` on long logs; raise `FORMAT` when a field changes.
impl Snapshottable for ScanningView {
    const NAME: &'static str = "scanning-view";
    const FORMAT: u32 = 1;
}

impl Projection for ScanningView {
    type Error = DecodeError;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), DecodeError> {
        let decoded =
            ScanningEvent::decode(&event.event_type, event.schema_version, &event.payload)?;
        // Scans are most of a long log: the decoded scan is moved in, not cloned.
        let decoded = match decoded {
            ScanningEvent::ScanCompleted(scan) => {
                let entry = match self.devices.get_mut(&scan.device_id) {
                    Some(entry) => entry,
                    None => self.devices.entry(scan.device_id.clone()).or_default(),
                };
                entry.last_scan = Some(scan);
                entry.last_scanned_at = Some(event.recorded_at);
                return Ok(());
            }
            other => other,
        };
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
                let _ = self
                    .index
                    .upsert(&e.update_id, &e.details.unwrap_or_default());
            }
            "UpdateRevised" => {
                let e = catalog::UpdateRevised::decode(payload)?;
                let _ = self
                    .index
                    .upsert(&e.update_id, &e.details.unwrap_or_default());
            }
            "UpdateSuperseded" => {
                let e = catalog::UpdateSuperseded::decode(payload)?;
                self.index.supersede(&e.update_id, &e.superseded_by);
            }
            "UpdateExpired" => {
                let e = catalog::UpdateExpired::decode(payload)?;
                self.index.expire(&e.update_id);
            }
            "VulnerabilityPublished" => {
                let e = catalog::VulnerabilityPublished::decode(payload)?;
                self.index.set_known_exploited(&e.cve_id, e.known_exploited);
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
            required_count: entry
                .last_scan
                .as_ref()
                .map_or(0, |s| s.required.len() as u32),
            vulnerability_count: entry
                .last_scan
                .as_ref()
                .map_or(0, |s| s.vulnerabilities.len() as u32),
            last_scanned_at: entry
                .last_scanned_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
        }
    }
}
