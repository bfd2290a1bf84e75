//! The update aggregate: publish, revise, supersede and expire one update (`update-<id>` stream).

use patchbay_proto::catalog::v1 as pb;

use super::{CatalogError, UpdateId};
use crate::events::CatalogEvent;

/// What the log says about one update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateState {
    /// 0 before publication, then 1, 2, ... for each revision.
    pub revision: u32,
    pub details: Option<pb::UpdateDetails>,
    pub superseded_by: Option<String>,
    pub expired: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UpdateCommand {
    /// Publish the update, or revise it if the details differ from the current revision.
    Publish {
        id: UpdateId,
        details: Box<pb::UpdateDetails>,
    },
    Supersede {
        id: UpdateId,
        superseded_by: UpdateId,
    },
    Expire {
        id: UpdateId,
        reason: String,
    },
}

pub fn decide(
    state: &UpdateState,
    command: UpdateCommand,
) -> Result<Vec<CatalogEvent>, CatalogError> {
    match command {
        UpdateCommand::Publish { id, details } => {
            let details = *details;
            validate(&id, &details)?;
            if state.expired {
                return Err(CatalogError::Expired(id.to_string()));
            }
            let details = match &state.details {
                Some(current) => merge_suites(current, details),
                None => details,
            };
            Ok(match &state.details {
                None => vec![CatalogEvent::UpdatePublished(pb::UpdatePublished {
                    update_id: id.to_string(),
                    details: Some(details),
                })],
                // Re-importing identical data appends nothing.
                Some(current) if *current == details => vec![],
                Some(_) => vec![CatalogEvent::UpdateRevised(pb::UpdateRevised {
                    update_id: id.to_string(),
                    revision: state.revision + 1,
                    details: Some(details),
                })],
            })
        }
        UpdateCommand::Supersede { id, superseded_by } => {
            if state.details.is_none() {
                return Err(CatalogError::UnknownUpdate(id.to_string()));
            }
            if id == superseded_by {
                return Err(CatalogError::InvalidInput(format!(
                    "update '{id}' cannot supersede itself"
                )));
            }
            if state.superseded_by.as_deref() == Some(superseded_by.as_str()) {
                return Ok(vec![]);
            }
            Ok(vec![CatalogEvent::UpdateSuperseded(pb::UpdateSuperseded {
                update_id: id.to_string(),
                superseded_by: superseded_by.to_string(),
            })])
        }
        UpdateCommand::Expire { id, reason } => {
            if state.details.is_none() {
                return Err(CatalogError::UnknownUpdate(id.to_string()));
            }
            if state.expired {
                return Ok(vec![]);
            }
            Ok(vec![CatalogEvent::UpdateExpired(pb::UpdateExpired {
                update_id: id.to_string(),
                reason,
            })])
        }
    }
}

pub fn evolve(mut state: UpdateState, event: &CatalogEvent) -> UpdateState {
    match event {
        CatalogEvent::UpdatePublished(e) => {
            state.revision = 1;
            state.details = e.details.clone();
        }
        CatalogEvent::UpdateRevised(e) => {
            state.revision = e.revision;
            state.details = e.details.clone();
        }
        CatalogEvent::UpdateSuperseded(e) => state.superseded_by = Some(e.superseded_by.clone()),
        CatalogEvent::UpdateExpired(_) => state.expired = true,
        CatalogEvent::VulnerabilityPublished(_)
        | CatalogEvent::DeviceRequirementsObserved(_)
        | CatalogEvent::ApprovalObserved(_)
        | CatalogEvent::InstallJobObserved(_) => {}
    }
    state
}

/// A Debian package version is one update however many suites publish it: importing it from another
/// suite adds that suite (and a security suite makes it a security update) instead of replacing them.
fn merge_suites(current: &pb::UpdateDetails, mut incoming: pb::UpdateDetails) -> pb::UpdateDetails {
    use pb::update_details::Applicability::Debian;
    if let (Some(Debian(known)), Some(Debian(new))) =
        (&current.applicability, &mut incoming.applicability)
        && known.package == new.package
        && known.version == new.version
        && known.architecture == new.architecture
    {
        new.suites.extend(known.suites.iter().cloned());
        new.suites.sort();
        new.suites.dedup();
        if current.classification == pb::Classification::Security as i32 {
            incoming.classification = current.classification;
        }
    }
    incoming
}

fn validate(id: &UpdateId, details: &pb::UpdateDetails) -> Result<(), CatalogError> {
    let invalid = |what: &str| CatalogError::InvalidInput(format!("update '{id}': {what}"));
    if details.title.trim().is_empty() {
        return Err(invalid("the title is empty"));
    }
    if details.kind == pb::UpdateKind::Unspecified as i32 {
        return Err(invalid(
            "the kind (first-party, third-party or windows) is missing",
        ));
    }
    for cve in &details.cve_ids {
        super::CveId::parse(cve).map_err(|e| invalid(&e.to_string()))?;
    }
    if let Some(eula) = &details.eula {
        let hex =
            eula.text_sha256.len() == 64 && eula.text_sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if eula.eula_id.is_empty() || !hex {
            return Err(invalid(
                "a EULA needs an id and the SHA-256 (hex) of its text",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> UpdateId {
        UpdateId::debian("openssl", "3.0.17-1~deb12u2", "amd64").unwrap()
    }

    fn details(title: &str) -> pb::UpdateDetails {
        pb::UpdateDetails {
            title: title.into(),
            vendor: "Debian".into(),
            product: "openssl".into(),
            kind: pb::UpdateKind::ThirdParty as i32,
            classification: pb::Classification::Security as i32,
            cve_ids: vec!["CVE-2025-9230".into()],
            ..Default::default()
        }
    }

    /// given `history`, when `command`, then the events (or error) decided.
    fn given_when(
        history: &[CatalogEvent],
        command: UpdateCommand,
    ) -> Result<Vec<CatalogEvent>, CatalogError> {
        let state = history.iter().fold(UpdateState::default(), evolve);
        decide(&state, command)
    }

    fn published() -> CatalogEvent {
        CatalogEvent::UpdatePublished(pb::UpdatePublished {
            update_id: id().to_string(),
            details: Some(details("openssl 3.0.17")),
        })
    }

    #[test]
    fn a_new_update_is_published() {
        let events = given_when(
            &[],
            UpdateCommand::Publish {
                id: id(),
                details: Box::new(details("openssl 3.0.17")),
            },
        )
        .unwrap();
        assert_eq!(events, vec![published()]);
    }

    #[test]
    fn re_importing_identical_data_appends_nothing() {
        let events = given_when(
            &[published()],
            UpdateCommand::Publish {
                id: id(),
                details: Box::new(details("openssl 3.0.17")),
            },
        );
        assert_eq!(events.unwrap(), vec![]);
    }

    #[test]
    fn changed_data_is_a_new_revision() {
        let events = given_when(
            &[published()],
            UpdateCommand::Publish {
                id: id(),
                details: Box::new(details("openssl 3.0.17 (fixed)")),
            },
        )
        .unwrap();
        assert!(matches!(&events[..], [CatalogEvent::UpdateRevised(r)] if r.revision == 2));
        let state = [published()]
            .iter()
            .chain(&events)
            .fold(UpdateState::default(), evolve);
        assert_eq!(state.revision, 2);
        assert_eq!(state.details.unwrap().title, "openssl 3.0.17 (fixed)");
    }

    #[test]
    fn the_same_debian_version_from_another_suite_adds_the_suite_once() {
        let debian = |suite: &str, classification: pb::Classification| pb::UpdateDetails {
            classification: classification as i32,
            applicability: Some(pb::update_details::Applicability::Debian(
                pb::DebianPackage {
                    package: "openssl".into(),
                    version: "3.0.17-1~deb12u2".into(),
                    architecture: "amd64".into(),
                    suites: vec![suite.into()],
                    ..Default::default()
                },
            )),
            ..details("openssl 3.0.17")
        };
        let from_security = given_when(
            &[],
            UpdateCommand::Publish {
                id: id(),
                details: Box::new(debian("bookworm-security", pb::Classification::Security)),
            },
        )
        .unwrap();
        let from_main = given_when(
            &from_security,
            UpdateCommand::Publish {
                id: id(),
                details: Box::new(debian("bookworm", pb::Classification::Update)),
            },
        )
        .unwrap();
        let [CatalogEvent::UpdateRevised(revised)] = &from_main[..] else {
            panic!("{from_main:?}")
        };
        let merged = revised.details.clone().unwrap();
        assert_eq!(merged.classification, pb::Classification::Security as i32);
        let Some(pb::update_details::Applicability::Debian(package)) = merged.applicability else {
            panic!()
        };
        assert_eq!(package.suites, ["bookworm", "bookworm-security"]);
        let history: Vec<_> = from_security.into_iter().chain(from_main).collect();
        for suite in ["bookworm", "bookworm-security"] {
            let again = given_when(
                &history,
                UpdateCommand::Publish {
                    id: id(),
                    details: Box::new(debian(suite, pb::Classification::Update)),
                },
            );
            assert_eq!(again.unwrap(), vec![], "re-importing {suite}");
        }
    }

    #[test]
    fn supersede_and_expire_need_a_published_update_and_are_idempotent() {
        let newer = UpdateId::debian("openssl", "3.0.18-1", "amd64").unwrap();
        let unknown = given_when(
            &[],
            UpdateCommand::Supersede {
                id: id(),
                superseded_by: newer.clone(),
            },
        );
        assert_eq!(unknown, Err(CatalogError::UnknownUpdate(id().to_string())));
        let superseded = given_when(
            &[published()],
            UpdateCommand::Supersede {
                id: id(),
                superseded_by: newer.clone(),
            },
        )
        .unwrap();
        assert_eq!(superseded.len(), 1);
        let history = [published(), superseded[0].clone()];
        assert_eq!(
            given_when(
                &history,
                UpdateCommand::Supersede {
                    id: id(),
                    superseded_by: newer
                }
            )
            .unwrap(),
            vec![]
        );
        let expired = given_when(
            &history,
            UpdateCommand::Expire {
                id: id(),
                reason: "withdrawn".into(),
            },
        )
        .unwrap();
        let history = [published(), expired[0].clone()];
        assert_eq!(
            given_when(
                &history,
                UpdateCommand::Expire {
                    id: id(),
                    reason: "again".into()
                }
            )
            .unwrap(),
            vec![]
        );
        let republish = given_when(
            &history,
            UpdateCommand::Publish {
                id: id(),
                details: Box::new(details("x")),
            },
        );
        assert!(matches!(republish, Err(CatalogError::Expired(_))));
    }

    #[test]
    fn bad_details_are_refused_with_the_reason() {
        let mut no_title = details(" ");
        let error = given_when(
            &[],
            UpdateCommand::Publish {
                id: id(),
                details: Box::new(no_title.clone()),
            },
        )
        .unwrap_err();
        assert!(error.to_string().contains("title"));
        no_title.title = "t".into();
        no_title.cve_ids = vec!["CVE-1".into()];
        let error = given_when(
            &[],
            UpdateCommand::Publish {
                id: id(),
                details: Box::new(no_title),
            },
        )
        .unwrap_err();
        assert!(error.to_string().contains("not a CVE id"), "{error}");
        let mut bad_eula = details("t");
        bad_eula.eula = Some(pb::Eula {
            eula_id: "e".into(),
            text_sha256: "zz".into(),
        });
        assert!(
            given_when(
                &[],
                UpdateCommand::Publish {
                    id: id(),
                    details: Box::new(bad_eula)
                }
            )
            .is_err()
        );
    }
}
