//! The fixture catalog's data model: updates, categories, detectoids, files and EULAs, and the catalog that holds them.

use std::collections::HashMap;

use thiserror::Error;

use crate::metadata;

/// What kind of entry an update revision is. Categories, classifications and detectoids are the
/// "config" revisions (`GetConfig=true`); software and driver updates are the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateKind {
    /// A `Category` with `CategoryType="Company"`.
    Company,
    /// A `Category` with `CategoryType="ProductFamily"`.
    ProductFamily,
    /// A `Category` with `CategoryType="Product"`.
    Product,
    /// A `Category` with `CategoryType="UpdateClassification"`.
    UpdateClassification,
    /// `UpdateType="Detectoid"`.
    Detectoid,
    /// `UpdateType="Software"`.
    Software,
    /// `UpdateType="Driver"`.
    Driver,
}

impl UpdateKind {
    /// Whether `GetRevisionIdList` with `GetConfig=true` returns this kind.
    pub fn is_config(self) -> bool {
        !matches!(self, Self::Software | Self::Driver)
    }

    /// The `CategoryType` of a category kind.
    pub fn category_type(self) -> Option<&'static str> {
        match self {
            Self::Company => Some("Company"),
            Self::ProductFamily => Some("ProductFamily"),
            Self::Product => Some("Product"),
            Self::UpdateClassification => Some("UpdateClassification"),
            _ => None,
        }
    }
}

/// `MsrcSeverity` on `upd:Properties`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrcSeverity {
    /// "Critical".
    Critical,
    /// "Important".
    Important,
    /// "Moderate".
    Moderate,
    /// "Low".
    Low,
}

impl MsrcSeverity {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "Critical",
            Self::Important => "Important",
            Self::Moderate => "Moderate",
            Self::Low => "Low",
        }
    }
}

/// `RebootBehavior` of `InstallationBehavior` / `UninstallationBehavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootBehavior {
    /// "NeverReboots".
    NeverReboots,
    /// "AlwaysRequiresReboot".
    AlwaysRequiresReboot,
    /// "CanRequestReboot".
    CanRequestReboot,
}

impl RebootBehavior {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NeverReboots => "NeverReboots",
            Self::AlwaysRequiresReboot => "AlwaysRequiresReboot",
            Self::CanRequestReboot => "CanRequestReboot",
        }
    }
}

/// `PublicationState` on `upd:Properties`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicationState {
    /// "Published".
    Published,
    /// "Expired": the update was withdrawn.
    Expired,
}

impl PublicationState {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "Published",
            Self::Expired => "Expired",
        }
    }
}

/// One `upd:LocalizedProperties` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalizedText {
    /// Short language name: "en", "de".
    pub language: String,
    /// `upd:Title`.
    pub title: String,
    /// `upd:Description`; empty = omitted.
    pub description: String,
}

impl LocalizedText {
    /// A title and description in `language`.
    pub fn new(language: &str, title: &str, description: &str) -> Self {
        Self {
            language: language.to_owned(),
            title: title.to_owned(),
            description: description.to_owned(),
        }
    }
}

/// A content file (`upd:Files/upd:File`). Its bytes are [`crate::content::payload`] of the name
/// and size, so `Digest` and `AdditionalDigest` always match what `/Content/` serves. File names
/// are unique across a catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureFile {
    /// `FileName`, also the last segment of the content URL.
    pub file_name: String,
    /// `Size` in bytes.
    pub size: u64,
    /// `Modified`, e.g. "2024-01-09T18:00:00Z".
    pub modified: String,
}

/// A EULA: `EulaID` on `upd:Properties` plus one `upd:EulaFile` (a content file too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureEula {
    /// `EulaID` (a GUID).
    pub eula_id: String,
    /// `FileName` of the EULA text.
    pub file_name: String,
    /// `Size` in bytes.
    pub size: u64,
    /// `Language` of the EULA file.
    pub language: String,
}

/// `drv:WindowsDriverMetaData` of a driver update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverInfo {
    /// `HardwareID`, e.g. `pci\ven_8086&dev_2723`.
    pub hardware_id: String,
    /// `Manufacturer` / `Company` / `Provider`.
    pub manufacturer: String,
    /// `Class`, e.g. "Net".
    pub class: String,
    /// `DriverVerDate`, e.g. "2023-10-10".
    pub version_date: String,
    /// `DriverVerVersion`, e.g. "22.250.0.2".
    pub version: String,
}

/// A reference to a specific revision (bundled updates name revisions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRef {
    /// The update id.
    pub update_id: String,
    /// The revision number.
    pub revision_number: u32,
}

/// One update revision of the fixture catalog: a category, classification, detectoid, software
/// or driver update. [`FixtureUpdate::metadata_xml`] renders it in the real update-metadata shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureUpdate {
    /// Lower-case GUID.
    pub update_id: String,
    /// `RevisionNumber`.
    pub revision_number: u32,
    /// The kind of entry.
    pub kind: UpdateKind,
    /// `PublicationState`.
    pub publication_state: PublicationState,
    /// `CreationDate`, e.g. "2024-01-09T18:00:00.000Z".
    pub creation_date: String,
    /// Titles and descriptions, first one is the default language.
    pub localized: Vec<LocalizedText>,
    /// `upd:KBArticleID` (digits only, as Microsoft writes it).
    pub kb_article_id: Option<String>,
    /// `MsrcSeverity`.
    pub msrc_severity: Option<MsrcSeverity>,
    /// `upd:SecurityBulletinID`.
    pub security_bulletin_id: Option<String>,
    /// `upd:CveID` elements.
    pub cve_ids: Vec<String>,
    /// `upd:SupportUrl`.
    pub support_url: Option<String>,
    /// For categories: the parent category (a product's family, a family's company), rendered as
    /// an `AtLeastOne IsCategory="true"` prerequisite.
    pub parent_categories: Vec<String>,
    /// Classification ids: one `AtLeastOne IsCategory="true"` prerequisite.
    pub classifications: Vec<String>,
    /// Product ids: another `AtLeastOne IsCategory="true"` prerequisite.
    pub products: Vec<String>,
    /// Plain `upd:Prerequisites/upd:UpdateIdentity` prerequisites (detectoids).
    pub prerequisites: Vec<String>,
    /// `upd:SupersededUpdates`.
    pub superseded_update_ids: Vec<String>,
    /// `upd:BundledUpdates`.
    pub bundled_updates: Vec<RevisionRef>,
    /// Render bundled updates as `BundledUpdates/AtLeastOne/UpdateIdentity` (MS-WUSP's XPath)
    /// instead of `BundledUpdates/UpdateIdentity` (what Microsoft Update mostly sends).
    pub bundled_in_at_least_one: bool,
    /// `ExplicitlyDeployable` (false for updates that only ship inside a bundle).
    pub explicitly_deployable: bool,
    /// EULA, if the update needs one accepted.
    pub eula: Option<FixtureEula>,
    /// Content files.
    pub files: Vec<FixtureFile>,
    /// `upd:InstallationBehavior RebootBehavior`.
    pub installation_reboot: Option<RebootBehavior>,
    /// `upd:UninstallationBehavior RebootBehavior`; `None` = not uninstallable.
    pub uninstallation_reboot: Option<RebootBehavior>,
    /// Driver metadata, for driver updates.
    pub driver: Option<DriverInfo>,
    /// Inner XML of `upd:ApplicabilityRules`, inserted verbatim; the `bar:` (base rules) and
    /// `lar:` (logical rules) prefixes are declared.
    pub applicability_rules: String,
}

impl FixtureUpdate {
    /// A published software update with an English title, one content file named after the KB,
    /// `CanRequestReboot`, in one product and one classification. Adjust the public fields for more.
    pub fn software(
        update_id: &str,
        kb_article_id: &str,
        title: &str,
        product_id: &str,
        classification_id: &str,
    ) -> Self {
        Self {
            update_id: update_id.to_ascii_lowercase(),
            revision_number: 200,
            kind: UpdateKind::Software,
            publication_state: PublicationState::Published,
            creation_date: "2024-01-09T18:00:00.000Z".to_owned(),
            localized: vec![LocalizedText::new("en", title, "")],
            kb_article_id: Some(kb_article_id.to_owned()),
            msrc_severity: None,
            security_bulletin_id: None,
            cve_ids: Vec::new(),
            support_url: Some("https://support.microsoft.com/help".to_owned()),
            parent_categories: Vec::new(),
            classifications: vec![classification_id.to_ascii_lowercase()],
            products: vec![product_id.to_ascii_lowercase()],
            prerequisites: Vec::new(),
            superseded_update_ids: Vec::new(),
            bundled_updates: Vec::new(),
            bundled_in_at_least_one: false,
            explicitly_deployable: true,
            eula: None,
            files: vec![FixtureFile {
                file_name: format!("kb{kb_article_id}-x64.cab"),
                size: 4096,
                modified: "2024-01-09T17:00:00Z".to_owned(),
            }],
            installation_reboot: Some(RebootBehavior::CanRequestReboot),
            uninstallation_reboot: None,
            driver: None,
            applicability_rules: format!(
                "<upd:IsInstalled><bar:RegKeyExists Key=\"HKEY_LOCAL_MACHINE\" Subkey=\"SOFTWARE\\Microsoft\\Updates\\KB{kb_article_id}\" /></upd:IsInstalled>"
            ),
        }
    }

    /// A category (company, product family, product or classification) with an English title.
    pub fn category(kind: UpdateKind, update_id: &str, title: &str, parent: Option<&str>) -> Self {
        Self {
            kind,
            revision_number: 1,
            kb_article_id: None,
            support_url: None,
            parent_categories: parent.map(str::to_ascii_lowercase).into_iter().collect(),
            classifications: Vec::new(),
            products: Vec::new(),
            files: Vec::new(),
            installation_reboot: None,
            applicability_rules: String::new(),
            ..Self::software(update_id, "0", title, "", "")
        }
    }

    /// The content files of this revision, EULA file included, as (name, size).
    pub fn content_files(&self) -> impl Iterator<Item = (&str, u64)> {
        self.files
            .iter()
            .map(|file| (file.file_name.as_str(), file.size))
            .chain(
                self.eula
                    .iter()
                    .map(|eula| (eula.file_name.as_str(), eula.size)),
            )
    }

    /// The title in `language`, falling back to the first one.
    pub fn title(&self, language: &str) -> Option<&str> {
        self.localized
            .iter()
            .find(|text| text.language == language)
            .or_else(|| self.localized.first())
            .map(|text| text.title.as_str())
    }

    /// This revision's update-metadata XML (the `XmlUpdateBlob` text), digests included.
    pub fn metadata_xml(&self) -> String {
        metadata::render(self, |name, size| {
            crate::content::FileDigests::of(&crate::content::payload(name, size))
        })
    }
}

/// Why a catalog or a catalog change was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CatalogError {
    /// An update id that is not a GUID.
    #[error("update id {0:?} is not a GUID")]
    InvalidUpdateId(String),
    /// Two entries with the same update id.
    #[error("update {0} is in the catalog twice")]
    DuplicateUpdate(String),
    /// The update id is not in the catalog.
    #[error("update {0} is not in the catalog")]
    UnknownUpdate(String),
    /// Two different content files with one name (content URLs are by name).
    #[error("file name {0:?} names two different content files")]
    FileNameClash(String),
}

/// The fixture catalog a [`crate::FakeUpstream`] serves: latest revisions of categories,
/// classifications, detectoids and updates, in catalog order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixtureCatalog {
    pub(crate) updates: Vec<FixtureUpdate>,
}

impl FixtureCatalog {
    /// A catalog of these revisions, checked: GUID ids, no duplicates, file names unique.
    pub fn from_updates(updates: Vec<FixtureUpdate>) -> Result<Self, CatalogError> {
        let mut seen = HashMap::new();
        let mut file_sizes: HashMap<&str, u64> = HashMap::new();
        for update in &updates {
            if !is_guid(&update.update_id) {
                return Err(CatalogError::InvalidUpdateId(update.update_id.clone()));
            }
            if seen.insert(update.update_id.as_str(), ()).is_some() {
                return Err(CatalogError::DuplicateUpdate(update.update_id.clone()));
            }
            for (name, size) in update.content_files() {
                if file_sizes.insert(name, size).is_some_and(|old| old != size) {
                    return Err(CatalogError::FileNameClash(name.to_owned()));
                }
            }
        }
        Ok(Self { updates })
    }

    /// The revisions, in catalog order.
    pub fn updates(&self) -> &[FixtureUpdate] {
        &self.updates
    }

    /// The revision of `update_id`.
    pub fn update(&self, update_id: &str) -> Option<&FixtureUpdate> {
        let update_id = update_id.to_ascii_lowercase();
        self.updates
            .iter()
            .find(|update| update.update_id == update_id)
    }

    /// Number of revisions.
    pub fn len(&self) -> usize {
        self.updates.len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }
}

/// Whether `text` is a GUID in the `8-4-4-4-12` hex form of MS-WSUSSS 2.2.5.1.
pub(crate) fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_shape() {
        assert!(is_guid("e6cf1350-c01b-414d-a61f-263d14d133b4"));
        assert!(is_guid("ADB2FE48-0B2E-451e-8FC8-44B29845B0C6"));
        assert!(!is_guid("{e6cf1350-c01b-414d-a61f-263d14d133b4}"));
        assert!(!is_guid("e6cf1350c01b414da61f263d14d133b4"));
        assert!(!is_guid("e6cf1350-c01b-414d-a61f-263d14d133bz"));
    }
}
