//! The approvals service shell: approve, decline or reset updates (one by one or in bulk), accept or
//! decline EULAs, manage auto-approval rules; commands decide against the in-memory view and append
//! with the stream versions it knows.

use std::sync::{Arc, RwLockReadGuard};

use patchbay_eventstore::{
    EventMetadata, EventStore, EventStoreError, ExpectedVersion, LiveView, NewEvent, Positioned,
    StreamAppend, ViewError,
};
use patchbay_proto::approvals::v1::{self as pb, ApprovalRule, ApprovalStatus, UpdateFilter};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{
    ApprovalCommand, ApprovalError, EulaCommand, EulaDecision, RuleCommand, UpdateList,
    decide_approval, decide_eula, decide_rule, filter_is_empty, validate_filter,
};
use crate::events::{ApprovalsEvent, DecodeError};
use crate::view::{ApprovalsView, eula_message};

/// Approval streams appended per transaction in a bulk command: large enough that 100,000 updates
/// take a few dozen statements, small enough that a transaction stays short.
const BULK_CHUNK: usize = 5_000;
/// Retries of a chunk whose streams moved on under it (another replica or a rule wrote them).
const CONFLICT_RETRIES: usize = 5;
/// How long a command waits for the view to show what it committed, so the caller's next read does.
const VIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ApprovalsServiceError {
    #[error(transparent)]
    Domain(#[from] ApprovalError),
    #[error(transparent)]
    Store(#[from] EventStoreError),
    #[error("the approvals log holds an event this Patchbay cannot read: {0}")]
    Decode(#[from] DecodeError),
}

impl From<ViewError<DecodeError>> for ApprovalsServiceError {
    fn from(error: ViewError<DecodeError>) -> Self {
        match error {
            ViewError::Store(error) => ApprovalsServiceError::Store(error),
            ViewError::Apply(error) => ApprovalsServiceError::Decode(error),
        }
    }
}

/// Which updates a status change is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// These updates, each of which must be known.
    Ids(Vec<String>),
    /// Every known, unexpired update the filter matches; an empty filter needs `all`.
    Filter { filter: UpdateFilter, all: bool },
}

/// What a status change did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetApprovalOutcome {
    /// Updates whose status changed.
    pub changed: u64,
    /// Updates already in the requested status.
    pub unchanged: u64,
}

/// The approvals service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Approvals {
    view: LiveView<ApprovalsView>,
    /// The running Patchbay's version: updates that need a newer one cannot be approved.
    server_version: Arc<semver::Version>,
}

impl Approvals {
    /// Opens the service on its store (rebuilding the view from the log) for a server of `server_version`.
    pub async fn open(
        store: EventStore,
        server_version: semver::Version,
    ) -> Result<Self, ApprovalsServiceError> {
        Ok(Self {
            view: LiveView::open(store).await?,
            server_version: Arc::new(server_version),
        })
    }

    pub fn store(&self) -> &EventStore {
        self.view.store()
    }

    pub fn view(&self) -> RwLockReadGuard<'_, Positioned<ApprovalsView>> {
        self.view.read()
    }

    pub fn server_version(&self) -> &semver::Version {
        &self.server_version
    }

    pub async fn catch_up(&self) -> Result<(), ApprovalsServiceError> {
        Ok(self.view.catch_up().await?)
    }

    /// Keeps the view following the log (other replicas, the catalog observer) until `shutdown`.
    pub async fn follow(self, shutdown: CancellationToken) -> Result<(), ApprovalsServiceError> {
        Ok(self.view.follow(shutdown).await?)
    }

    /// Sets the status of the selected updates: all or nothing. An unknown id, or (when approving)
    /// an update that needs a newer server or whose EULA text was declined, fails the whole request
    /// before anything is appended. Updates already in the status are skipped, so a repeated bulk
    /// approval appends nothing.
    ///
    /// Appends go in chunks of [`BULK_CHUNK`] streams, each chunk one transaction at the stream
    /// versions the view knew; a chunk that conflicts is decided again after catching up. Every
    /// event of one call shares a correlation id, so the audit trail shows one bulk decision.
    pub async fn set_approval(
        &self,
        selection: Selection,
        status: ApprovalStatus,
        reason: &str,
        actor: &str,
    ) -> Result<SetApprovalOutcome, ApprovalsServiceError> {
        self.catch_up().await?;
        let ids = self.select(selection)?;
        let mut outcome = SetApprovalOutcome::default();
        let mut plan = self.plan(&ids, status, reason)?;
        outcome.unchanged = plan.unchanged;
        let metadata = command_metadata(actor);
        let mut done = 0;
        let mut attempt = 0;
        let mut last_written: Option<(String, u64)> = None;
        while done < plan.appends.len() {
            let end = (done + BULK_CHUNK).min(plan.appends.len());
            let chunk: Vec<StreamAppend> = plan.appends[done..end]
                .iter()
                .map(|(update_id, version, events)| {
                    StreamAppend::new(
                        approval_stream(update_id),
                        expected(*version),
                        to_new_events(events, &metadata),
                    )
                })
                .collect();
            let mut tx = self.store().begin().await?;
            match tx.append_streams(&chunk).await {
                Ok(results) => {
                    tx.commit().await?;
                    last_written = results
                        .last()
                        .map(|r| (plan.appends[end - 1].0.clone(), r.stream_version));
                    outcome.changed += (end - done) as u64;
                    done = end;
                }
                Err(error) if retryable(&error) && attempt < CONFLICT_RETRIES => {
                    tx.rollback().await?;
                    attempt += 1;
                    // Another writer got there first, or the view is held back by a transaction
                    // elsewhere on the database server: give it a moment, catch up, decide again
                    // for the updates not stored yet.
                    tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
                    self.catch_up().await?;
                    let rest: Vec<String> = plan.appends[done..]
                        .iter()
                        .map(|(id, _, _)| id.clone())
                        .collect();
                    plan = self.plan(&rest, status, reason)?;
                    outcome.unchanged += plan.unchanged;
                    done = 0;
                }
                Err(error) => {
                    tx.rollback().await?;
                    return Err(error.into());
                }
            }
        }
        // Chunks commit in order, so once the view shows the last one it shows them all.
        match last_written {
            Some((update_id, version)) => {
                self.wait_for(|view| view.approval(&update_id).stream_version >= version)
                    .await?
            }
            None => self.catch_up().await?,
        }
        Ok(outcome)
    }

    /// Catches up until `reached` holds: on PostgreSQL a transaction open elsewhere on the server
    /// holds the global order back for a moment, and a command should return once its own write is
    /// visible. Gives up quietly after [`VIEW_WAIT`]; the write is committed either way.
    async fn wait_for(
        &self,
        reached: impl Fn(&ApprovalsView) -> bool,
    ) -> Result<(), ApprovalsServiceError> {
        self.view.catch_up_until(reached, VIEW_WAIT).await?;
        Ok(())
    }

    /// The updates a selection names, validated: every id known, an empty filter only with `all`.
    fn select(&self, selection: Selection) -> Result<Vec<String>, ApprovalsServiceError> {
        let view = self.view();
        match selection {
            Selection::Ids(mut ids) => {
                if ids.is_empty() {
                    return Err(ApprovalError::InvalidInput(
                        "name the updates to change, or select them with a filter".to_owned(),
                    )
                    .into());
                }
                ids.sort();
                ids.dedup();
                let unknown: Vec<String> = ids
                    .iter()
                    .filter(|id| {
                        view.updates
                            .get(id.as_str())
                            .is_none_or(|u| u.revision == 0)
                    })
                    .cloned()
                    .collect();
                if !unknown.is_empty() {
                    return Err(ApprovalError::UnknownUpdates {
                        updates: UpdateList(unknown),
                    }
                    .into());
                }
                Ok(ids)
            }
            Selection::Filter { filter, all } => {
                validate_filter(&filter)?;
                if filter_is_empty(&filter) && !all {
                    return Err(ApprovalError::WouldSelectAll.into());
                }
                Ok(view.select(&filter))
            }
        }
    }

    /// Decides every update against the view: the appends to make, or the merged errors.
    fn plan(
        &self,
        ids: &[String],
        status: ApprovalStatus,
        reason: &str,
    ) -> Result<Plan, ApprovalsServiceError> {
        let view = self.view();
        let mut plan = Plan::default();
        let mut errors = Vec::new();
        for id in ids {
            let Some(facts) = view.facts(id, &self.server_version) else {
                errors.push(ApprovalError::UnknownUpdates {
                    updates: UpdateList::one(id),
                });
                continue;
            };
            let entry = view.approvals.get(id.as_str());
            let state = entry.map(|e| e.state.clone()).unwrap_or_default();
            let command = ApprovalCommand::Set {
                facts,
                status,
                reason: reason.to_owned(),
            };
            match decide_approval(&state, command) {
                Ok(events) if events.is_empty() => plan.unchanged += 1,
                Ok(events) => {
                    plan.appends
                        .push((id.clone(), entry.map_or(0, |e| e.stream_version), events))
                }
                Err(error) => errors.push(error),
            }
        }
        match ApprovalError::merge(errors) {
            Some(error) => Err(error.into()),
            None => Ok(plan),
        }
    }

    /// The approval of each named update (every known update when `update_ids` is empty), in id
    /// order, optionally only those in `status`.
    pub async fn list_approvals(
        &self,
        update_ids: &[String],
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<pb::Approval>, ApprovalsServiceError> {
        self.catch_up().await?;
        let view = self.view();
        let wanted = |id: &str| {
            status.is_none_or(|s| {
                view.approvals
                    .get(id)
                    .map_or(ApprovalStatus::Undefined, |e| e.state.status)
                    == s
            })
        };
        if update_ids.is_empty() {
            return Ok(view
                .updates
                .iter()
                .filter(|(id, u)| u.revision > 0 && wanted(id))
                .map(|(id, _)| view.approval_message(id, &self.server_version))
                .collect());
        }
        let unknown: Vec<String> = update_ids
            .iter()
            .filter(|id| {
                view.updates
                    .get(id.as_str())
                    .is_none_or(|u| u.revision == 0)
            })
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(ApprovalError::UnknownUpdates {
                updates: UpdateList(unknown),
            }
            .into());
        }
        Ok(update_ids
            .iter()
            .filter(|id| wanted(id))
            .map(|id| view.approval_message(id, &self.server_version))
            .collect())
    }

    /// Accepts or declines the EULA's current text(s): the decision is recorded against each text
    /// digest that current revisions reference, so a later revision with a new text is not covered.
    pub async fn set_eula(
        &self,
        eula_id: &str,
        accept: bool,
        actor: &str,
    ) -> Result<pb::Eula, ApprovalsServiceError> {
        if eula_id.trim().is_empty() {
            return Err(ApprovalError::InvalidInput(
                "name the EULA to accept or decline; list them with `patchbay eula list`"
                    .to_owned(),
            )
            .into());
        }
        let decision = if accept {
            EulaDecision::Accepted
        } else {
            EulaDecision::Declined
        };
        let stream = format!("eula-{eula_id}");
        for attempt in 0.. {
            self.catch_up().await?;
            let (state, version, digests) = {
                let view = self.view();
                let entry = view.eulas.get(eula_id).cloned().unwrap_or_default();
                let digests = entry.current_digests();
                (entry.state, entry.stream_version, digests)
            };
            let events = decide_eula(
                &state,
                EulaCommand {
                    eula_id: eula_id.to_owned(),
                    decision,
                    current_digests: digests,
                },
            )?;
            if events.is_empty() {
                break;
            }
            let metadata = command_metadata(actor);
            match self
                .store()
                .append(
                    &stream,
                    expected(version),
                    &to_new_events(&events, &metadata),
                )
                .await
            {
                Ok(_) => break,
                Err(error) if retryable(&error) && attempt < CONFLICT_RETRIES => continue,
                Err(error) => return Err(error.into()),
            }
        }
        self.catch_up().await?;
        let view = self.view();
        let entry = view.eulas.get(eula_id).cloned().unwrap_or_default();
        let (digest, updates) = entry
            .current
            .iter()
            .find(|(_, updates)| !updates.is_empty())
            .map(|(digest, updates)| (digest.clone(), updates.clone()))
            .unwrap_or_default();
        Ok(eula_message(eula_id, &entry, &digest, &updates))
    }

    /// Every EULA text current revisions reference, with its acceptance status.
    pub async fn list_eulas(&self) -> Result<Vec<pb::Eula>, ApprovalsServiceError> {
        self.catch_up().await?;
        Ok(self.view().eula_messages())
    }

    /// Adds an auto-approval rule under a fresh id. The rule decides updates that arrive (are
    /// published or revised in the catalog) after it was added, and only while their status is
    /// Undefined; it never approves one that needs a newer server or whose EULA was declined.
    pub async fn add_rule(
        &self,
        rule: ApprovalRule,
        actor: &str,
    ) -> Result<pb::ApprovalRuleEntry, ApprovalsServiceError> {
        self.catch_up().await?;
        let rule_id = Uuid::now_v7().to_string();
        let active = self.view().active_rule_list();
        let events = decide_rule(
            &Default::default(),
            RuleCommand::Add {
                rule_id: rule_id.clone(),
                rule,
                active,
            },
        )?;
        let metadata = command_metadata(actor);
        self.store()
            .append(
                &rule_stream(&rule_id),
                ExpectedVersion::NoStream,
                &to_new_events(&events, &metadata),
            )
            .await?;
        self.wait_for(|view| view.rules.contains_key(&rule_id))
            .await?;
        self.rule_entry(&rule_id)
    }

    /// The active rules, oldest first.
    pub async fn list_rules(&self) -> Result<Vec<pb::ApprovalRuleEntry>, ApprovalsServiceError> {
        self.catch_up().await?;
        let view = self.view();
        Ok(view
            .active_rules()
            .filter_map(|(id, _)| view.rule_message(id))
            .collect())
    }

    /// Removes a rule; what it already decided stays decided. Returns the removed rule.
    pub async fn remove_rule(
        &self,
        rule_id: &str,
        actor: &str,
    ) -> Result<pb::ApprovalRuleEntry, ApprovalsServiceError> {
        self.catch_up().await?;
        let (state, version) = {
            let view = self.view();
            let entry = view.rules.get(rule_id).cloned().unwrap_or_default();
            (entry.state, entry.stream_version)
        };
        let events = decide_rule(
            &state,
            RuleCommand::Remove {
                rule_id: rule_id.to_owned(),
            },
        )?;
        let metadata = command_metadata(actor);
        let written = self
            .store()
            .append(
                &rule_stream(rule_id),
                expected(version),
                &to_new_events(&events, &metadata),
            )
            .await?
            .stream_version;
        self.wait_for(|view| {
            view.rules
                .get(rule_id)
                .is_some_and(|r| r.stream_version >= written)
        })
        .await?;
        self.rule_entry(rule_id)
    }

    fn rule_entry(&self, rule_id: &str) -> Result<pb::ApprovalRuleEntry, ApprovalsServiceError> {
        self.view()
            .rule_message(rule_id)
            .ok_or_else(|| ApprovalError::UnknownRule(rule_id.to_owned()).into())
    }
}

/// The appends a bulk command will make: `(update_id, stream version seen, events)`.
#[derive(Debug, Default)]
struct Plan {
    appends: Vec<(String, u64, Vec<ApprovalsEvent>)>,
    unchanged: u64,
}

/// Conflicts, and deadlocks or serialization failures between concurrent bulk appenders.
fn retryable(error: &EventStoreError) -> bool {
    matches!(error, EventStoreError::Conflict { .. }) || error.is_transient()
}

pub(crate) fn approval_stream(update_id: &str) -> String {
    format!("approval-{update_id}")
}

fn rule_stream(rule_id: &str) -> String {
    format!("approvalrule-{rule_id}")
}

pub(crate) fn expected(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    }
}

/// The metadata every event of one command carries: its actor, the current trace context, and one
/// correlation id for the whole command.
fn command_metadata(actor: &str) -> EventMetadata {
    patchbay_bus::stamped(NewEvent::new("Command", 1, Vec::new()), actor).metadata
}

fn to_new_events(events: &[ApprovalsEvent], metadata: &EventMetadata) -> Vec<NewEvent> {
    events
        .iter()
        .map(|event| {
            let mut new = event.to_new_event();
            new.metadata = metadata.clone();
            new
        })
        .collect()
}
