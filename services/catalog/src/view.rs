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

#[derive(Debug, Default, PartialEq)]
pub struct CatalogView {
    pub updates: BTreeMap<String, UpdateEntry>,
    pub vulnerabilities: HashMap<String, (VulnerabilityState, u64)>,
    known_exploited: HashSet<String>,
    /// Each device's latest required update ids, and how many devices require each update.
    device_requirements: HashMap<String, Vec<String>>,
    required_by: HashMap<String, u32>,
    /// Each update's approval status and the approval stream version that set it.
    approvals: HashMap<String, (i32, u64)>,
    installs: InstallStatistics,
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
    /// An `ApprovalStatus`; `None` means any.
    pub approval_status: Option<i32>,
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
            CatalogEvent::ApprovalObserved(observed) => self.observe_approval(observed),
            CatalogEvent::InstallJobObserved(observed) => self.installs.observe(observed),
            other => {
                let id = match other {
                    CatalogEvent::UpdatePublished(e) => &e.update_id,
                    CatalogEvent::UpdateRevised(e) => &e.update_id,
                    CatalogEvent::UpdateSuperseded(e) => &e.update_id,
                    CatalogEvent::UpdateExpired(e) => &e.update_id,
                    CatalogEvent::VulnerabilityPublished(_)
                    | CatalogEvent::DeviceRequirementsObserved(_)
                    | CatalogEvent::ApprovalObserved(_)
                    | CatalogEvent::InstallJobObserved(_) => return Ok(()),
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

    /// Keeps the newest decision per update: a redelivered older one arrives with a lower version.
    fn observe_approval(&mut self, observed: &pb::ApprovalObserved) {
        let current = self
            .approvals
            .entry(observed.update_id.clone())
            .or_default();
        if observed.approval_version > current.1 {
            *current = (observed.status, observed.approval_version);
        }
    }

    /// The update's `ApprovalStatus`: Undefined unless the approvals service decided otherwise.
    pub fn approval_status(&self, update_id: &str) -> i32 {
        self.approvals
            .get(update_id)
            .map_or(0, |(status, _)| *status)
    }

    /// Devices where `update_id` is installed, pending or failed, by their jobs.
    pub fn install_counts(&self, update_id: &str) -> InstallCounts {
        self.installs.counts(update_id)
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
            approval_status: self.approval_status(update_id),
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
            && filter
                .approval_status
                .is_none_or(|status| status == self.approval_status(update_id))
    }
}

/// Devices where an update is installed, pending or failed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InstallCounts {
    pub installed: u32,
    pub pending: u32,
    pub failed: u32,
}

/// Where one update stands on one device, by its latest jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceInstall {
    Installed,
    Pending,
    Failed,
}

/// What the view knows of one job: its latest step, and once the queued step is seen, what it is for.
#[derive(Debug, Default, PartialEq)]
struct JobFacts {
    target: Option<JobTarget>,
    /// An `InstallJobState`, and the job stream version of the step that set it.
    state: i32,
    version: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct JobTarget {
    device_id: String,
    update_id: String,
    uninstall: bool,
    queued_position: u64,
}

/// The latest install job and the latest uninstall job of one device and update: `(queued position,
/// job id)`.
#[derive(Debug, Default, PartialEq)]
struct DeviceUpdateJobs {
    install: Option<(u64, String)>,
    uninstall: Option<(u64, String)>,
}

/// Per-update installation statistics folded from `InstallJobObserved`. The steps after `queued`
/// name only the job, so the job's target is remembered from its queued step; steps may arrive in
/// any order (a redelivery), and each is placed by its job stream version and queued position, so
/// the counts do not depend on delivery order.
#[derive(Debug, Default, PartialEq)]
struct InstallStatistics {
    jobs: HashMap<String, JobFacts>,
    cells: HashMap<(String, String), DeviceUpdateJobs>,
    counts: HashMap<String, InstallCounts>,
}

impl InstallStatistics {
    fn counts(&self, update_id: &str) -> InstallCounts {
        self.counts.get(update_id).copied().unwrap_or_default()
    }

    fn observe(&mut self, observed: &pb::InstallJobObserved) {
        use pb::{InstallJobKind, InstallJobState};
        let job = self.jobs.entry(observed.job_id.clone()).or_default();
        let queued = observed.state == InstallJobState::Queued as i32;
        let new_target =
            (queued && job.target.is_none() && !observed.update_id.is_empty()).then(|| JobTarget {
                device_id: observed.device_id.clone(),
                update_id: observed.update_id.clone(),
                uninstall: observed.kind == InstallJobKind::Uninstall as i32,
                queued_position: observed.queued_position,
            });
        let Some(target) = job.target.clone().or_else(|| new_target.clone()) else {
            // A step of a job whose queued step has not arrived yet: remembered, counted once it does.
            if observed.job_version > job.version {
                (job.state, job.version) = (observed.state, observed.job_version);
            }
            return;
        };
        let key = (target.device_id.clone(), target.update_id.clone());
        let before = self.classify(&key);

        let job = self.jobs.entry(observed.job_id.clone()).or_default();
        if observed.job_version > job.version {
            (job.state, job.version) = (observed.state, observed.job_version);
        }
        if let Some(target) = new_target {
            job.target = Some(target.clone());
            let cell = self.cells.entry(key.clone()).or_default();
            let latest = if target.uninstall {
                &mut cell.uninstall
            } else {
                &mut cell.install
            };
            if latest
                .as_ref()
                .is_none_or(|(position, _)| target.queued_position > *position)
            {
                *latest = Some((target.queued_position, observed.job_id.clone()));
            }
        }

        let after = self.classify(&key);
        if before != after {
            let counts = self.counts.entry(target.update_id).or_default();
            if let Some(state) = before {
                let count = Self::bucket(counts, state);
                *count = count.saturating_sub(1);
            }
            if let Some(state) = after {
                *Self::bucket(counts, state) += 1;
            }
        }
    }

    fn bucket(counts: &mut InstallCounts, state: DeviceInstall) -> &mut u32 {
        match state {
            DeviceInstall::Installed => &mut counts.installed,
            DeviceInstall::Pending => &mut counts.pending,
            DeviceInstall::Failed => &mut counts.failed,
        }
    }

    /// Installed: the latest install job succeeded (or needs a reboot) and no uninstall queued after
    /// it succeeded. Pending: the latest install job is queued or dispatched. Failed: it failed. A
    /// cancelled latest install job is none of them.
    fn classify(&self, key: &(String, String)) -> Option<DeviceInstall> {
        use pb::InstallJobState as S;
        let cell = self.cells.get(key)?;
        let (installed_at, install_job) = cell.install.as_ref()?;
        let state = |job_id: &str| self.jobs.get(job_id).map_or(0, |job| job.state);
        let uninstalled = cell.uninstall.as_ref().is_some_and(|(position, job_id)| {
            position > installed_at && state(job_id) == S::Succeeded as i32
        });
        match S::try_from(state(install_job)) {
            Ok(S::Succeeded | S::RebootRequired) if !uninstalled => Some(DeviceInstall::Installed),
            Ok(S::Queued | S::Dispatched) => Some(DeviceInstall::Pending),
            Ok(S::Failed) => Some(DeviceInstall::Failed),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use pb::{InstallJobKind as Kind, InstallJobState as State};

    use super::*;

    const UPDATE: &str = "app:tools:1.0:amd64";

    /// Feeds job steps to the statistics as the consumer records them.
    #[derive(Default)]
    struct Jobs {
        stats: InstallStatistics,
        position: u64,
    }

    impl Jobs {
        fn queue(&mut self, job_id: &str, device_id: &str, kind: Kind) {
            self.position += 1;
            self.stats.observe(&pb::InstallJobObserved {
                job_id: job_id.into(),
                device_id: device_id.into(),
                update_id: UPDATE.into(),
                kind: kind as i32,
                state: State::Queued as i32,
                job_version: 1,
                queued_position: self.position,
            });
        }

        fn step(&mut self, job_id: &str, device_id: &str, state: State, job_version: u64) {
            self.stats.observe(&pb::InstallJobObserved {
                job_id: job_id.into(),
                device_id: device_id.into(),
                state: state as i32,
                job_version,
                ..Default::default()
            });
        }

        /// (installed, pending, failed) of `UPDATE`.
        fn counts(&self) -> (u32, u32, u32) {
            let c = self.stats.counts(UPDATE);
            (c.installed, c.pending, c.failed)
        }
    }

    #[test]
    fn an_install_is_pending_until_it_succeeds() {
        let mut jobs = Jobs::default();
        jobs.queue("j1", "d1", Kind::Install);
        assert_eq!(jobs.counts(), (0, 1, 0));
        jobs.step("j1", "d1", State::Dispatched, 2);
        assert_eq!(jobs.counts(), (0, 1, 0));
        jobs.step("j1", "d1", State::Succeeded, 3);
        assert_eq!(jobs.counts(), (1, 0, 0));
        // Another device whose install needs a reboot counts as installed too.
        jobs.queue("j2", "d2", Kind::Install);
        jobs.step("j2", "d2", State::RebootRequired, 2);
        assert_eq!(jobs.counts(), (2, 0, 0));
        assert_eq!(jobs.stats.counts("other"), InstallCounts::default());
    }

    #[test]
    fn a_failure_retried_successfully_counts_as_installed_not_failed() {
        let mut jobs = Jobs::default();
        jobs.queue("j1", "d1", Kind::Install);
        jobs.step("j1", "d1", State::Failed, 2);
        assert_eq!(jobs.counts(), (0, 0, 1));
        jobs.queue("j2", "d1", Kind::Install);
        assert_eq!(jobs.counts(), (0, 1, 0));
        jobs.step("j2", "d1", State::Succeeded, 2);
        assert_eq!(jobs.counts(), (1, 0, 0));
    }

    #[test]
    fn an_uninstall_counts_once_it_succeeds() {
        let mut jobs = Jobs::default();
        jobs.queue("j1", "d1", Kind::Install);
        jobs.step("j1", "d1", State::Succeeded, 2);
        jobs.queue("u1", "d1", Kind::Uninstall);
        jobs.step("u1", "d1", State::Dispatched, 2);
        // Still on the device while the uninstall runs.
        assert_eq!(jobs.counts(), (1, 0, 0));
        jobs.step("u1", "d1", State::Succeeded, 3);
        assert_eq!(jobs.counts(), (0, 0, 0));
        // Installed again after the uninstall.
        jobs.queue("j2", "d1", Kind::Install);
        jobs.step("j2", "d1", State::Succeeded, 2);
        assert_eq!(jobs.counts(), (1, 0, 0));
    }

    #[test]
    fn a_failed_uninstall_leaves_it_installed() {
        let mut jobs = Jobs::default();
        jobs.queue("j1", "d1", Kind::Install);
        jobs.step("j1", "d1", State::Succeeded, 2);
        jobs.queue("u1", "d1", Kind::Uninstall);
        jobs.step("u1", "d1", State::Failed, 2);
        assert_eq!(jobs.counts(), (1, 0, 0));
    }

    #[test]
    fn a_cancelled_job_is_neither_installed_pending_nor_failed() {
        let mut jobs = Jobs::default();
        jobs.queue("j1", "d1", Kind::Install);
        jobs.step("j1", "d1", State::Cancelled, 2);
        assert_eq!(jobs.counts(), (0, 0, 0));
    }

    #[test]
    fn steps_delivered_out_of_order_count_the_same() {
        let mut jobs = Jobs::default();
        // The result before the queued step (a redelivery), and a late dispatch after the result.
        jobs.step("j1", "d1", State::Succeeded, 3);
        assert_eq!(jobs.counts(), (0, 0, 0));
        jobs.queue("j1", "d1", Kind::Install);
        assert_eq!(jobs.counts(), (1, 0, 0));
        jobs.step("j1", "d1", State::Dispatched, 2);
        jobs.step("j1", "d1", State::Succeeded, 3);
        assert_eq!(jobs.counts(), (1, 0, 0));
        // An older job's queued step arriving after a newer job's does not become the latest.
        jobs.stats.observe(&pb::InstallJobObserved {
            job_id: "j0".into(),
            device_id: "d1".into(),
            update_id: UPDATE.into(),
            kind: Kind::Install as i32,
            state: State::Queued as i32,
            job_version: 1,
            queued_position: 0,
        });
        assert_eq!(jobs.counts(), (1, 0, 0));
    }

    #[test]
    fn the_newest_approval_decision_wins_and_filters_the_list() {
        let mut view = CatalogView::default();
        let decide = |view: &mut CatalogView, status: pb::ApprovalStatus, version| {
            view.observe_approval(&pb::ApprovalObserved {
                update_id: UPDATE.into(),
                status: status as i32,
                approval_version: version,
            })
        };
        assert_eq!(view.approval_status(UPDATE), 0);
        decide(&mut view, pb::ApprovalStatus::Approved, 1);
        decide(&mut view, pb::ApprovalStatus::Declined, 2);
        // A redelivered older decision changes nothing.
        decide(&mut view, pb::ApprovalStatus::Approved, 1);
        assert_eq!(
            view.approval_status(UPDATE),
            pb::ApprovalStatus::Declined as i32
        );
        decide(&mut view, pb::ApprovalStatus::Undefined, 3);
        assert_eq!(view.approval_status(UPDATE), 0);

        let entry = UpdateEntry {
            state: UpdateState {
                revision: 1,
                details: Some(pb::UpdateDetails {
                    title: "tools".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            stream_version: 1,
        };
        view.updates.insert(UPDATE.into(), entry.clone());
        view.updates.insert("app:other:1.0:amd64".into(), entry);
        decide(&mut view, pb::ApprovalStatus::Declined, 4);
        let listed = |status: Option<pb::ApprovalStatus>| {
            let filter = UpdateFilter {
                approval_status: status.map(|s| s as i32),
                ..Default::default()
            };
            let (page, _) = view.list(&filter, None, 10);
            page.into_iter()
                .map(|u| (u.update_id, u.approval_status))
                .collect::<Vec<_>>()
        };
        let declined = pb::ApprovalStatus::Declined as i32;
        assert_eq!(
            listed(Some(pb::ApprovalStatus::Declined)),
            [(UPDATE.to_owned(), declined)]
        );
        assert_eq!(
            listed(Some(pb::ApprovalStatus::Undefined)),
            [("app:other:1.0:amd64".to_owned(), 0)]
        );
        assert_eq!(listed(None).len(), 2);
        assert!(listed(Some(pb::ApprovalStatus::Approved)).is_empty());
    }
}
