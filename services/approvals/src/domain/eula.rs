//! The EULA aggregate (`eula-<eula_id>` stream): acceptance or refusal of each text (by its SHA-256),
//! so a revision that changes the text needs a new acceptance.

use std::collections::BTreeMap;

use patchbay_proto::approvals::v1 as pb;

use super::ApprovalError;
use crate::events::ApprovalsEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EulaDecision {
    Accepted,
    Declined,
}

impl EulaDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            EulaDecision::Accepted => "accepted",
            EulaDecision::Declined => "declined",
        }
    }
}

/// What the log says about one EULA: the decision on each text digest ever decided.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EulaState {
    pub decisions: BTreeMap<String, EulaDecision>,
}

impl EulaState {
    /// The decision on the text with this digest; `None` means not accepted (yet).
    pub fn decision(&self, text_sha256: &str) -> Option<EulaDecision> {
        self.decisions.get(text_sha256).copied()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EulaCommand {
    pub eula_id: String,
    pub decision: EulaDecision,
    /// The digests of the texts the updates' current revisions reference (from the catalog facts):
    /// a decision is about the text the administrator can read now.
    pub current_digests: Vec<String>,
}

pub fn decide_eula(
    state: &EulaState,
    command: EulaCommand,
) -> Result<Vec<ApprovalsEvent>, ApprovalError> {
    if command.current_digests.is_empty() {
        return Err(ApprovalError::UnknownEula(command.eula_id));
    }
    Ok(command
        .current_digests
        .into_iter()
        .filter(|digest| state.decision(digest) != Some(command.decision))
        .map(|text_sha256| {
            let eula_id = command.eula_id.clone();
            match command.decision {
                EulaDecision::Accepted => ApprovalsEvent::EulaAccepted(pb::EulaAccepted {
                    eula_id,
                    text_sha256,
                }),
                EulaDecision::Declined => ApprovalsEvent::EulaDeclined(pb::EulaDeclined {
                    eula_id,
                    text_sha256,
                }),
            }
        })
        .collect())
}

pub fn evolve_eula(mut state: EulaState, event: &ApprovalsEvent) -> EulaState {
    match event {
        ApprovalsEvent::EulaAccepted(e) => {
            state
                .decisions
                .insert(e.text_sha256.clone(), EulaDecision::Accepted);
        }
        ApprovalsEvent::EulaDeclined(e) => {
            state
                .decisions
                .insert(e.text_sha256.clone(), EulaDecision::Declined);
        }
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(decision: EulaDecision, digests: &[&str]) -> EulaCommand {
        EulaCommand {
            eula_id: "vendor-eula".into(),
            decision,
            current_digests: digests.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn given(commands: Vec<EulaCommand>) -> EulaState {
        commands
            .into_iter()
            .fold(EulaState::default(), |state, command| {
                let events = decide_eula(&state, command).unwrap();
                events.iter().fold(state, evolve_eula)
            })
    }

    #[test]
    fn acceptance_is_of_one_text_and_a_new_text_is_not_accepted() {
        let state = given(vec![command(EulaDecision::Accepted, &["aaa"])]);
        assert_eq!(state.decision("aaa"), Some(EulaDecision::Accepted));
        assert_eq!(
            state.decision("bbb"),
            None,
            "a revised text needs a new acceptance"
        );
        let again = given(vec![
            command(EulaDecision::Accepted, &["aaa"]),
            command(EulaDecision::Accepted, &["bbb"]),
        ]);
        assert_eq!(again.decision("bbb"), Some(EulaDecision::Accepted));
    }

    #[test]
    fn repeating_a_decision_appends_nothing_and_declining_replaces_it() {
        let accepted = given(vec![command(EulaDecision::Accepted, &["aaa"])]);
        assert!(
            decide_eula(&accepted, command(EulaDecision::Accepted, &["aaa"]))
                .unwrap()
                .is_empty()
        );
        let events = decide_eula(&accepted, command(EulaDecision::Declined, &["aaa"])).unwrap();
        assert!(matches!(&events[..], [ApprovalsEvent::EulaDeclined(e)] if e.text_sha256 == "aaa"));
    }

    #[test]
    fn an_eula_no_update_references_is_unknown() {
        let error =
            decide_eula(&EulaState::default(), command(EulaDecision::Accepted, &[])).unwrap_err();
        assert_eq!(error, ApprovalError::UnknownEula("vendor-eula".into()));
        assert!(error.to_string().contains("patchbay eula list"));
    }
}
