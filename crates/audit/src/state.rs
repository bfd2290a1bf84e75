//! Time travel: what was true at a moment, rebuilt by replaying each service's log up to it into
//! the same read models the services use, so the answer is by construction a replay from zero.

use chrono::{DateTime, Utc};
use patchbay_approvals::view::ApprovalsView;
use patchbay_eventstore::{AsOfError, EventStore, EventStoreError, Snapshottable, load_as_of};
use patchbay_installing::domain::state::JobStatus;
use patchbay_installing::view::InstallingView;
use patchbay_proto::approvals::v1::ApprovalStatus;
use patchbay_proto::audit::v1 as pb;
use patchbay_proto::installing::v1 as installing;
use patchbay_scanning::view::{LastScan, ScanningView};
use prost::Message as _;

use crate::EventDecoder;

/// Why a state cannot be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("--at {0:?} is not a time: use RFC 3339, e.g. 2026-11-30T12:00:00Z")]
    Time(String),
    #[error("--at {at} is in the future (now is {now}); ask about the past or now")]
    Future { at: String, now: String },
    #[error("--at {at} is before the first event ({first}); nothing was known then")]
    BeforeFirstEvent { at: String, first: String },
    #[error("the logs hold no event yet; there is no history to ask about")]
    EmptyLogs,
    #[error(
        "no update {update_id} was known at {at}; check the id (`patchbay updates list`) or ask about a later time"
    )]
    UnknownUpdate { update_id: String, at: String },
    #[error(
        "no device {device_id} was registered at {at}; check the id (`patchbay devices list`) or ask about a later time"
    )]
    UnknownDevice { device_id: String, at: String },
    #[error("the {service} event log cannot be read: {source}")]
    Store {
        service: &'static str,
        source: EventStoreError,
    },
    #[error("the {service} log holds an event this Patchbay cannot apply: {reason}")]
    Apply {
        service: &'static str,
        reason: String,
    },
}

/// What to rebuild: everything, or one update's approval and one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateQuery {
    pub update_id: Option<String>,
    pub device_id: Option<String>,
    /// Replay every log from its first event, ignoring snapshots (slow on long logs; for whoever
    /// wants the answer without trusting the snapshot cache).
    pub from_zero: bool,
}

/// Parses `--at` and refuses the future.
pub fn parse_at(at: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, StateError> {
    let parsed = DateTime::parse_from_rfc3339(at.trim())
        .map_err(|_| StateError::Time(at.to_owned()))?
        .with_timezone(&Utc);
    if parsed > now {
        return Err(StateError::Future {
            at: parsed.to_rfc3339(),
            now: now.to_rfc3339(),
        });
    }
    Ok(parsed)
}

/// Rebuilds `P` from every event of `store` recorded at or before `at` (from a snapshot when
/// allowed); returns the projection, a line saying what was replayed and the log's first time.
async fn replay_until<P: Snapshottable>(
    service: &'static str,
    store: &EventStore,
    at: DateTime<Utc>,
    use_snapshots: bool,
) -> Result<(P, String, Option<DateTime<Utc>>), StateError> {
    let as_of = load_as_of::<P>(store, at, use_snapshots)
        .await
        .map_err(|error| match error {
            AsOfError::Store(source) => StateError::Store { service, source },
            AsOfError::Apply(error) => StateError::Apply {
                service,
                reason: error.to_string(),
            },
        })?;
    let replayed = match &as_of.snapshot {
        Some(snapshot) => format!(
            "{service}={} (snapshot of {} events at position {}, then {} read)",
            as_of.applied, snapshot.events_applied, snapshot.position.global_position, as_of.read
        ),
        None => format!("{service}={}", as_of.applied),
    };
    Ok((as_of.projection, replayed, as_of.first_recorded_at))
}

type Replayed<P> = Result<(P, String, Option<DateTime<Utc>>), StateError>;

/// Starts rebuilding `service`'s read model if this process hosts its log.
fn spawn_replay<P: Snapshottable>(
    stores: &[(&'static str, EventStore)],
    service: &'static str,
    at: DateTime<Utc>,
    use_snapshots: bool,
) -> Option<tokio::task::JoinHandle<Replayed<P>>> {
    let store = stores
        .iter()
        .find(|(hosted, _)| *hosted == service)
        .map(|(_, store)| store.clone())?;
    Some(tokio::spawn(async move {
        replay_until::<P>(service, &store, at, use_snapshots).await
    }))
}

async fn joined<P>(
    task: Option<tokio::task::JoinHandle<Replayed<P>>>,
) -> Result<Option<(P, String, Option<DateTime<Utc>>)>, StateError> {
    match task {
        None => Ok(None),
        Some(task) => match task.await {
            Ok(replayed) => replayed.map(Some),
            Err(error) => Err(StateError::Apply {
                service: "audit",
                reason: format!("the replay task ended abnormally: {error}"),
            }),
        },
    }
}

/// Rebuilds the state at `at` from the hosted logs.
pub async fn state_at(
    stores: &[(&'static str, EventStore)],
    at: DateTime<Utc>,
    query: &StateQuery,
    decoder: &EventDecoder,
) -> Result<pb::StateAtResponse, StateError> {
    let mut response = pb::StateAtResponse {
        at: at.to_rfc3339(),
        ..Default::default()
    };
    let mut first_event: Option<DateTime<Utc>> = None;
    let mut note_first = |first: Option<DateTime<Utc>>| {
        if let Some(first) = first {
            first_event = Some(first_event.map_or(first, |f| f.min(first)));
        }
    };
    let mut unknown = None;
    // The logs are independent: each is rebuilt in a task of its own, so they use both cores.
    let use_snapshots = !query.from_zero;
    let approvals = spawn_replay::<ApprovalsView>(stores, "approvals", at, use_snapshots);
    let scanning = spawn_replay::<ScanningView>(stores, "scanning", at, use_snapshots);
    let installing = spawn_replay::<InstallingView>(stores, "installing", at, use_snapshots);
    if let Some((view, replayed, first)) = joined(approvals).await? {
        note_first(first);
        response.replayed.push(replayed);
        if let Some(update_id) = &query.update_id
            && !view.updates.contains_key(update_id)
            && !view.approvals.contains_key(update_id)
        {
            unknown = Some(StateError::UnknownUpdate {
                update_id: update_id.clone(),
                at: at.to_rfc3339(),
            });
        }
        approvals_at(&view, query, &mut response);
    }
    if let Some((view, replayed, first)) = joined(scanning).await? {
        note_first(first);
        response.replayed.push(replayed);
        if let Some(device_id) = &query.device_id
            && !view.devices.contains_key(device_id)
        {
            unknown = Some(StateError::UnknownDevice {
                device_id: device_id.clone(),
                at: at.to_rfc3339(),
            });
        }
        devices_at(&view, query, &mut response)?;
    }
    if let Some((view, replayed, first)) = joined(installing).await? {
        note_first(first);
        response.replayed.push(replayed);
        installing_at(&view, query, decoder, &mut response);
    }
    match first_event {
        None => Err(StateError::EmptyLogs),
        Some(first) if at < first => Err(StateError::BeforeFirstEvent {
            at: at.to_rfc3339(),
            first: first.to_rfc3339(),
        }),
        Some(_) => match unknown {
            Some(error) => Err(error),
            None => Ok(response),
        },
    }
}

fn approvals_at(view: &ApprovalsView, query: &StateQuery, response: &mut pb::StateAtResponse) {
    let mut approvals: Vec<pb::ApprovalAt> = view
        .approvals
        .iter()
        .filter(|(id, _)| query.update_id.as_ref().is_none_or(|wanted| wanted == *id))
        .map(|(update_id, entry)| {
            let status = match entry.state.status {
                ApprovalStatus::Approved => "approved",
                ApprovalStatus::Declined => "declined",
                ApprovalStatus::Undefined => "undefined",
            };
            let rule = entry.state.rule.clone().unwrap_or_default();
            pb::ApprovalAt {
                update_id: update_id.clone(),
                status: status.to_owned(),
                actor: entry.actor.clone(),
                changed_at: entry.changed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                reason: entry.state.reason.clone(),
                rule_id: rule.rule_id,
                rule_version: rule.rule_version,
                revision: entry.state.revision,
            }
        })
        .collect();
    if let Some(update_id) = &query.update_id
        && approvals.is_empty()
        && let Some(known) = view.updates.get(update_id)
    {
        approvals.push(pb::ApprovalAt {
            update_id: update_id.clone(),
            status: "undefined".to_owned(),
            revision: known.revision,
            ..Default::default()
        });
    }
    approvals.sort_by(|a, b| a.update_id.cmp(&b.update_id));
    response.approvals = approvals;
    if query.update_id.is_none() {
        for (eula_id, entry) in &view.eulas {
            for (digest, (actor, decided_at)) in &entry.decided_by {
                response.eulas.push(pb::EulaAt {
                    eula_id: eula_id.clone(),
                    text_sha256: digest.clone(),
                    decision: entry.status(digest).to_owned(),
                    actor: actor.clone(),
                    decided_at: decided_at.to_rfc3339(),
                });
            }
        }
    }
}

fn devices_at(
    view: &ScanningView,
    query: &StateQuery,
    response: &mut pb::StateAtResponse,
) -> Result<(), StateError> {
    for (device_id, entry) in &view.devices {
        if query
            .device_id
            .as_ref()
            .is_some_and(|wanted| wanted != device_id)
        {
            continue;
        }
        let scan = entry
            .last_scan
            .as_ref()
            .map(LastScan::decode)
            .transpose()
            .map_err(|error| StateError::Apply {
                service: "scanning",
                reason: error.to_string(),
            })?
            .unwrap_or_default();
        response.devices.push(pb::DeviceAt {
            device_id: device_id.clone(),
            hostname: entry.state.hostname.clone(),
            groups: entry.state.groups.clone(),
            scanned_at: entry
                .last_scanned_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            required_update_ids: scan.required.iter().map(|r| r.update_id.clone()).collect(),
            open_vulnerabilities: scan
                .vulnerabilities
                .iter()
                .map(|v| v.cve_id.clone())
                .collect(),
            installed_update_ids: Vec::new(),
        });
    }
    Ok(())
}

fn installing_at(
    view: &InstallingView,
    query: &StateQuery,
    decoder: &EventDecoder,
    response: &mut pb::StateAtResponse,
) {
    // What install jobs had put on each device (and uninstall jobs taken off), in queueing order.
    let mut jobs: Vec<_> = view.jobs.values().collect();
    jobs.sort_by_key(|job| job.queued_position);
    let mut installed: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        std::collections::BTreeMap::new();
    for job in jobs {
        if !matches!(job.status, JobStatus::Succeeded | JobStatus::RebootRequired) {
            continue;
        }
        let on_device = installed.entry(job.job.device_id.as_str()).or_default();
        match job.kind() {
            installing::JobKind::Uninstall => {
                on_device.remove(job.job.update_id.as_str());
            }
            _ => {
                on_device.insert(job.job.update_id.as_str());
            }
        }
    }
    for device in &mut response.devices {
        if let Some(updates) = installed.get(device.device_id.as_str()) {
            device.installed_update_ids = updates.iter().map(|u| (*u).to_owned()).collect();
        }
    }
    if query.device_id.is_some() || query.update_id.is_some() {
        return;
    }
    for (task_id, task) in &view.tasks {
        response.tasks.push(pb::TaskAt {
            task_id: task_id.clone(),
            name: task.created.name.clone(),
            definition_json: decoder
                .to_json(
                    "installing",
                    "InstallTaskCreated",
                    &task.created.encode_to_vec(),
                )
                .map(|json| json.to_string())
                .unwrap_or_default(),
            runs: task.runs,
            last_run_status: task.last_run_status.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn at_must_be_a_past_time() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(parse_at("2026-11-30T11:00:00+00:00", now).is_ok());
        assert!(matches!(
            parse_at("tomorrow", now),
            Err(StateError::Time(_))
        ));
        let future = parse_at("2027-01-01T00:00:00Z", now).unwrap_err();
        assert!(future.to_string().contains("future"), "{future}");
    }
}
