//! Provenance trails: every event, across services and in time order, that led to an update's, a
//! device's or a CVE's current state — synced, published, found required by a scan, approved (by
//! whom or which rule), job queued, dispatched, its result, uninstalled — and how long each device
//! took to remediate.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use patchbay_eventstore::{EventStore, EventStoreError, LogPosition, RecordedEvent};
use patchbay_proto::audit::v1 as pb;
use serde_json::Value;

use crate::{EventDecoder, audit_event};

/// Events read per page.
const PAGE: usize = 5_000;

/// What to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrailSubject {
    Update(String),
    Device(String),
    Cve(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error("give exactly one of --update, --device or --cve")]
    Subject,
    #[error("the {service} event log cannot be read: {source}")]
    Store {
        service: &'static str,
        source: EventStoreError,
    },
    #[error(
        "nothing in the logs mentions {0}; check the id (`patchbay updates list`, `patchbay devices list`)"
    )]
    Unknown(String),
}

impl TrailSubject {
    pub fn from_request(request: &pb::TrailRequest) -> Result<Self, TrailError> {
        let given: Vec<(&str, &String)> = [
            ("update", &request.update_id),
            ("device", &request.device_id),
            ("cve", &request.cve_id),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
        match given.as_slice() {
            [("update", id)] => Ok(TrailSubject::Update(id.trim().to_owned())),
            [("device", id)] => Ok(TrailSubject::Device(id.trim().to_owned())),
            [(_, id)] => Ok(TrailSubject::Cve(id.trim().to_ascii_uppercase())),
            _ => Err(TrailError::Subject),
        }
    }

    fn describe(&self) -> String {
        match self {
            TrailSubject::Update(id) => format!("update {id}"),
            TrailSubject::Device(id) => format!("device {id}"),
            TrailSubject::Cve(id) => id.clone(),
        }
    }
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// When a device was found exposed to a subject, and when and how that ended (if it did).
type Exposure = (DateTime<Utc>, Option<(DateTime<Utc>, &'static str)>);

/// One decoded event of interest, before it is known to be part of the trail.
struct Decoded {
    service: &'static str,
    event: RecordedEvent,
    payload: Value,
}

/// Builds the trail from every hosted log.
pub async fn trail(
    stores: &[(&'static str, EventStore)],
    subject: &TrailSubject,
    decoder: &EventDecoder,
) -> Result<pb::TrailResponse, TrailError> {
    // Only events of interest are decoded: the originals, not the copies services keep of each
    // other's events.
    const WANTED: [&str; 19] = [
        "WsusUpdateSynced",
        "UpdatePublished",
        "UpdateRevised",
        "UpdateSuperseded",
        "UpdateExpired",
        "DeviceRegistered",
        "InventoryReported",
        "ScanCompleted",
        "UpdateApproved",
        "UpdateDeclined",
        "ApprovalReset",
        "InstallJobQueued",
        "UninstallJobQueued",
        "InstallJobDispatched",
        "InstallJobSucceeded",
        "InstallJobFailed",
        "InstallJobRebootRequired",
        "InstallJobCancelled",
        "VulnerabilityPublished",
    ];
    let mut decoded = Vec::new();
    for (service, store) in stores {
        let mut pages = store.replay(LogPosition::START, PAGE);
        loop {
            let page = pages
                .next_page()
                .await
                .map_err(|source| TrailError::Store { service, source })?;
            let Some(page) = page else { break };
            for event in page {
                if !WANTED.contains(&event.event_type.as_str()) {
                    continue;
                }
                let Some(payload) = decoder.to_json(service, &event.event_type, &event.payload)
                else {
                    continue;
                };
                decoded.push(Decoded {
                    service,
                    event,
                    payload,
                });
            }
        }
    }
    decoded.sort_by_key(|d| d.event.recorded_at);
    assemble(subject, &decoded, decoder)
}

/// The updates a subject concerns: the update itself, or those fixing the CVE.
fn updates_of(subject: &TrailSubject, decoded: &[Decoded]) -> BTreeSet<String> {
    match subject {
        TrailSubject::Update(id) => BTreeSet::from([id.clone()]),
        TrailSubject::Device(_) => BTreeSet::new(),
        TrailSubject::Cve(cve) => decoded
            .iter()
            .filter(|d| {
                matches!(
                    d.event.event_type.as_str(),
                    "UpdatePublished" | "UpdateRevised"
                )
            })
            .filter(|d| {
                d.payload
                    .get("details")
                    .is_some_and(|details| strings(details, "cveIds").contains(cve))
            })
            .map(|d| text(&d.payload, "updateId").to_owned())
            .collect(),
    }
}

fn assemble(
    subject: &TrailSubject,
    decoded: &[Decoded],
    decoder: &EventDecoder,
) -> Result<pb::TrailResponse, TrailError> {
    let updates = updates_of(subject, decoded);
    let device = match subject {
        TrailSubject::Device(id) => Some(id.as_str()),
        _ => None,
    };
    let concerns_update = |update: &str| device.is_some() || updates.contains(update);
    let concerns_device = |d: &str| device.is_none_or(|wanted| wanted == d);
    let mut jobs: HashMap<String, (String, String)> = HashMap::new();
    // Per (device, subject): when found, when remediated and how.
    let mut open: BTreeMap<(String, String), Exposure> = BTreeMap::new();
    // The subjects each device's previous scan found (to see when one stops being required).
    let mut previous: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut response = pb::TrailResponse::default();
    let mut push = |d: &Decoded, step: &str, update: &str, device_id: &str, detail: String| {
        response.steps.push(pb::TrailStep {
            step: step.to_owned(),
            event: Some(audit_event(decoder, d.service, &d.event)),
            update_id: update.to_owned(),
            device_id: device_id.to_owned(),
            detail,
        });
    };
    for d in decoded {
        let p = &d.payload;
        let at = d.event.recorded_at;
        match d.event.event_type.as_str() {
            "WsusUpdateSynced" => {
                let update = text(p, "updateId");
                if device.is_none() && concerns_update(update) {
                    let revision = p.get("revisionNumber").and_then(Value::as_i64).unwrap_or(0);
                    push(
                        d,
                        "synced",
                        update,
                        "",
                        format!("upstream revision {revision}"),
                    );
                }
            }
            "UpdatePublished" | "UpdateRevised" | "UpdateSuperseded" | "UpdateExpired" => {
                let update = text(p, "updateId");
                if device.is_some() || !concerns_update(update) {
                    continue;
                }
                let (step, detail) = match d.event.event_type.as_str() {
                    "UpdatePublished" => ("published", String::new()),
                    "UpdateRevised" => (
                        "revised",
                        format!(
                            "revision {}",
                            p.get("revision").and_then(Value::as_u64).unwrap_or(0)
                        ),
                    ),
                    "UpdateSuperseded" => ("superseded", format!("by {}", text(p, "supersededBy"))),
                    _ => ("expired", text(p, "reason").to_owned()),
                };
                push(d, step, update, "", detail);
            }
            "DeviceRegistered" | "InventoryReported" => {
                let device_id = text(p, "deviceId");
                if device == Some(device_id) {
                    let step = if d.event.event_type == "DeviceRegistered" {
                        "registered"
                    } else {
                        "inventory reported"
                    };
                    push(d, step, "", device_id, String::new());
                }
            }
            "ScanCompleted" => {
                let device_id = text(p, "deviceId");
                if !concerns_device(device_id) {
                    continue;
                }
                let required: Vec<&Value> = p
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().collect())
                    .unwrap_or_default();
                let now: BTreeSet<String> = match subject {
                    TrailSubject::Cve(cve) => p
                        .get("vulnerabilities")
                        .and_then(Value::as_array)
                        .map(|v| {
                            v.iter()
                                .filter(|v| text(v, "cveId") == cve)
                                .map(|_| cve.clone())
                                .collect()
                        })
                        .unwrap_or_default(),
                    _ => required
                        .iter()
                        .map(|r| text(r, "updateId").to_owned())
                        .filter(|u| concerns_update(u))
                        .collect(),
                };
                let before = previous.remove(device_id).unwrap_or_default();
                let detail = format!(
                    "scan run {} of task {}, against catalog position {}",
                    p.get("run").and_then(Value::as_u64).unwrap_or(0),
                    text(p, "taskId"),
                    p.get("catalogPosition")
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                );
                for found in now.difference(&before) {
                    push(d, "found required", found, device_id, detail.clone());
                    open.entry((device_id.to_owned(), found.clone()))
                        .or_insert((at, None));
                }
                for gone in before.difference(&now) {
                    push(d, "no longer required", gone, device_id, detail.clone());
                    if let Some(entry) = open.get_mut(&(device_id.to_owned(), gone.clone()))
                        && entry.1.is_none()
                    {
                        entry.1 = Some((at, "no longer required"));
                    }
                }
                previous.insert(device_id.to_owned(), now);
            }
            "UpdateApproved" | "UpdateDeclined" | "ApprovalReset" => {
                let update = text(p, "updateId");
                if device.is_some() || !concerns_update(update) {
                    continue;
                }
                let step = match d.event.event_type.as_str() {
                    "UpdateApproved" => "approved",
                    "UpdateDeclined" => "declined",
                    _ => "approval reset",
                };
                let detail = match p.get("rule") {
                    Some(rule) => format!(
                        "by rule {} version {}",
                        text(rule, "ruleId"),
                        rule.get("ruleVersion").and_then(Value::as_u64).unwrap_or(0)
                    ),
                    None => format!("by {}: {}", d.event.metadata.actor, text(p, "reason")),
                };
                push(d, step, update, "", detail);
            }
            "InstallJobQueued" | "UninstallJobQueued" => {
                let job = p.get("job").cloned().unwrap_or_default();
                let (update, device_id) = (text(&job, "updateId"), text(&job, "deviceId"));
                if !concerns_update(update) || !concerns_device(device_id) {
                    continue;
                }
                jobs.insert(
                    text(&job, "jobId").to_owned(),
                    (update.to_owned(), device_id.to_owned()),
                );
                let step = if d.event.event_type == "InstallJobQueued" {
                    "install queued"
                } else {
                    "uninstall queued"
                };
                push(
                    d,
                    step,
                    update,
                    device_id,
                    format!("job {}", text(&job, "jobId")),
                );
            }
            "InstallJobDispatched"
            | "InstallJobSucceeded"
            | "InstallJobFailed"
            | "InstallJobRebootRequired"
            | "InstallJobCancelled" => {
                let Some((update, device_id)) = jobs.get(text(p, "jobId")).cloned() else {
                    continue;
                };
                let step = match d.event.event_type.as_str() {
                    "InstallJobDispatched" => "dispatched",
                    "InstallJobSucceeded" => "succeeded",
                    "InstallJobFailed" => "failed",
                    "InstallJobRebootRequired" => "reboot required",
                    _ => "cancelled",
                };
                push(d, step, &update, &device_id, text(p, "reason").to_owned());
                if matches!(step, "succeeded" | "reboot required") {
                    // For a CVE, the device's open entry is keyed by the CVE.
                    let key_subject = match subject {
                        TrailSubject::Cve(cve) => cve.clone(),
                        _ => update.clone(),
                    };
                    if let Some(entry) = open.get_mut(&(device_id.clone(), key_subject))
                        && entry.1.is_none()
                    {
                        entry.1 = Some((at, "installed"));
                    }
                }
            }
            _ => {}
        }
    }
    if response.steps.is_empty() {
        return Err(TrailError::Unknown(subject.describe()));
    }
    response.remediations = open
        .into_iter()
        .map(
            |((device_id, subject), (found, remediated))| pb::Remediation {
                device_id,
                subject,
                found_at: found.to_rfc3339(),
                remediated_at: remediated.map(|(t, _)| t.to_rfc3339()).unwrap_or_default(),
                seconds: remediated
                    .map(|(t, _)| (t - found).num_seconds())
                    .unwrap_or_default(),
                how: remediated
                    .map(|(_, how)| how.to_owned())
                    .unwrap_or_default(),
            },
        )
        .collect();
    Ok(response)
}
