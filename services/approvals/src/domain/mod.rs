//! Pure approvals logic: `decide(state, command) -> events` and `evolve(state, event) -> state` for
//! approvals, EULAs and auto-approval rules, plus rule filter matching and conflict detection.

mod approval;
mod eula;
mod filter;
mod rule;
mod server_version;

use std::fmt;

pub use approval::{ApprovalCommand, ApprovalState, UpdateFacts, decide_approval, evolve_approval};
pub use eula::{EulaCommand, EulaDecision, EulaState, decide_eula, evolve_eula};
pub use filter::{filter_is_empty, filters_overlap, matches, rules_conflict, validate_filter};
pub use rule::{RuleCommand, RuleState, decide_rule, evolve_rule};
pub use server_version::{ServerRequirement, needs_newer_server};

/// How many ids an error message names before it says "and N more".
const NAMED_IN_MESSAGES: usize = 5;

/// Update ids an error is about: the first few are named, the rest counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateList(pub Vec<String>);

impl UpdateList {
    pub fn one(id: impl Into<String>) -> Self {
        Self(vec![id.into()])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for UpdateList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named: Vec<&str> = self
            .0
            .iter()
            .take(NAMED_IN_MESSAGES)
            .map(String::as_str)
            .collect();
        f.write_str(&named.join(", "))?;
        if self.0.len() > NAMED_IN_MESSAGES {
            write!(f, " and {} more", self.0.len() - NAMED_IN_MESSAGES)?;
        }
        Ok(())
    }
}

/// `1 update` / `3 updates`.
fn count_updates(count: usize) -> String {
    if count == 1 {
        "1 update".to_owned()
    } else {
        format!("{count} updates")
    }
}

/// `1 update needs` / `3 updates need`.
fn updates_need(count: usize) -> String {
    if count == 1 {
        "1 update needs".to_owned()
    } else {
        format!("{count} updates need")
    }
}

/// What an approvals command can fail with; each says what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("{0}")]
    InvalidInput(String),
    #[error(
        "{} unknown to the approvals service: {updates}; nothing was changed. Check the ids with `patchbay updates list` (a newly imported update reaches approvals a moment after the import)",
        count_updates(.updates.len())
    )]
    UnknownUpdates { updates: UpdateList },
    #[error(
        "{} a newer Patchbay server than this one ({running}): {updates}; nothing was changed. Upgrade Patchbay to {required} or later to approve them, or leave them out{}",
        updates_need(.updates.len()),
        if *.unparsable { " (an unparsable minimum version is treated as needing a newer server)" } else { "" }
    )]
    NeedsNewerServer {
        updates: UpdateList,
        /// The highest version any of them requires, as the catalog states it.
        required: String,
        running: String,
        /// Some minimum version could not be parsed.
        unparsable: bool,
    },
    #[error(
        "{} EULA '{eula_id}', whose current text was declined: {updates}; nothing was changed: accept EULA {eula_id} first: patchbay eula accept {eula_id}",
        updates_need(.updates.len())
    )]
    EulaDeclined {
        eula_id: String,
        updates: UpdateList,
    },
    #[error(
        "the filter is empty and would select every update; pass --all (all = true) if that is what you mean"
    )]
    WouldSelectAll,
    #[error(
        "EULA '{0}' is not referenced by any update the approvals service knows; list EULAs with `patchbay eula list`"
    )]
    UnknownEula(String),
    #[error("approval rule '{0}' does not exist; list rules with `patchbay approval-rules list`")]
    UnknownRule(String),
    #[error(
        "the rule conflicts with rule '{other_name}' ({other_id}): one approves and the other declines updates both can match; narrow one filter, or remove it with `patchbay approval-rules remove {other_id}`"
    )]
    RuleConflict {
        other_id: String,
        other_name: String,
    },
}

impl ApprovalError {
    /// Merges the per-update errors of a bulk command into one error per kind (the first kind seen
    /// wins), so a request that fails names every update that failed the same way.
    pub fn merge(errors: Vec<ApprovalError>) -> Option<ApprovalError> {
        let mut merged: Option<ApprovalError> = None;
        for error in errors {
            merged = Some(match (merged, error) {
                (None, error) => error,
                (
                    Some(ApprovalError::UnknownUpdates { mut updates }),
                    ApprovalError::UnknownUpdates { updates: more },
                ) => {
                    updates.0.extend(more.0);
                    ApprovalError::UnknownUpdates { updates }
                }
                (
                    Some(ApprovalError::NeedsNewerServer {
                        mut updates,
                        required,
                        running,
                        unparsable,
                    }),
                    ApprovalError::NeedsNewerServer {
                        updates: more,
                        required: other,
                        unparsable: other_unparsable,
                        ..
                    },
                ) => {
                    updates.0.extend(more.0);
                    ApprovalError::NeedsNewerServer {
                        updates,
                        required: server_version::higher(&required, &other),
                        running,
                        unparsable: unparsable || other_unparsable,
                    }
                }
                (
                    Some(ApprovalError::EulaDeclined {
                        eula_id,
                        mut updates,
                    }),
                    ApprovalError::EulaDeclined {
                        eula_id: other,
                        updates: more,
                    },
                ) if eula_id == other => {
                    updates.0.extend(more.0);
                    ApprovalError::EulaDeclined { eula_id, updates }
                }
                (Some(first), _) => first,
            });
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_first_few_updates_and_count_the_rest() {
        let ids = (1..=8).map(|i| format!("u{i}")).collect();
        let message = ApprovalError::UnknownUpdates {
            updates: UpdateList(ids),
        }
        .to_string();
        assert!(message.starts_with("8 updates unknown"), "{message}");
        assert!(
            message.contains("u1, u2, u3, u4, u5 and 3 more"),
            "{message}"
        );
    }

    #[test]
    fn merged_errors_keep_the_highest_required_version() {
        let newer = |id: &str, required: &str| ApprovalError::NeedsNewerServer {
            updates: UpdateList::one(id),
            required: required.into(),
            running: "0.1.0".into(),
            unparsable: false,
        };
        let merged = ApprovalError::merge(vec![
            newer("a", "1.2.0"),
            newer("b", "2.0.0"),
            newer("c", "1.9.9"),
        ])
        .unwrap();
        let ApprovalError::NeedsNewerServer {
            updates, required, ..
        } = &merged
        else {
            panic!("{merged:?}")
        };
        assert_eq!((updates.len(), required.as_str()), (3, "2.0.0"));
        assert!(
            merged
                .to_string()
                .contains("Upgrade Patchbay to 2.0.0 or later")
        );
    }
}
