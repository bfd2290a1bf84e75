//! The consumer that copies the catalog's update events into the approvals log (so replaying that
//! log alone rebuilds what the service knows of each update) and, in the same transaction, lets the
//! auto-approval rules decide newly published or revised updates.

use chrono::{DateTime, Utc};
use patchbay_bus::{EventHandler, HandlerError, IncomingEvent};
use patchbay_eventstore::{ExpectedVersion, Transaction};
use patchbay_proto::approvals::v1::{self as pb, ApprovalStatus, RuleRef};
use patchbay_proto::catalog::v1 as catalog;
use prost::Message as _;

use crate::domain::{ApprovalCommand, decide_approval, matches};
use crate::events::{ApprovalsEvent, SCHEMA_VERSION};
use crate::service::{Approvals, approval_stream, expected};

/// Durable consumer name of the observer.
pub const CONSUMER: &str = "approvals-catalog";
/// The stream holding the approvals service's copy of the catalog events.
pub const STREAM: &str = "catalog-facts";

const OBSERVED: [&str; 4] = [
    "UpdatePublished",
    "UpdateRevised",
    "UpdateSuperseded",
    "UpdateExpired",
];

#[derive(Debug, Clone)]
pub struct CatalogObserver {
    approvals: Approvals,
}

impl CatalogObserver {
    /// The observer reads the rules and approvals from this service's view.
    pub fn new(approvals: Approvals) -> Self {
        Self { approvals }
    }
}

/// What a rule decided for an update: the events, and the approval stream version they go after.
struct RuleDecision {
    rule_id: String,
    events: Vec<ApprovalsEvent>,
    stream_version: u64,
}

impl EventHandler for CatalogObserver {
    async fn handle(
        &self,
        tx: &mut Transaction,
        incoming: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        let event = &incoming.event;
        if incoming.service != "catalog" || !OBSERVED.contains(&event.event_type.as_str()) {
            return Ok(());
        }
        let observed = ApprovalsEvent::CatalogEventObserved(pb::CatalogEventObserved {
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: event.payload.clone(),
            catalog_position: event.position.global_position,
        });
        let copy = incoming.follow_up(
            observed.event_type(),
            SCHEMA_VERSION,
            observed.encode_payload(),
        );
        tx.append(STREAM, ExpectedVersion::Any, &[copy]).await?;

        let undecodable = |e: prost::DecodeError| {
            HandlerError::Permanent(format!("{} does not decode: {e}", event.event_type))
        };
        let (update_id, revision, details) = match event.event_type.as_str() {
            "UpdatePublished" => {
                let e = catalog::UpdatePublished::decode(event.payload.as_slice())
                    .map_err(undecodable)?;
                (e.update_id, 1, e.details.unwrap_or_default())
            }
            "UpdateRevised" => {
                let e = catalog::UpdateRevised::decode(event.payload.as_slice())
                    .map_err(undecodable)?;
                (e.update_id, e.revision, e.details.unwrap_or_default())
            }
            _ => return Ok(()),
        };
        let Some(decision) = self.decide(&update_id, revision, &details, event.recorded_at) else {
            return Ok(());
        };
        let stream = approval_stream(&update_id);
        // The view may not have seen an approval this very transaction (an earlier event of the
        // batch) or another replica just wrote: retry once it has, rather than decide on old state.
        let stored = tx.stream_version(&stream).await?.unwrap_or(0);
        if stored != decision.stream_version {
            return Err(HandlerError::Transient(format!(
                "the approvals view has not caught up with {stream} yet (version {stored}); retrying"
            )));
        }
        let actor = format!("rule:{}", decision.rule_id);
        let events: Vec<_> = decision
            .events
            .iter()
            .map(|e| {
                incoming
                    .follow_up(e.event_type(), SCHEMA_VERSION, e.encode_payload())
                    .actor(actor.as_str())
            })
            .collect();
        tx.append(&stream, expected(decision.stream_version), &events)
            .await?;
        Ok(())
    }
}

impl CatalogObserver {
    /// The first active rule (oldest first) added before the catalog recorded the update's revision
    /// and matching it, if it decides anything: rules apply to updates that arrive after them.
    fn decide(
        &self,
        update_id: &str,
        revision: u32,
        details: &catalog::UpdateDetails,
        recorded_at: DateTime<Utc>,
    ) -> Option<RuleDecision> {
        let view = self.approvals.view();
        let (rule_id, rule) = view.active_rules().find(|(_, rule)| {
            rule.added_at.is_some_and(|added| added <= recorded_at)
                && matches(
                    rule.state
                        .rule
                        .filter
                        .as_ref()
                        .unwrap_or(&Default::default()),
                    details,
                )
        })?;
        let action = ApprovalStatus::try_from(rule.state.rule.action).ok()?;
        // The facts of this revision, which the view may not hold yet (its copy is in this transaction).
        let mut facts = view
            .facts(update_id, self.approvals.server_version())
            .unwrap_or_default();
        facts.update_id = update_id.to_owned();
        facts.revision = revision;
        facts.needs_newer_server = crate::domain::needs_newer_server(
            &details.min_server_version,
            self.approvals.server_version(),
        );
        facts.declined_eula = details.eula.as_ref().and_then(|eula| {
            let decision = view
                .eulas
                .get(&eula.eula_id)?
                .state
                .decision(&eula.text_sha256)?;
            (decision == crate::domain::EulaDecision::Declined).then(|| eula.eula_id.clone())
        });
        let entry = view.approval(update_id);
        let events = decide_approval(
            &entry.state,
            ApprovalCommand::ApplyRule {
                facts,
                action,
                rule: RuleRef {
                    rule_id: rule_id.clone(),
                    rule_version: rule.state.version,
                },
                reason: format!("auto-approval rule '{}'", rule.state.rule.name),
            },
        )
        .ok()?;
        if events.is_empty() {
            return None;
        }
        Some(RuleDecision {
            rule_id: rule_id.clone(),
            events,
            stream_version: entry.stream_version,
        })
    }
}
