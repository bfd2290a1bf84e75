//! The approval aggregate (`approval-<update_id>` stream): Undefined, Approved or Declined, by whom
//! (a person, or an auto-approval rule) and for which catalog revision.

use patchbay_proto::approvals::v1::{self as pb, ApprovalStatus, RuleRef};

use super::{ApprovalError, ServerRequirement, UpdateList};
use crate::events::ApprovalsEvent;

/// What the log says about one update's approval.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApprovalState {
    pub status: ApprovalStatus,
    /// The catalog revision the current status was given for (0 while Undefined).
    pub revision: u32,
    pub reason: String,
    /// The rule that set the current status, if a rule did.
    pub rule: Option<RuleRef>,
}

/// What the service knows of an update when it decides, gathered from its view of the catalog.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateFacts {
    pub update_id: String,
    /// The current catalog revision.
    pub revision: u32,
    /// Set when the update needs a newer Patchbay server than the running one.
    pub needs_newer_server: Option<ServerRequirement>,
    /// The update's EULA, when its current text was declined.
    pub declined_eula: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalCommand {
    /// A person sets the status (Undefined resets it).
    Set {
        facts: UpdateFacts,
        status: ApprovalStatus,
        reason: String,
    },
    /// An auto-approval rule matched a newly published or revised update: it only ever decides an
    /// update nobody has decided yet, and never one it may not approve.
    ApplyRule {
        facts: UpdateFacts,
        action: ApprovalStatus,
        rule: RuleRef,
        reason: String,
    },
}

pub fn decide_approval(
    state: &ApprovalState,
    command: ApprovalCommand,
) -> Result<Vec<ApprovalsEvent>, ApprovalError> {
    match command {
        ApprovalCommand::Set {
            facts,
            status,
            reason,
        } => {
            if status == state.status {
                // Re-running a bulk approval appends nothing.
                return Ok(vec![]);
            }
            if status == ApprovalStatus::Approved {
                approvable(&facts)?;
            }
            Ok(vec![status_event(facts, status, reason, None)])
        }
        ApprovalCommand::ApplyRule {
            facts,
            action,
            rule,
            reason,
        } => {
            let may = match action {
                ApprovalStatus::Approved => approvable(&facts).is_ok(),
                ApprovalStatus::Declined => true,
                ApprovalStatus::Undefined => false,
            };
            if state.status != ApprovalStatus::Undefined || !may {
                return Ok(vec![]);
            }
            Ok(vec![status_event(facts, action, reason, Some(rule))])
        }
    }
}

/// Whether the update may be approved on this server, with its EULA.
fn approvable(facts: &UpdateFacts) -> Result<(), ApprovalError> {
    if let Some(requirement) = &facts.needs_newer_server {
        return Err(ApprovalError::NeedsNewerServer {
            updates: UpdateList::one(&facts.update_id),
            required: requirement.required.clone(),
            running: requirement.running.clone(),
            unparsable: requirement.unparsable,
        });
    }
    if let Some(eula_id) = &facts.declined_eula {
        return Err(ApprovalError::EulaDeclined {
            eula_id: eula_id.clone(),
            updates: UpdateList::one(&facts.update_id),
        });
    }
    Ok(())
}

fn status_event(
    facts: UpdateFacts,
    status: ApprovalStatus,
    reason: String,
    rule: Option<RuleRef>,
) -> ApprovalsEvent {
    let update_id = facts.update_id;
    match status {
        ApprovalStatus::Approved => ApprovalsEvent::UpdateApproved(pb::UpdateApproved {
            update_id,
            reason,
            rule,
            revision: facts.revision,
        }),
        ApprovalStatus::Declined => ApprovalsEvent::UpdateDeclined(pb::UpdateDeclined {
            update_id,
            reason,
            rule,
            revision: facts.revision,
        }),
        ApprovalStatus::Undefined => {
            ApprovalsEvent::ApprovalReset(pb::ApprovalReset { update_id, reason })
        }
    }
}

pub fn evolve_approval(mut state: ApprovalState, event: &ApprovalsEvent) -> ApprovalState {
    match event {
        ApprovalsEvent::UpdateApproved(e) => {
            state = ApprovalState {
                status: ApprovalStatus::Approved,
                revision: e.revision,
                reason: e.reason.clone(),
                rule: e.rule.clone(),
            };
        }
        ApprovalsEvent::UpdateDeclined(e) => {
            state = ApprovalState {
                status: ApprovalStatus::Declined,
                revision: e.revision,
                reason: e.reason.clone(),
                rule: e.rule.clone(),
            };
        }
        ApprovalsEvent::ApprovalReset(e) => {
            state = ApprovalState {
                reason: e.reason.clone(),
                ..ApprovalState::default()
            };
        }
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> UpdateFacts {
        UpdateFacts {
            update_id: "deb:openssl:3.0.17:amd64".into(),
            revision: 2,
            ..Default::default()
        }
    }

    fn set(status: ApprovalStatus) -> ApprovalCommand {
        ApprovalCommand::Set {
            facts: facts(),
            status,
            reason: "tested in staging".into(),
        }
    }

    fn rule(action: ApprovalStatus, facts: UpdateFacts) -> ApprovalCommand {
        ApprovalCommand::ApplyRule {
            facts,
            action,
            rule: RuleRef {
                rule_id: "r1".into(),
                rule_version: 1,
            },
            reason: "auto-approval rule 'security'".into(),
        }
    }

    fn given(commands: Vec<ApprovalCommand>) -> ApprovalState {
        commands
            .into_iter()
            .fold(ApprovalState::default(), |state, command| {
                let events = decide_approval(&state, command).unwrap();
                events.iter().fold(state, evolve_approval)
            })
    }

    #[test]
    fn approve_decline_and_reset_record_status_revision_and_reason() {
        let approved = given(vec![set(ApprovalStatus::Approved)]);
        assert_eq!(
            (approved.status, approved.revision, approved.reason.as_str()),
            (ApprovalStatus::Approved, 2, "tested in staging")
        );
        let declined = given(vec![
            set(ApprovalStatus::Approved),
            set(ApprovalStatus::Declined),
        ]);
        assert_eq!(declined.status, ApprovalStatus::Declined);
        let reset = given(vec![
            set(ApprovalStatus::Declined),
            set(ApprovalStatus::Undefined),
        ]);
        assert_eq!(reset.status, ApprovalStatus::Undefined);
        assert!(matches!(
            &decide_approval(&declined, set(ApprovalStatus::Undefined)).unwrap()[..],
            [ApprovalsEvent::ApprovalReset(_)]
        ));
    }

    #[test]
    fn setting_the_current_status_again_appends_nothing() {
        let approved = given(vec![set(ApprovalStatus::Approved)]);
        assert!(
            decide_approval(&approved, set(ApprovalStatus::Approved))
                .unwrap()
                .is_empty()
        );
        assert!(
            decide_approval(&ApprovalState::default(), set(ApprovalStatus::Undefined))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_update_needing_a_newer_server_cannot_be_approved_but_can_be_declined() {
        let newer = UpdateFacts {
            needs_newer_server: Some(ServerRequirement {
                required: "9.0.0".into(),
                unparsable: false,
                running: "0.1.0".into(),
            }),
            ..facts()
        };
        let approve = ApprovalCommand::Set {
            facts: newer.clone(),
            status: ApprovalStatus::Approved,
            reason: String::new(),
        };
        let error = decide_approval(&ApprovalState::default(), approve).unwrap_err();
        assert!(
            error.to_string().contains("Upgrade Patchbay to 9.0.0"),
            "{error}"
        );
        let decline = ApprovalCommand::Set {
            facts: newer.clone(),
            status: ApprovalStatus::Declined,
            reason: String::new(),
        };
        assert_eq!(
            decide_approval(&ApprovalState::default(), decline)
                .unwrap()
                .len(),
            1
        );
        assert!(
            decide_approval(
                &ApprovalState::default(),
                rule(ApprovalStatus::Approved, newer)
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn an_update_whose_eula_was_declined_cannot_be_approved() {
        let declined = UpdateFacts {
            declined_eula: Some("eula-7".into()),
            ..facts()
        };
        let approve = ApprovalCommand::Set {
            facts: declined,
            status: ApprovalStatus::Approved,
            reason: String::new(),
        };
        let error = decide_approval(&ApprovalState::default(), approve).unwrap_err();
        assert!(
            error.to_string().contains("patchbay eula accept eula-7"),
            "{error}"
        );
    }

    #[test]
    fn a_rule_decides_only_undecided_updates_and_records_itself() {
        let events = decide_approval(
            &ApprovalState::default(),
            rule(ApprovalStatus::Declined, facts()),
        )
        .unwrap();
        let state = events
            .iter()
            .fold(ApprovalState::default(), evolve_approval);
        assert_eq!(state.status, ApprovalStatus::Declined);
        assert_eq!(
            state
                .rule
                .as_ref()
                .map(|r| (r.rule_id.as_str(), r.rule_version)),
            Some(("r1", 1))
        );
        let by_hand = given(vec![set(ApprovalStatus::Declined)]);
        assert!(
            decide_approval(&by_hand, rule(ApprovalStatus::Approved, facts()))
                .unwrap()
                .is_empty()
        );
        let reset = given(vec![
            set(ApprovalStatus::Approved),
            set(ApprovalStatus::Undefined),
        ]);
        assert_eq!(
            decide_approval(&reset, rule(ApprovalStatus::Approved, facts()))
                .unwrap()
                .len(),
            1
        );
    }
}
