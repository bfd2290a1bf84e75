//! From one revision's metadata to the `WsusUpdateSynced` event, and what it changes.

use std::collections::HashMap;

use patchbay_proto::wsus::v1 as pb;
use patchbay_wsus::update_xml::{CategoryType, MsrcSeverity, RebootBehaviour, UpdateType};
use patchbay_wsus::{FileUrl, UpdateMetadata};
use sha2::{Digest as _, Sha256};

/// A category as the view knows it, to name the categories an update belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryInfo {
    pub category_type: i32,
    pub title: String,
}

/// What storing a revision means for the run's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionChange {
    /// An update (or category) seen for the first time.
    New,
    /// A newer revision of a known one.
    Revised,
    /// A newer revision that expires it.
    Expired,
    /// This revision (or a newer one) is stored already: a resumed run skips it.
    AlreadyStored,
}

/// Classifies an incoming revision against the newest stored one (`(revision, expired)`).
pub fn classify(stored: Option<(i32, bool)>, revision: i32, expired: bool) -> RevisionChange {
    match stored {
        Some((known, _)) if known >= revision => RevisionChange::AlreadyStored,
        Some((_, was_expired)) if expired && !was_expired => RevisionChange::Expired,
        Some(_) => RevisionChange::Revised,
        None if expired => RevisionChange::Expired,
        None => RevisionChange::New,
    }
}

/// The event that stores one revision.
///
/// `languages` keeps only titles in those languages (all when empty; the metadata's default
/// language is always kept so every update has a title); `file_urls` are the GetUpdateData
/// `fileUrls` by SHA-1; `categories` names the categories the update's prerequisites point at.
pub fn synced_event(
    run_id: &str,
    metadata: &UpdateMetadata,
    xml: &str,
    was_compressed: bool,
    languages: &[String],
    file_urls: &HashMap<Vec<u8>, String>,
    categories: &HashMap<String, CategoryInfo>,
) -> pb::WsusUpdateSynced {
    let default_language = metadata.default_language.as_deref().unwrap_or("en");
    let texts = metadata
        .localized
        .iter()
        .filter(|text| {
            languages.is_empty()
                || languages
                    .iter()
                    .any(|l| l.eq_ignore_ascii_case(&text.language))
                || text.language.eq_ignore_ascii_case(default_language)
        })
        .map(|text| pb::WsusLocalizedText {
            language: text.language.clone(),
            title: text.title.clone(),
            description: text.description.clone().unwrap_or_default(),
        })
        .collect();
    let eula_sha256 = metadata
        .eula_files
        .first()
        .map(|file| match &file.sha256 {
            Some(sha256) => hex::encode(sha256),
            None => hex::encode(&file.sha1),
        })
        .unwrap_or_default();
    let files = metadata
        .files
        .iter()
        .map(|file| pb::WsusFile {
            file_name: file.file_name.clone(),
            size: file.size,
            sha1: hex::encode(&file.sha1),
            sha256: file.sha256.as_deref().map(hex::encode).unwrap_or_default(),
            url: file_urls.get(&file.sha1).cloned().unwrap_or_default(),
            patching_type: file.patching_type.clone().unwrap_or_default(),
        })
        .collect();
    let category_refs = metadata
        .category_ids()
        .into_iter()
        .map(|id| {
            let info = categories.get(id).cloned().unwrap_or_default();
            pb::WsusCategoryRef {
                id: id.to_owned(),
                category_type: info.category_type,
                title: info.title,
            }
        })
        .collect();
    pb::WsusUpdateSynced {
        run_id: run_id.to_owned(),
        update_id: metadata.identity.update_id.clone(),
        revision_number: metadata.identity.revision_number,
        update_type: update_type(&metadata.update_type) as i32,
        category_type: metadata
            .category_type
            .as_ref()
            .map_or(pb::WsusCategoryType::Unspecified, category_type) as i32,
        expired: metadata.is_expired(),
        creation_date: metadata.creation_date.clone().unwrap_or_default(),
        texts,
        kb_article_ids: metadata.kb_article_ids.clone(),
        msrc_severity: metadata
            .msrc_severity
            .as_ref()
            .map(severity)
            .unwrap_or_default()
            .to_owned(),
        security_bulletin_ids: metadata.security_bulletin_ids.clone(),
        cve_ids: metadata.cve_ids.clone(),
        eula_id: metadata.eula_id.clone().unwrap_or_default(),
        eula_sha256,
        prerequisites: metadata
            .prerequisites
            .iter()
            .map(|p| pb::WsusPrerequisite {
                any_of: p.any_of.clone(),
                is_category: p.is_category,
            })
            .collect(),
        bundled_updates: metadata
            .bundled_updates
            .iter()
            .map(|b| pb::WsusRevisionRef {
                update_id: b.update_id.clone(),
                revision_number: b.revision_number,
            })
            .collect(),
        superseded_update_ids: metadata.superseded_update_ids.clone(),
        files,
        reboot: metadata
            .install_behaviour
            .as_ref()
            .map_or(pb::WsusRebootBehaviour::Unspecified, |b| reboot(&b.reboot))
            as i32,
        uninstallable: metadata.uninstallable(),
        max_download_size: metadata.max_download_size.unwrap_or_default(),
        metadata_sha256: hex::encode(Sha256::digest(xml.as_bytes())),
        metadata_bytes: u32::try_from(xml.len()).unwrap_or(u32::MAX),
        was_compressed,
        support_url: metadata.support_url.clone().unwrap_or_default(),
        categories: category_refs,
    }
}

/// `fileUrls` of a GetUpdateData answer, by SHA-1.
pub fn file_url_index(file_urls: &[FileUrl]) -> HashMap<Vec<u8>, String> {
    file_urls
        .iter()
        .filter_map(|f| Some((f.file_digest.clone(), f.mu_url.clone()?)))
        .collect()
}

fn update_type(t: &UpdateType) -> pb::WsusUpdateType {
    match t {
        UpdateType::Software => pb::WsusUpdateType::Software,
        UpdateType::Driver => pb::WsusUpdateType::Driver,
        UpdateType::Category => pb::WsusUpdateType::Category,
        UpdateType::Detectoid => pb::WsusUpdateType::Detectoid,
        UpdateType::Other(_) => pb::WsusUpdateType::Unspecified,
    }
}

fn category_type(t: &CategoryType) -> pb::WsusCategoryType {
    match t {
        CategoryType::Company => pb::WsusCategoryType::Company,
        CategoryType::ProductFamily => pb::WsusCategoryType::ProductFamily,
        CategoryType::Product => pb::WsusCategoryType::Product,
        CategoryType::UpdateClassification => pb::WsusCategoryType::UpdateClassification,
        CategoryType::Other(_) => pb::WsusCategoryType::Unspecified,
    }
}

fn severity(s: &MsrcSeverity) -> &'static str {
    match s {
        MsrcSeverity::Critical => "Critical",
        MsrcSeverity::Important => "Important",
        MsrcSeverity::Moderate => "Moderate",
        MsrcSeverity::Low => "Low",
        _ => "",
    }
}

fn reboot(r: &RebootBehaviour) -> pb::WsusRebootBehaviour {
    match r {
        RebootBehaviour::NeverReboots => pb::WsusRebootBehaviour::NeverReboots,
        RebootBehaviour::AlwaysRequiresReboot => pb::WsusRebootBehaviour::AlwaysRequiresReboot,
        RebootBehaviour::CanRequestReboot => pb::WsusRebootBehaviour::CanRequestReboot,
        _ => pb::WsusRebootBehaviour::Unspecified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_skips_what_is_stored_and_counts_the_rest() {
        assert_eq!(classify(None, 100, false), RevisionChange::New);
        assert_eq!(classify(None, 100, true), RevisionChange::Expired);
        assert_eq!(
            classify(Some((100, false)), 100, false),
            RevisionChange::AlreadyStored
        );
        assert_eq!(
            classify(Some((101, false)), 100, false),
            RevisionChange::AlreadyStored
        );
        assert_eq!(
            classify(Some((100, false)), 101, false),
            RevisionChange::Revised
        );
        assert_eq!(
            classify(Some((100, false)), 101, true),
            RevisionChange::Expired
        );
        assert_eq!(
            classify(Some((101, true)), 102, true),
            RevisionChange::Revised
        );
    }
}
