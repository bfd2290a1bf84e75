//! The approvals read model, rebuilt from the approvals log alone: what the service knows of each
//! update (from its own copies of the catalog's events), each update's approval, EULA decisions per
//! text, and the auto-approval rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use patchbay_eventstore::{Projection, RecordedEvent, Snapshottable};
use patchbay_proto::approvals::v1::{self as pb, ApprovalRule, ApprovalStatus, UpdateFilter};
use patchbay_proto::catalog::v1 as catalog;
use prost::Message as _;

use crate::domain::{
    ApprovalState, EulaDecision, EulaState, RuleState, UpdateFacts, evolve_approval, evolve_eula,
    evolve_rule, matches, needs_newer_server,
};
use crate::events::{ApprovalsEvent, DecodeError};

/// One update as the catalog last described it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KnownUpdate {
    /// The current catalog revision (1 once published).
    pub revision: u32,
    pub details: catalog::UpdateDetails,
    pub superseded_by: Option<String>,
    pub expired: bool,
}

impl KnownUpdate {
    /// `(eula_id, text_sha256)` of the current revision's EULA, if it has one.
    pub fn eula(&self) -> Option<(&str, &str)> {
        self.details
            .eula
            .as_ref()
            .filter(|e| !e.eula_id.is_empty())
            .map(|e| (e.eula_id.as_str(), e.text_sha256.as_str()))
    }
}

/// One update's approval.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApprovalEntry {
    pub state: ApprovalState,
    /// Version of the `approval-<update_id>` stream, for optimistic concurrency.
    pub stream_version: u64,
    pub actor: String,
    pub changed_at: Option<DateTime<Utc>>,
}

/// One EULA: decisions on its texts, and which current revisions reference which text.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EulaEntry {
    pub state: EulaState,
    pub stream_version: u64,
    /// Who decided on each text digest, and when.
    pub decided_by: BTreeMap<String, (String, DateTime<Utc>)>,
    /// Text digest → updates whose current revision references it.
    pub current: BTreeMap<String, BTreeSet<String>>,
}

impl EulaEntry {
    /// The digests current revisions reference.
    pub fn current_digests(&self) -> Vec<String> {
        self.current
            .iter()
            .filter(|(_, updates)| !updates.is_empty())
            .map(|(digest, _)| digest.clone())
            .collect()
    }

    /// "accepted", "declined" or "not accepted" for one text.
    pub fn status(&self, text_sha256: &str) -> &'static str {
        self.state
            .decision(text_sha256)
            .map_or("not accepted", EulaDecision::as_str)
    }
}

/// One auto-approval rule.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuleEntry {
    pub state: RuleState,
    pub stream_version: u64,
    pub added_at: Option<DateTime<Utc>>,
    /// Updates the rule has approved or declined.
    pub applied: u64,
}

#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApprovalsView {
    pub updates: BTreeMap<String, KnownUpdate>,
    pub approvals: HashMap<String, ApprovalEntry>,
    pub eulas: BTreeMap<String, EulaEntry>,
    pub rules: BTreeMap<String, RuleEntry>,
    /// Position in the catalog's log of the last catalog event observed.
    pub catalog_position: u64,
}

/// Snapshots for `audit state --at` on long logs; raise `FORMAT` when a field changes.
impl Snapshottable for ApprovalsView {
    const NAME: &'static str = "approvals-view";
    const FORMAT: u32 = 1;
}

impl Projection for ApprovalsView {
    type Error = DecodeError;

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), DecodeError> {
        let decoded =
            ApprovalsEvent::decode(&event.event_type, event.schema_version, &event.payload)?;
        match &decoded {
            ApprovalsEvent::UpdateApproved(pb::UpdateApproved {
                update_id, rule, ..
            })
            | ApprovalsEvent::UpdateDeclined(pb::UpdateDeclined {
                update_id, rule, ..
            }) => {
                if let Some(rule) = rule
                    && let Some(entry) = self.rules.get_mut(&rule.rule_id)
                {
                    entry.applied += 1;
                }
                self.apply_approval(update_id, event, &decoded);
            }
            ApprovalsEvent::ApprovalReset(pb::ApprovalReset { update_id, .. }) => {
                self.apply_approval(update_id, event, &decoded);
            }
            ApprovalsEvent::EulaAccepted(pb::EulaAccepted {
                eula_id,
                text_sha256,
            })
            | ApprovalsEvent::EulaDeclined(pb::EulaDeclined {
                eula_id,
                text_sha256,
            }) => {
                let entry = self.eulas.entry(eula_id.clone()).or_default();
                entry.state = evolve_eula(std::mem::take(&mut entry.state), &decoded);
                entry.stream_version = event.stream_version;
                entry.decided_by.insert(
                    text_sha256.clone(),
                    (event.metadata.actor.clone(), event.recorded_at),
                );
            }
            ApprovalsEvent::ApprovalRuleAdded(pb::ApprovalRuleAdded { rule_id, .. })
            | ApprovalsEvent::ApprovalRuleRemoved(pb::ApprovalRuleRemoved { rule_id }) => {
                let entry = self.rules.entry(rule_id.clone()).or_default();
                entry.state = evolve_rule(std::mem::take(&mut entry.state), &decoded);
                entry.stream_version = event.stream_version;
                if matches!(decoded, ApprovalsEvent::ApprovalRuleAdded(_)) {
                    entry.added_at = Some(event.recorded_at);
                }
            }
            ApprovalsEvent::CatalogEventObserved(observed) => {
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

impl ApprovalsView {
    fn apply_approval(&mut self, update_id: &str, event: &RecordedEvent, decoded: &ApprovalsEvent) {
        let entry = match self.approvals.get_mut(update_id) {
            Some(entry) => entry,
            None => self.approvals.entry(update_id.to_owned()).or_default(),
        };
        entry.state = evolve_approval(std::mem::take(&mut entry.state), decoded);
        entry.stream_version = event.stream_version;
        entry.actor.clone_from(&event.metadata.actor);
        entry.changed_at = Some(event.recorded_at);
    }

    /// Takes one catalog event into the update facts. Copies can arrive out of order when a delivery
    /// is retried, so an older revision never replaces a newer one.
    fn observe_catalog(
        &mut self,
        observed: &pb::CatalogEventObserved,
    ) -> Result<(), prost::DecodeError> {
        let payload = observed.payload.as_slice();
        match observed.event_type.as_str() {
            "UpdatePublished" => {
                let e = catalog::UpdatePublished::decode(payload)?;
                self.revise(e.update_id, 1, e.details.unwrap_or_default());
            }
            "UpdateRevised" => {
                let e = catalog::UpdateRevised::decode(payload)?;
                self.revise(e.update_id, e.revision, e.details.unwrap_or_default());
            }
            "UpdateSuperseded" => {
                let e = catalog::UpdateSuperseded::decode(payload)?;
                self.updates.entry(e.update_id).or_default().superseded_by = Some(e.superseded_by);
            }
            "UpdateExpired" => {
                let e = catalog::UpdateExpired::decode(payload)?;
                self.updates.entry(e.update_id).or_default().expired = true;
            }
            _ => {}
        }
        Ok(())
    }

    fn revise(&mut self, update_id: String, revision: u32, details: catalog::UpdateDetails) {
        let known = self.updates.entry(update_id.clone()).or_default();
        if revision <= known.revision {
            return;
        }
        if let Some((eula_id, digest)) = known.eula()
            && let Some(entry) = self.eulas.get_mut(eula_id)
            && let Some(updates) = entry.current.get_mut(digest)
        {
            updates.remove(&update_id);
        }
        known.revision = revision;
        known.details = details;
        if let Some((eula_id, digest)) = known.eula() {
            self.eulas
                .entry(eula_id.to_owned())
                .or_default()
                .current
                .entry(digest.to_owned())
                .or_default()
                .insert(update_id);
        }
    }

    /// What a command decides with about one update; `None` if the update is unknown.
    pub fn facts(&self, update_id: &str, running: &semver::Version) -> Option<UpdateFacts> {
        let known = self.updates.get(update_id).filter(|u| u.revision > 0)?;
        let declined_eula = known.eula().and_then(|(eula_id, digest)| {
            let decision = self.eulas.get(eula_id)?.state.decision(digest)?;
            (decision == EulaDecision::Declined).then(|| eula_id.to_owned())
        });
        Some(UpdateFacts {
            update_id: update_id.to_owned(),
            revision: known.revision,
            needs_newer_server: needs_newer_server(&known.details.min_server_version, running),
            declined_eula,
        })
    }

    /// The approval of an update (Undefined, version 0 if never decided).
    pub fn approval(&self, update_id: &str) -> ApprovalEntry {
        self.approvals.get(update_id).cloned().unwrap_or_default()
    }

    /// Known, unexpired updates the filter selects, in id order.
    pub fn select(&self, filter: &UpdateFilter) -> Vec<String> {
        self.updates
            .iter()
            .filter(|(_, u)| u.revision > 0 && !u.expired && matches(filter, &u.details))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Active rules, `(rule_id, entry)`, in the order they were added (rule ids are UUIDv7).
    pub fn active_rules(&self) -> impl Iterator<Item = (&String, &RuleEntry)> {
        self.rules.iter().filter(|(_, r)| r.state.is_active())
    }

    /// Active rules as `(rule_id, rule)`, for conflict checks.
    pub fn active_rule_list(&self) -> Vec<(String, ApprovalRule)> {
        self.active_rules()
            .map(|(id, r)| (id.clone(), r.state.rule.clone()))
            .collect()
    }

    /// An update's approval as the API shows it.
    pub fn approval_message(&self, update_id: &str, running: &semver::Version) -> pb::Approval {
        let known = self.updates.get(update_id).cloned().unwrap_or_default();
        let entry = self.approval(update_id);
        let (eula_id, eula_status) = match known.eula() {
            Some((eula_id, digest)) => (
                eula_id.to_owned(),
                self.eulas
                    .get(eula_id)
                    .map_or("not accepted", |e| e.status(digest))
                    .to_owned(),
            ),
            None => (String::new(), String::new()),
        };
        let decided = entry.state.status != ApprovalStatus::Undefined;
        pb::Approval {
            update_id: update_id.to_owned(),
            status: entry.state.status as i32,
            actor: if decided { entry.actor } else { String::new() },
            changed_at: if decided {
                entry.changed_at.map(|t| t.to_rfc3339()).unwrap_or_default()
            } else {
                String::new()
            },
            reason: if decided {
                entry.state.reason
            } else {
                String::new()
            },
            rule: entry.state.rule,
            title: known.details.title.clone(),
            revision: known.revision,
            needs_newer_server: needs_newer_server(&known.details.min_server_version, running)
                .is_some(),
            min_server_version: known.details.min_server_version,
            eula_id,
            eula_status,
        }
    }

    /// One entry per (EULA, current text), in id order.
    pub fn eula_messages(&self) -> Vec<pb::Eula> {
        self.eulas
            .iter()
            .flat_map(|(eula_id, entry)| {
                entry
                    .current
                    .iter()
                    .filter(|(_, updates)| !updates.is_empty())
                    .map(move |(digest, updates)| eula_message(eula_id, entry, digest, updates))
            })
            .collect()
    }

    pub fn rule_message(&self, rule_id: &str) -> Option<pb::ApprovalRuleEntry> {
        let entry = self.rules.get(rule_id)?;
        Some(pb::ApprovalRuleEntry {
            rule_id: rule_id.to_owned(),
            version: entry.state.version,
            rule: Some(entry.state.rule.clone()),
            applied: entry.applied,
        })
    }
}

/// One EULA text as the API shows it.
pub fn eula_message(
    eula_id: &str,
    entry: &EulaEntry,
    digest: &str,
    updates: &BTreeSet<String>,
) -> pb::Eula {
    let (actor, changed_at) = match (entry.state.decision(digest), entry.decided_by.get(digest)) {
        (Some(_), Some((actor, at))) => (actor.clone(), at.to_rfc3339()),
        _ => (String::new(), String::new()),
    };
    pb::Eula {
        eula_id: eula_id.to_owned(),
        text_sha256: digest.to_owned(),
        status: entry.status(digest).to_owned(),
        actor,
        changed_at,
        update_ids: updates.iter().cloned().collect(),
    }
}
