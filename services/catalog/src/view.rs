//! The catalog's read model: every update and vulnerability, in memory, rebuilt from the log at start
//! and kept current by following it. Commands decide against it and append with the stream version
//! it knows, so a stale view can cause a retry, never a lost update.

use std::collections::{BTreeMap, HashMap, HashSet};

use patchbay_eventstore::{Projection, RecordedEvent};
use patchbay_proto::catalog::v1 as pb;

use crate::domain::{UpdateState, VulnerabilityState, evolve, evolve_vulnerability};
use crate::events::{CatalogEvent, DecodeError};

/// One update as the view holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateEntry {
    pub state: UpdateState,
    /// Version of the update's stream, for optimistic concurrency.
    pub stream_version: u64,
}

#[derive(Debug, Default)]
pub struct CatalogView {
    pub updates: BTreeMap<String, UpdateEntry>,
    pub vulnerabilities: HashMap<String, (VulnerabilityState, u64)>,
    known_exploited: HashSet<String>,
    /// Each device's latest required update ids, and how many devices require each update.
    device_requirements: HashMap<String, Vec<String>>,
    required_by: HashMap<String, u32>,
}

/// Which updates a list shows.
#[derive(Debug, Clone, Default)]
pub struct UpdateFilter {
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub classification: Option<i32>,
    pub min_severity: Option<i32>,
    pub cve_id: Option<String>,
    pub kind: Option<i32>,
    pub known_exploited_only: bool,
    pub include_expired: bool,
    pub min_required_devices: u32,
}

impl Projection for CatalogView {
    type Error = DecodeError;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), DecodeError> {
        let decoded =
            CatalogEvent::decode(&event.event_type, event.schema_version, &event.payload)?;
        match &decoded {
            CatalogEvent::VulnerabilityPublished(record) => {
                let entry = self
                    .vulnerabilities
                    .remove(&record.cve_id)
                    .unwrap_or_default();
                let state = evolve_vulnerability(entry.0, &decoded);
                if record.known_exploited {
                    self.known_exploited.insert(record.cve_id.clone());
                } else {
                    self.known_exploited.remove(&record.cve_id);
                }
                self.vulnerabilities
                    .insert(record.cve_id.clone(), (state, event.stream_version));
            }
            CatalogEvent::DeviceRequirementsObserved(observed) => self.observe_device(observed),
            other => {
                let id = match other {
                    CatalogEvent::UpdatePublished(e) => &e.update_id,
                    CatalogEvent::UpdateRevised(e) => &e.update_id,
                    CatalogEvent::UpdateSuperseded(e) => &e.update_id,
                    CatalogEvent::UpdateExpired(e) => &e.update_id,
                    CatalogEvent::VulnerabilityPublished(_)
                    | CatalogEvent::DeviceRequirementsObserved(_) => return Ok(()),
                };
                let entry = self.updates.entry(id.clone()).or_default();
                entry.state = evolve(std::mem::take(&mut entry.state), other);
                entry.stream_version = event.stream_version;
            }
        }
        Ok(())
    }
}

impl CatalogView {
    /// Replaces a device's required set in the per-update counts.
    fn observe_device(&mut self, observed: &pb::DeviceRequirementsObserved) {
        let previous = self
            .device_requirements
            .insert(
                observed.device_id.clone(),
                observed.required_update_ids.clone(),
            )
            .unwrap_or_default();
        for update in previous {
            if let Some(count) = self.required_by.get_mut(&update) {
                *count = count.saturating_sub(1);
            }
        }
        for update in &observed.required_update_ids {
            *self.required_by.entry(update.clone()).or_default() += 1;
        }
    }

    /// Devices whose latest scan requires `update_id`.
    pub fn required_by(&self, update_id: &str) -> u32 {
        self.required_by.get(update_id).copied().unwrap_or(0)
    }

    /// Devices the catalog has seen a scan of.
    pub fn devices_scanned(&self) -> u32 {
        self.device_requirements.len() as u32
    }

    pub fn is_known_exploited(&self, details: &pb::UpdateDetails) -> bool {
        details
            .cve_ids
            .iter()
            .any(|cve| self.known_exploited.contains(cve))
    }

    pub fn summary(&self, update_id: &str, entry: &UpdateEntry) -> pb::UpdateSummary {
        let details = entry.state.details.clone();
        pb::UpdateSummary {
            update_id: update_id.to_owned(),
            revision: entry.state.revision,
            known_exploited: details.as_ref().is_some_and(|d| self.is_known_exploited(d)),
            details,
            superseded_by: entry.state.superseded_by.clone().unwrap_or_default(),
            expired: entry.state.expired,
            required_by_devices: self.required_by(update_id),
        }
    }

    /// One page of matching updates in id order, after `after` (a previous page's last id), and the
    /// number of matches over all pages.
    pub fn list(
        &self,
        filter: &UpdateFilter,
        after: Option<&str>,
        page_size: usize,
    ) -> (Vec<pb::UpdateSummary>, u64) {
        let mut page = Vec::with_capacity(page_size.min(1000));
        let mut total = 0;
        for (id, entry) in &self.updates {
            let Some(details) = &entry.state.details else {
                continue;
            };
            if !self.matches(filter, id, entry, details) {
                continue;
            }
            total += 1;
            if after.is_some_and(|after| id.as_str() <= after) || page.len() >= page_size {
                continue;
            }
            page.push(self.summary(id, entry));
        }
        (page, total)
    }

    fn matches(
        &self,
        filter: &UpdateFilter,
        update_id: &str,
        entry: &UpdateEntry,
        details: &pb::UpdateDetails,
    ) -> bool {
        let text = |wanted: &Option<String>, actual: &str| {
            wanted
                .as_deref()
                .is_none_or(|w| w.eq_ignore_ascii_case(actual))
        };
        (filter.include_expired || !entry.state.expired)
            && text(&filter.vendor, &details.vendor)
            && text(&filter.product, &details.product)
            && filter
                .classification
                .is_none_or(|c| c == details.classification)
            && filter.min_severity.is_none_or(|s| details.severity >= s)
            && filter.kind.is_none_or(|k| k == details.kind)
            && filter
                .cve_id
                .as_deref()
                .is_none_or(|cve| details.cve_ids.iter().any(|c| c.eq_ignore_ascii_case(cve)))
            && (!filter.known_exploited_only || self.is_known_exploited(details))
            && self.required_by(update_id) >= filter.min_required_devices
    }
}
