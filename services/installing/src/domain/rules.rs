//! Whether an install task covers a device and allows an update on it: approval status, severity,
//! classification, vendor and product, EULA, and the server version the update needs.

use patchbay_proto::approvals::v1::ApprovalStatus;
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::installing::v1 as pb;

use super::state::{DeviceFacts, EulaDecision, InstallingState, UpdateFacts};

/// Attempts per device and update when a task does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// What a task's rules say about one update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Install,
    /// Not yet: it may become installable (its EULA accepted, its catalog details arriving).
    Wait(&'static str),
    /// The rules do not allow it.
    Refuse(&'static str),
}

/// Whether the task's targets include the device.
pub fn covers(task: &pb::InstallTaskCreated, device_id: &str, device: &DeviceFacts) -> bool {
    let Some(targets) = &task.targets else {
        return false;
    };
    targets.all_devices
        || targets.device_ids.iter().any(|d| d == device_id)
        || targets
            .groups
            .iter()
            .any(|group| device.groups.iter().any(|g| g == group))
}

pub fn max_attempts(task: &pb::InstallTaskCreated) -> u32 {
    match task.rules.as_ref().map_or(0, |rules| rules.max_attempts) {
        0 => DEFAULT_MAX_ATTEMPTS,
        n => n,
    }
}

/// Whether `update_id` needs a newer Patchbay server than `server`; an unreadable minimum counts as
/// newer, so that no install is ever produced for it.
pub fn needs_newer_server(update: &UpdateFacts, server: &semver::Version) -> bool {
    let wanted = update.details.min_server_version.trim();
    if wanted.is_empty() {
        return false;
    }
    semver::Version::parse(wanted).map_or(true, |wanted| wanted > *server)
}

/// What `task` says about installing `update_id`, given everything the service knows.
pub fn verdict(
    task: &pb::InstallTaskCreated,
    update_id: &str,
    state: &InstallingState,
    server: &semver::Version,
) -> Verdict {
    let Some(update) = state.updates.get(update_id) else {
        return Verdict::Wait("the catalog's details of the update have not arrived yet");
    };
    if update.expired {
        return Verdict::Refuse("the update expired");
    }
    if needs_newer_server(update, server) {
        return Verdict::Refuse("the update needs a newer Patchbay server");
    }
    let approval = state
        .approvals
        .get(update_id)
        .copied()
        .unwrap_or(ApprovalStatus::Undefined);
    let rules = task.rules.clone().unwrap_or_default();
    let kind = pb::TaskKind::try_from(task.kind).unwrap_or(pb::TaskKind::Unspecified);
    if kind == pb::TaskKind::InstallWindowsUpdates {
        // The list was fixed at creation; only a decline overrides it.
        if !task.update_ids.iter().any(|id| id == update_id) {
            return Verdict::Refuse("not in the task's list of updates");
        }
        if approval == ApprovalStatus::Declined {
            return Verdict::Refuse("the update is declined");
        }
        return eula_verdict(update, state, pb::EulaHandling::RequireAccepted);
    }
    let allowed = match pb::ApprovalRequirement::try_from(rules.approval)
        .unwrap_or(pb::ApprovalRequirement::OnlyApproved)
    {
        pb::ApprovalRequirement::OnlyApproved => approval == ApprovalStatus::Approved,
        pb::ApprovalRequirement::AllExceptDeclined => approval != ApprovalStatus::Declined,
        pb::ApprovalRequirement::All => true,
    };
    if !allowed {
        return Verdict::Refuse(match approval {
            ApprovalStatus::Declined => "the update is declined",
            _ => "the update is not approved",
        });
    }
    let details = &update.details;
    if rules.min_severity > catalog::Severity::Unspecified as i32
        && details.severity < rules.min_severity
    {
        return Verdict::Refuse("below the task's minimum severity");
    }
    if !rules.classifications.is_empty() && !rules.classifications.contains(&details.classification)
    {
        return Verdict::Refuse("not one of the task's classifications");
    }
    if !matches_any(&rules.vendors, &details.vendor) {
        return Verdict::Refuse("not one of the task's vendors");
    }
    if !matches_any(&rules.products, &details.product) {
        return Verdict::Refuse("not one of the task's products");
    }
    eula_verdict(
        update,
        state,
        pb::EulaHandling::try_from(rules.eula).unwrap_or(pb::EulaHandling::RequireAccepted),
    )
}

fn eula_verdict(
    update: &UpdateFacts,
    state: &InstallingState,
    handling: pb::EulaHandling,
) -> Verdict {
    let Some((eula_id, digest)) = update.eula() else {
        return Verdict::Install;
    };
    if handling == pb::EulaHandling::Skip {
        return Verdict::Refuse("the update needs a EULA and the task skips those");
    }
    match state.eulas.get(&(eula_id.to_owned(), digest.to_owned())) {
        Some(EulaDecision::Accepted) => Verdict::Install,
        Some(EulaDecision::Declined) => Verdict::Refuse("its EULA was declined"),
        None => Verdict::Wait("its EULA has not been accepted"),
    }
}

fn matches_any(wanted: &[String], value: &str) -> bool {
    wanted.is_empty() || wanted.iter().any(|w| w.eq_ignore_ascii_case(value))
}
