//! The consumer that turns the WSUS sync service's `WsusUpdateSynced` into catalog updates:
//! published, revised, superseded and expired Microsoft updates.

use std::collections::HashMap;

use patchbay_bus::{EventHandler, HandlerError, IncomingEvent};
use std::time::Duration;

use patchbay_eventstore::{EventStoreError, ExpectedVersion, StreamAppend, Transaction};
use patchbay_proto::catalog::v1 as pb;
use patchbay_proto::wsus::v1 as wsus;
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::Catalog;
use crate::domain::{CveId, UpdateCommand, UpdateId, UpdateState, decide, evolve};
use crate::events::SCHEMA_VERSION;

/// Durable consumer name.
pub const CONSUMER: &str = "catalog-wsus";
/// The producing service.
pub const SERVICE: &str = "wsus-sync";
/// The one event type this consumer reads.
pub const EVENT_TYPE: &str = "WsusUpdateSynced";

/// The well-known WSUS classification ids.
const CLASSIFICATIONS: [(&str, pb::Classification); 10] = [
    (
        "e6cf1350-c01b-414d-a61f-263d14d133b4",
        pb::Classification::Critical,
    ),
    (
        "0fa1201d-4330-4fa8-8ae9-b877473b6441",
        pb::Classification::Security,
    ),
    (
        "e0789628-ce08-4437-be74-2495b842f43b",
        pb::Classification::Definition,
    ),
    (
        "b54e7d24-7add-428f-8b75-90a396fa584f",
        pb::Classification::FeaturePack,
    ),
    (
        "68c5b0a3-d1a6-4553-ae49-01d3a7827828",
        pb::Classification::ServicePack,
    ),
    (
        "b4832bd8-e735-4761-8daf-37f882276dab",
        pb::Classification::Tool,
    ),
    (
        "28bc880e-0592-4cbf-8f95-c79b17911d5f",
        pb::Classification::UpdateRollup,
    ),
    (
        "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83",
        pb::Classification::Update,
    ),
    (
        "ebfc1fc5-71a4-4f7b-9aca-3b9a503104a0",
        pb::Classification::Driver,
    ),
    (
        "3689bdc8-b205-4af4-8d4a-a63924c5e9d5",
        pb::Classification::Upgrade,
    ),
];

/// Records WSUS software and driver updates in the catalog; categories and detectoids are the
/// sync service's business and are skipped.
#[derive(Debug, Clone)]
pub struct WsusRecorder {
    catalog: Catalog,
}

impl WsusRecorder {
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }
}

impl EventHandler for WsusRecorder {
    const BATCHED: bool = true;

    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        self.handle_batch(tx, &[incoming]).await
    }

    async fn handle_batch(
        &self,
        tx: &mut Transaction,
        events: &[&IncomingEvent],
    ) -> Result<(), HandlerError> {
        self.catalog
            .catch_up()
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        let mut attempt = 0;
        loop {
            let appends = self.plan(events)?;
            if appends.is_empty() {
                return Ok(());
            }
            match tx.append_streams(&appends).await {
                Ok(_) => return Ok(()),
                // The view had not shown an earlier batch yet (on PostgreSQL a transaction open
                // elsewhere holds the global order back for a moment): wait for it, decide again.
                Err(EventStoreError::Conflict {
                    stream_id,
                    actual: Some(actual),
                    ..
                }) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    let id = stream_id
                        .strip_prefix("update-")
                        .unwrap_or(&stream_id)
                        .to_owned();
                    self.catalog
                        .catch_up_until(
                            |view| {
                                view.updates
                                    .get(&id)
                                    .is_some_and(|e| e.stream_version >= actual)
                            },
                            VIEW_WAIT,
                        )
                        .await
                        .map_err(|e| HandlerError::Transient(e.to_string()))?;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Re-decisions after a conflict before the batch is handed back for redelivery.
const CONFLICT_RETRIES: u32 = 3;
/// Longest wait for the view to show a stream version a conflict reported.
const VIEW_WAIT: Duration = Duration::from_secs(5);

impl WsusRecorder {
    /// The catalog appends the batch means, decided on the view.
    fn plan(&self, events: &[&IncomingEvent]) -> Result<Vec<StreamAppend>, HandlerError> {
        // Decisions build on each other within the batch (a revision after its publication, a
        // supersedence after the superseded update): keep the batch's own states beside the view,
        // and append each stream's events at the version the view had.
        let mut states: HashMap<String, (UpdateState, u64)> = HashMap::new();
        let mut pending: Vec<(String, Vec<patchbay_eventstore::NewEvent>)> = Vec::new();
        for incoming in events {
            if incoming.service != SERVICE || incoming.event.event_type != EVENT_TYPE {
                continue;
            }
            let synced = wsus::WsusUpdateSynced::decode(incoming.event.payload.as_slice())
                .map_err(|e| {
                    HandlerError::Permanent(format!("WsusUpdateSynced does not decode: {e}"))
                })?;
            for (id, command) in commands(&synced) {
                let stream = id.stream_id();
                let (state, version) = match states.get(&stream) {
                    Some(entry) => entry.clone(),
                    None => {
                        let view = self.catalog.view();
                        let entry = view.updates.get(id.as_str()).cloned().unwrap_or_default();
                        (entry.state, entry.stream_version)
                    }
                };
                let decided = match decide(&state, command) {
                    Ok(decided) => decided,
                    Err(error) => {
                        // Bad upstream data for one update (no title, an unknown superseded id)
                        // must not stop the others.
                        tracing::debug!(update = %id, %error, "WSUS update not recorded in the catalog");
                        continue;
                    }
                };
                if decided.is_empty() {
                    continue;
                }
                let state = decided.iter().fold(state, evolve);
                states.insert(stream.clone(), (state, version));
                let new = decided.iter().map(|e| {
                    incoming.follow_up(e.event_type(), SCHEMA_VERSION, e.encode_payload())
                });
                match pending.iter_mut().find(|(s, _)| *s == stream) {
                    Some((_, events)) => events.extend(new),
                    None => pending.push((stream, new.collect())),
                }
            }
        }
        Ok(pending
            .into_iter()
            .map(|(stream, events)| {
                let version = states.get(&stream).map_or(0, |s| s.1);
                StreamAppend::new(stream, ExpectedVersion::Exact(version), events)
            })
            .collect())
    }
}

/// The catalog commands one synced revision means, in order.
fn commands(synced: &wsus::WsusUpdateSynced) -> Vec<(UpdateId, UpdateCommand)> {
    let software = synced.update_type == wsus::WsusUpdateType::Software as i32
        || synced.update_type == wsus::WsusUpdateType::Driver as i32;
    let Ok(id) = UpdateId::parse(&synced.update_id) else {
        return vec![];
    };
    if !software {
        return vec![];
    }
    let mut commands = Vec::new();
    if synced.expired {
        commands.push((
            id.clone(),
            UpdateCommand::Expire {
                id,
                reason: format!(
                    "expired by the upstream WSUS server (revision {})",
                    synced.revision_number
                ),
            },
        ));
        return commands;
    }
    commands.push((
        id.clone(),
        UpdateCommand::Publish {
            id: id.clone(),
            details: Box::new(details(synced)),
        },
    ));
    for superseded in &synced.superseded_update_ids {
        if let Ok(old) = UpdateId::parse(superseded) {
            commands.push((
                old.clone(),
                UpdateCommand::Supersede {
                    id: old,
                    superseded_by: id.clone(),
                },
            ));
        }
    }
    commands
}

/// The catalog's description of one WSUS revision.
pub fn details(synced: &wsus::WsusUpdateSynced) -> pb::UpdateDetails {
    let title = synced
        .texts
        .iter()
        .find(|t| t.language.eq_ignore_ascii_case("en"))
        .or_else(|| synced.texts.first())
        .map(|t| t.title.clone())
        .unwrap_or_default();
    let products: Vec<&wsus::WsusCategoryRef> = synced
        .categories
        .iter()
        .filter(|c| c.category_type == wsus::WsusCategoryType::Product as i32)
        .collect();
    let classification = if synced.update_type == wsus::WsusUpdateType::Driver as i32 {
        pb::Classification::Driver
    } else {
        synced
            .categories
            .iter()
            .find_map(|c| {
                CLASSIFICATIONS
                    .iter()
                    .find(|(id, _)| c.id.eq_ignore_ascii_case(id))
                    .map(|(_, classification)| *classification)
            })
            .unwrap_or(pb::Classification::Unspecified)
    };
    let severity = match synced.msrc_severity.as_str() {
        "Critical" => pb::Severity::Critical,
        "Important" => pb::Severity::Important,
        "Moderate" => pb::Severity::Moderate,
        "Low" => pb::Severity::Low,
        _ => pb::Severity::Unspecified,
    };
    let reboot = match wsus::WsusRebootBehaviour::try_from(synced.reboot) {
        Ok(wsus::WsusRebootBehaviour::NeverReboots) => pb::RebootBehaviour::Never,
        Ok(wsus::WsusRebootBehaviour::AlwaysRequiresReboot) => pb::RebootBehaviour::Always,
        Ok(wsus::WsusRebootBehaviour::CanRequestReboot) => pb::RebootBehaviour::MayRequire,
        _ => pb::RebootBehaviour::Unspecified,
    };
    let kb = synced
        .kb_article_ids
        .first()
        .map(|kb| format!("KB{}", kb.trim().trim_start_matches("KB")))
        .unwrap_or_default();
    let eula = (!synced.eula_id.is_empty()).then(|| pb::Eula {
        eula_id: synced.eula_id.clone(),
        text_sha256: if synced.eula_sha256.len() == 64 {
            synced.eula_sha256.clone()
        } else {
            // Only a SHA-1 was published: derive a stable SHA-256 key for this text.
            hex::encode(Sha256::digest(
                format!("{}:{}", synced.eula_id, synced.eula_sha256).as_bytes(),
            ))
        },
    });
    let size = synced.files.iter().map(|f| f.size).sum::<u64>();
    pb::UpdateDetails {
        title,
        vendor: "Microsoft".into(),
        product: products
            .iter()
            .map(|p| {
                if p.title.is_empty() {
                    p.id.clone()
                } else {
                    p.title.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        version: kb.clone(),
        kind: pb::UpdateKind::Windows as i32,
        classification: classification as i32,
        severity: severity as i32,
        cve_ids: synced
            .cve_ids
            .iter()
            .filter_map(|cve| CveId::parse(cve).ok().map(|c| c.as_str().to_owned()))
            .collect(),
        supersedes: synced.superseded_update_ids.clone(),
        release_date: synced.creation_date.chars().take(10).collect(),
        size_bytes: if size > 0 {
            size
        } else {
            synced.max_download_size
        },
        eula,
        min_server_version: String::new(),
        uninstallable: synced.uninstallable,
        reboot: reboot as i32,
        source: "wsus".into(),
        applicability: Some(pb::update_details::Applicability::Windows(
            pb::WindowsApplicability {
                kb_article: kb,
                product_ids: products.iter().map(|p| p.id.clone()).collect(),
            },
        )),
    }
}
