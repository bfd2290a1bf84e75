//! The auto-approval rule aggregate (`approvalrule-<rule_id>` stream): added once, removed once. A
//! rule decides updates that arrive (are published or revised) after it was added, never earlier ones.

use patchbay_proto::approvals::v1::{self as pb, ApprovalRule, ApprovalStatus};

use super::{ApprovalError, rules_conflict, validate_filter};
use crate::events::ApprovalsEvent;

/// Longest rule name accepted.
const MAX_NAME: usize = 200;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuleState {
    /// Set once the rule was added.
    pub rule_id: Option<String>,
    pub rule: ApprovalRule,
    pub version: u32,
    pub removed: bool,
}

impl RuleState {
    pub fn is_active(&self) -> bool {
        self.rule_id.is_some() && !self.removed
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleCommand {
    Add {
        rule_id: String,
        rule: ApprovalRule,
        /// Every active rule, `(rule_id, rule)`: a new rule must not contradict any of them.
        active: Vec<(String, ApprovalRule)>,
    },
    Remove {
        rule_id: String,
    },
}

pub fn decide_rule(
    state: &RuleState,
    command: RuleCommand,
) -> Result<Vec<ApprovalsEvent>, ApprovalError> {
    match command {
        RuleCommand::Add {
            rule_id,
            mut rule,
            active,
        } => {
            rule.name = rule.name.trim().to_owned();
            if rule.name.is_empty() || rule.name.chars().count() > MAX_NAME {
                return Err(ApprovalError::InvalidInput(format!(
                    "a rule needs a name of 1 to {MAX_NAME} characters (--name)"
                )));
            }
            if rule.action != ApprovalStatus::Approved as i32
                && rule.action != ApprovalStatus::Declined as i32
            {
                return Err(ApprovalError::InvalidInput(
                    "a rule's action must be approve or decline (--action)".to_owned(),
                ));
            }
            validate_filter(&rule.filter.clone().unwrap_or_default())?;
            if state.rule_id.is_some() {
                return if state.rule == rule && !state.removed {
                    Ok(vec![])
                } else {
                    Err(ApprovalError::InvalidInput(format!(
                        "rule id '{rule_id}' is already taken; add the rule without an id to get a fresh one"
                    )))
                };
            }
            if let Some((other_id, other)) = active
                .iter()
                .find(|(id, other)| *id != rule_id && rules_conflict(&rule, other))
            {
                return Err(ApprovalError::RuleConflict {
                    other_id: other_id.clone(),
                    other_name: other.name.clone(),
                });
            }
            Ok(vec![ApprovalsEvent::ApprovalRuleAdded(
                pb::ApprovalRuleAdded {
                    rule_id,
                    version: state.version + 1,
                    rule: Some(rule),
                },
            )])
        }
        RuleCommand::Remove { rule_id } => {
            if !state.is_active() {
                return Err(ApprovalError::UnknownRule(rule_id));
            }
            Ok(vec![ApprovalsEvent::ApprovalRuleRemoved(
                pb::ApprovalRuleRemoved { rule_id },
            )])
        }
    }
}

pub fn evolve_rule(mut state: RuleState, event: &ApprovalsEvent) -> RuleState {
    match event {
        ApprovalsEvent::ApprovalRuleAdded(e) => {
            state.rule_id = Some(e.rule_id.clone());
            state.rule = e.rule.clone().unwrap_or_default();
            state.version = e.version;
            state.removed = false;
        }
        ApprovalsEvent::ApprovalRuleRemoved(_) => state.removed = true,
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_proto::approvals::v1::UpdateFilter;

    fn rule(name: &str, action: ApprovalStatus, vendor: &str) -> ApprovalRule {
        ApprovalRule {
            name: name.into(),
            action: action as i32,
            filter: Some(UpdateFilter {
                vendors: vec![vendor.into()],
                ..Default::default()
            }),
        }
    }

    fn add(rule_id: &str, rule: ApprovalRule, active: Vec<(String, ApprovalRule)>) -> RuleCommand {
        RuleCommand::Add {
            rule_id: rule_id.into(),
            rule,
            active,
        }
    }

    #[test]
    fn a_valid_rule_is_added_at_version_1_and_can_be_removed_once() {
        let events = decide_rule(
            &RuleState::default(),
            add(
                "r1",
                rule(" debian security ", ApprovalStatus::Approved, "Debian"),
                vec![],
            ),
        )
        .unwrap();
        let state = events.iter().fold(RuleState::default(), evolve_rule);
        assert!(state.is_active());
        assert_eq!(
            (state.version, state.rule.name.as_str()),
            (1, "debian security")
        );
        let removed = decide_rule(
            &state,
            RuleCommand::Remove {
                rule_id: "r1".into(),
            },
        )
        .unwrap();
        let state = removed.iter().fold(state, evolve_rule);
        assert!(!state.is_active());
        assert_eq!(
            decide_rule(
                &state,
                RuleCommand::Remove {
                    rule_id: "r1".into()
                }
            )
            .unwrap_err(),
            ApprovalError::UnknownRule("r1".into())
        );
    }

    #[test]
    fn a_rule_without_a_name_or_with_an_undefined_action_is_refused() {
        for bad in [
            rule("  ", ApprovalStatus::Approved, "Debian"),
            rule("reset all", ApprovalStatus::Undefined, "Debian"),
        ] {
            assert!(matches!(
                decide_rule(&RuleState::default(), add("r", bad, vec![])),
                Err(ApprovalError::InvalidInput(_))
            ));
        }
    }

    #[test]
    fn a_rule_contradicting_an_active_one_is_refused_naming_it() {
        let existing = vec![(
            "r1".to_owned(),
            rule("approve debian", ApprovalStatus::Approved, "Debian"),
        )];
        let error = decide_rule(
            &RuleState::default(),
            add(
                "r2",
                rule("decline debian", ApprovalStatus::Declined, "debian"),
                existing.clone(),
            ),
        )
        .unwrap_err();
        assert_eq!(
            error,
            ApprovalError::RuleConflict {
                other_id: "r1".into(),
                other_name: "approve debian".into()
            }
        );
        assert!(error.to_string().contains("approve debian"));
        // Another vendor, or the same action, is fine.
        assert!(
            decide_rule(
                &RuleState::default(),
                add(
                    "r3",
                    rule("no ms", ApprovalStatus::Declined, "Microsoft"),
                    existing.clone()
                )
            )
            .is_ok()
        );
        assert!(
            decide_rule(
                &RuleState::default(),
                add(
                    "r4",
                    rule("more", ApprovalStatus::Approved, "Debian"),
                    existing
                )
            )
            .is_ok()
        );
    }
}
