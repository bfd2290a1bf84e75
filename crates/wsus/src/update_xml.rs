//! Update metadata XML (`<upd:Update>`, MS-WUSP 3.1.1.1) to [`UpdateMetadata`], streamed without a DOM.
//!
//! Elements are matched by local name along their path under `/Update`, so namespace prefixes
//! do not matter. Applicability rules and handler data other than `CategoryInformation` are
//! read (they must be well-formed) but not kept.

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};

use crate::error::{MalformedXml, clip};
use crate::types::UpdateIdentity;
use crate::wire;
use crate::xml::{self, MAX_DEPTH};

/// What a revision's metadata says, as far as Patchbay uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateMetadata {
    /// `/Update/UpdateIdentity`.
    pub identity: UpdateIdentity,
    /// `Properties/@UpdateType`.
    pub update_type: UpdateType,
    /// `HandlerSpecificData/CategoryInformation/@CategoryType`, for categories.
    pub category_type: Option<CategoryType>,
    /// `Properties/@PublicationState`: "Published", "Expired", ...
    pub publication_state: Option<String>,
    /// `Properties/@CreationDate`, as written.
    pub creation_date: Option<String>,
    /// `Properties/@DefaultPropertiesLanguage`.
    pub default_language: Option<String>,
    /// `Properties/@LegacyName`.
    pub legacy_name: Option<String>,
    /// `LocalizedPropertiesCollection/LocalizedProperties`, in document order.
    pub localized: Vec<LocalizedProperties>,
    /// `Properties/KBArticleID`, digits as written.
    pub kb_article_ids: Vec<String>,
    /// `Properties/SecurityBulletinID`.
    pub security_bulletin_ids: Vec<String>,
    /// `Properties/CveID`, uppercased.
    pub cve_ids: Vec<String>,
    /// `Properties/@MsrcSeverity`.
    pub msrc_severity: Option<MsrcSeverity>,
    /// `Properties/SupportUrl`.
    pub support_url: Option<String>,
    /// `Properties/@EulaID`: the update needs this EULA accepted.
    pub eula_id: Option<String>,
    /// `LocalizedPropertiesCollection/EulaFile` (MS-WUSP footnote 44).
    pub eula_files: Vec<EulaFile>,
    /// `Relationships/Prerequisites`, one entry per AND clause.
    pub prerequisites: Vec<Prerequisite>,
    /// `Relationships/BundledUpdates`, with or without `AtLeastOne` grouping, flattened; a
    /// reference without RevisionNumber gets revision 0 ("whichever revision").
    pub bundled_updates: Vec<UpdateIdentity>,
    /// `Relationships/SupersededUpdates/UpdateIdentity/@UpdateID`.
    pub superseded_update_ids: Vec<String>,
    /// `Files/File`: the content files.
    pub files: Vec<PayloadFile>,
    /// `Properties/InstallationBehavior`.
    pub install_behaviour: Option<Behaviour>,
    /// `Properties/UninstallationBehavior`; present when the update can be uninstalled.
    pub uninstall_behaviour: Option<Behaviour>,
    /// `Properties/@MaxDownloadSize`, in bytes.
    pub max_download_size: Option<u64>,
}

impl UpdateMetadata {
    /// The ids of the categories (products, classifications) the update belongs to: the
    /// members of its `IsCategory="true"` prerequisite clauses.
    pub fn category_ids(&self) -> Vec<&str> {
        self.prerequisites
            .iter()
            .filter(|clause| clause.is_category)
            .flat_map(|clause| clause.any_of.iter().map(String::as_str))
            .collect()
    }

    /// Whether the update can be uninstalled.
    pub fn uninstallable(&self) -> bool {
        self.uninstall_behaviour.is_some()
    }

    /// Whether this revision expires the update (`PublicationState="Expired"`).
    pub fn is_expired(&self) -> bool {
        self.publication_state.as_deref() == Some("Expired")
    }

    /// The title in the first preferred language available ("en-GB" also matches "en"), else in
    /// the default language, else the first title.
    pub fn title(&self, preferred_languages: &[&str]) -> Option<&str> {
        self.localized_in(preferred_languages)
            .map(|localized| localized.title.as_str())
            .filter(|title| !title.is_empty())
    }

    /// The description, chosen like [`Self::title`].
    pub fn description(&self, preferred_languages: &[&str]) -> Option<&str> {
        self.localized_in(preferred_languages)
            .and_then(|localized| localized.description.as_deref())
    }

    fn localized_in(&self, preferred_languages: &[&str]) -> Option<&LocalizedProperties> {
        let exactly = |language: &str| {
            self.localized
                .iter()
                .find(|localized| localized.language.eq_ignore_ascii_case(language))
        };
        preferred_languages
            .iter()
            .find_map(|language| {
                exactly(language).or_else(|| {
                    let primary = language.split(['-', '_']).next().unwrap_or(language);
                    exactly(primary)
                })
            })
            .or_else(|| self.default_language.as_deref().and_then(exactly))
            .or_else(|| self.localized.first())
    }
}

/// `Properties/@UpdateType`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpdateType {
    Software,
    Driver,
    Category,
    Detectoid,
    Other(String),
}

/// `CategoryInformation/@CategoryType`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CategoryType {
    Company,
    ProductFamily,
    Product,
    UpdateClassification,
    Other(String),
}

/// `Properties/@MsrcSeverity`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MsrcSeverity {
    Critical,
    Important,
    Moderate,
    Low,
    Unspecified,
    Other(String),
}

/// Titles and descriptions in one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalizedProperties {
    /// "en", "de", ...
    pub language: String,
    /// Empty when the metadata has none.
    pub title: String,
    pub description: Option<String>,
}

/// A EULA file to show before installing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EulaFile {
    pub file_name: String,
    pub size: u64,
    pub language: String,
    /// `@Digest`: SHA-1 of the file.
    pub sha1: Vec<u8>,
    /// `AdditionalDigest[@Algorithm="SHA256"]`.
    pub sha256: Option<Vec<u8>>,
}

/// One AND clause of the prerequisites: at least one of `any_of` must be installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prerequisite {
    /// Update ids (lowercase GUIDs).
    pub any_of: Vec<String>,
    /// The clause names categories (products, classifications) rather than updates.
    pub is_category: bool,
}

/// A content file of the update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFile {
    pub file_name: String,
    pub size: u64,
    /// `@Digest`: SHA-1 of the file; also its key in GetUpdateData's `fileUrls`.
    pub sha1: Vec<u8>,
    /// `AdditionalDigest[@Algorithm="SHA256"]`.
    pub sha256: Option<Vec<u8>>,
    /// `@Modified`, as written.
    pub modified: Option<String>,
    /// `@PatchingType`: "SelfContained", "Express", ...
    pub patching_type: Option<String>,
}

/// How installing (or uninstalling) behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// `@RebootBehavior`; the schema's default is NeverReboots.
    pub reboot: RebootBehaviour,
    /// `@CanRequestUserInput`.
    pub can_request_user_input: bool,
    /// `@RequiresNetworkConnectivity`.
    pub requires_network: bool,
}

/// `@RebootBehavior` of an (un)installation behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RebootBehaviour {
    NeverReboots,
    AlwaysRequiresReboot,
    CanRequestReboot,
    /// A value the schema does not define, as written.
    Unknown(String),
}

/// Why update metadata cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateXmlError {
    #[error("the update metadata is not usable XML: {0}")]
    Xml(#[from] MalformedXml),
    #[error(
        "the update metadata's root is <{found}>, not <Update>; this is not WSUS update metadata"
    )]
    WrongRoot { found: String },
    #[error("the update metadata lacks {what}, which every revision has; the metadata is damaged")]
    Missing { what: &'static str },
    #[error("the update metadata has {what} = {value:?}, which {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// Reads one revision's metadata XML.
pub fn parse(xml: &str) -> Result<UpdateMetadata, UpdateXmlError> {
    let mut reader = Reader::from_str(xml);
    let mut parser = Parser::default();
    // The open elements, root first.
    let mut path: Vec<Node> = Vec::new();
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|error| xml::syntax(&reader, error))?;
        match event {
            Event::Start(start) => {
                if path.len() >= MAX_DEPTH {
                    return Err(MalformedXml::TooDeep {
                        limit: MAX_DEPTH,
                        position,
                    }
                    .into());
                }
                let name = start.local_name().into_inner();
                parser.start(&path, name, &start)?;
                path.push(Node::from_local_name(name));
            }
            Event::Empty(start) => {
                parser.start(&path, start.local_name().into_inner(), &start)?;
                parser.end(&path)?;
            }
            Event::End(_) => {
                // check_end_names (on by default) guarantees it closes the last open element.
                path.pop();
                parser.end(&path)?;
            }
            Event::Text(text) => parser.text(&text.xml10_content()),
            Event::CData(data) => parser.text(&data.xml10_content()),
            Event::GeneralRef(reference) => {
                parser.text(&xml::resolve_reference(&reference, position)?);
            }
            Event::DocType(_) => return Err(MalformedXml::DocType { position }.into()),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !path.is_empty() {
        return Err(MalformedXml::Truncated {
            element: "Update".into(),
        }
        .into());
    }
    if !parser.seen_root {
        return Err(MalformedXml::NoRoot.into());
    }
    parser.finish()
}

/// The elements on the paths this parser reads; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Update,
    Properties,
    LocalizedPropertiesCollection,
    LocalizedProperties,
    EulaFile,
    Relationships,
    Prerequisites,
    AtLeastOne,
    BundledUpdates,
    SupersededUpdates,
    Files,
    File,
    HandlerSpecificData,
    Other,
}

impl Node {
    fn from_local_name(name: &str) -> Node {
        match name {
            "Update" => Node::Update,
            "Properties" => Node::Properties,
            "LocalizedPropertiesCollection" => Node::LocalizedPropertiesCollection,
            "LocalizedProperties" => Node::LocalizedProperties,
            "EulaFile" => Node::EulaFile,
            "Relationships" => Node::Relationships,
            "Prerequisites" => Node::Prerequisites,
            "AtLeastOne" => Node::AtLeastOne,
            "BundledUpdates" => Node::BundledUpdates,
            "SupersededUpdates" => Node::SupersededUpdates,
            "Files" => Node::Files,
            "File" => Node::File,
            "HandlerSpecificData" => Node::HandlerSpecificData,
            _ => Node::Other,
        }
    }
}

/// Which field an element's character data goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextField {
    KbArticleId,
    SecurityBulletinId,
    CveId,
    SupportUrl,
    Language,
    Title,
    Description,
    EulaSha256,
    FileSha256,
}

/// Character data being collected from a text element.
#[derive(Debug)]
struct Collecting {
    field: TextField,
    /// Number of the element's ancestors: the text is complete when the path is back to it.
    depth: usize,
    text: String,
    /// False for an AdditionalDigest of an algorithm other than SHA-256.
    wanted: bool,
}

/// What has been read so far.
#[derive(Debug)]
struct Parser {
    seen_root: bool,
    /// Identity and update type hold placeholders until the elements are seen.
    found: UpdateMetadata,
    has_identity: bool,
    has_update_type: bool,
    collecting: Option<Collecting>,
}

impl Parser {
    /// An element starts; `path` holds its ancestors' local names.
    fn start(
        &mut self,
        path: &[Node],
        name: &str,
        element: &BytesStart<'_>,
    ) -> Result<(), UpdateXmlError> {
        use Node as N;
        let collect = |field: TextField, wanted: bool| {
            Some(Collecting {
                field,
                depth: path.len(),
                text: String::new(),
                wanted,
            })
        };
        match (path, name) {
            ([], "Update") if !self.seen_root => self.seen_root = true,
            ([], _) if self.seen_root => {
                return Err(MalformedXml::Syntax {
                    position: 0,
                    reason: "a second root element follows <Update>".into(),
                }
                .into());
            }
            ([], other) => {
                return Err(UpdateXmlError::WrongRoot {
                    found: other.to_owned(),
                });
            }
            ([N::Update], "UpdateIdentity") => {
                let (update_id, revision_number) = identity(element, "UpdateIdentity/@UpdateID")?;
                let revision_number = revision_number.ok_or(UpdateXmlError::Missing {
                    what: "/Update/UpdateIdentity/@RevisionNumber",
                })?;
                self.found.identity = UpdateIdentity {
                    update_id,
                    revision_number,
                };
                self.has_identity = true;
            }
            ([N::Update], "Properties") => self.properties(element)?,
            ([N::Update, N::Properties], field) => match field {
                "KBArticleID" => self.collecting = collect(TextField::KbArticleId, true),
                "SecurityBulletinID" => {
                    self.collecting = collect(TextField::SecurityBulletinId, true)
                }
                "CveID" => self.collecting = collect(TextField::CveId, true),
                "SupportUrl" => self.collecting = collect(TextField::SupportUrl, true),
                "InstallationBehavior" => self.found.install_behaviour = Some(behaviour(element)?),
                "UninstallationBehavior" => {
                    self.found.uninstall_behaviour = Some(behaviour(element)?)
                }
                _ => {}
            },
            ([N::Update, N::LocalizedPropertiesCollection], "LocalizedProperties") => {
                self.found.localized.push(LocalizedProperties {
                    language: String::new(),
                    title: String::new(),
                    description: None,
                });
            }
            (
                [
                    N::Update,
                    N::LocalizedPropertiesCollection,
                    N::LocalizedProperties,
                ],
                field,
            ) => {
                self.collecting = match field {
                    "Language" => collect(TextField::Language, true),
                    "Title" => collect(TextField::Title, true),
                    "Description" => collect(TextField::Description, true),
                    _ => None,
                };
            }
            ([N::Update, N::LocalizedPropertiesCollection], "EulaFile") => {
                self.found.eula_files.push(eula_file(element)?);
            }
            ([N::Update, N::LocalizedPropertiesCollection, N::EulaFile], "AdditionalDigest") => {
                self.collecting = collect(TextField::EulaSha256, is_sha256(element)?);
            }
            ([N::Update, N::Relationships, N::Prerequisites], "UpdateIdentity") => {
                self.found.prerequisites.push(Prerequisite {
                    any_of: vec![update_id(
                        element,
                        "Prerequisites/UpdateIdentity/@UpdateID",
                    )?],
                    is_category: false,
                });
            }
            ([N::Update, N::Relationships, N::Prerequisites], "AtLeastOne") => {
                let is_category = match attribute(element, "IsCategory")? {
                    Some(text) => wire::parse_bool(&text).ok_or_else(|| {
                        invalid(
                            "Prerequisites/AtLeastOne/@IsCategory",
                            &text,
                            "is not a boolean",
                        )
                    })?,
                    None => false,
                };
                self.found.prerequisites.push(Prerequisite {
                    any_of: Vec::new(),
                    is_category,
                });
            }
            ([N::Update, N::Relationships, N::Prerequisites, N::AtLeastOne], "UpdateIdentity") => {
                let id = update_id(element, "Prerequisites/AtLeastOne/UpdateIdentity/@UpdateID")?;
                if let Some(clause) = self.found.prerequisites.last_mut() {
                    clause.any_of.push(id);
                }
            }
            ([N::Update, N::Relationships, N::BundledUpdates], "UpdateIdentity")
            | (
                [
                    N::Update,
                    N::Relationships,
                    N::BundledUpdates,
                    N::AtLeastOne,
                ],
                "UpdateIdentity",
            ) => {
                // Bundle references may omit the revision; 0 then means "whichever revision".
                let (update_id, revision_number) =
                    identity(element, "BundledUpdates/UpdateIdentity/@UpdateID")?;
                self.found.bundled_updates.push(UpdateIdentity {
                    update_id,
                    revision_number: revision_number.unwrap_or(0),
                });
            }
            ([N::Update, N::Relationships, N::SupersededUpdates], "UpdateIdentity") => {
                self.found.superseded_update_ids.push(update_id(
                    element,
                    "SupersededUpdates/UpdateIdentity/@UpdateID",
                )?);
            }
            ([N::Update, N::Files], "File") => self.found.files.push(payload_file(element)?),
            ([N::Update, N::Files, N::File], "AdditionalDigest") => {
                self.collecting = collect(TextField::FileSha256, is_sha256(element)?);
            }
            ([N::Update, N::HandlerSpecificData], "CategoryInformation") => {
                self.found.category_type =
                    attribute(element, "CategoryType")?.map(|text| category_type(&text));
            }
            _ => {}
        }
        Ok(())
    }

    fn text(&mut self, text: &str) {
        if let Some(collecting) = &mut self.collecting {
            collecting.text.push_str(text);
        }
    }

    /// An element ends; `path` holds its ancestors' local names.
    fn end(&mut self, path: &[Node]) -> Result<(), UpdateXmlError> {
        let Some(Collecting {
            field,
            text,
            wanted,
            ..
        }) = self
            .collecting
            .take_if(|collecting| collecting.depth == path.len())
        else {
            return Ok(());
        };
        let text = text.trim();
        match field {
            TextField::KbArticleId => push_non_empty(&mut self.found.kb_article_ids, text),
            TextField::SecurityBulletinId => {
                push_non_empty(&mut self.found.security_bulletin_ids, text)
            }
            TextField::CveId => push_non_empty(&mut self.found.cve_ids, &text.to_ascii_uppercase()),
            TextField::SupportUrl => self.found.support_url = non_empty(text),
            TextField::Language | TextField::Title | TextField::Description => {
                if let Some(localized) = self.found.localized.last_mut() {
                    match field {
                        TextField::Language => localized.language = text.to_owned(),
                        TextField::Title => localized.title = text.to_owned(),
                        _ => localized.description = non_empty(text),
                    }
                }
            }
            TextField::EulaSha256 if wanted => {
                let digest = digest(text, "EulaFile/AdditionalDigest")?;
                if let Some(eula) = self.found.eula_files.last_mut() {
                    eula.sha256 = Some(digest);
                }
            }
            TextField::FileSha256 if wanted => {
                let digest = digest(text, "File/AdditionalDigest")?;
                if let Some(file) = self.found.files.last_mut() {
                    file.sha256 = Some(digest);
                }
            }
            TextField::EulaSha256 | TextField::FileSha256 => {}
        }
        Ok(())
    }

    fn properties(&mut self, element: &BytesStart<'_>) -> Result<(), UpdateXmlError> {
        for attr in element.attributes() {
            let attr = attr.map_err(|error| syntax_error(&error.to_string()))?;
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|error| syntax_error(&error.to_string()))?;
            let value = value.trim();
            match attr.key.local_name().into_inner() {
                "UpdateType" => {
                    self.found.update_type = update_type(value);
                    self.has_update_type = true;
                }
                "PublicationState" => self.found.publication_state = non_empty(value),
                "CreationDate" => self.found.creation_date = non_empty(value),
                "DefaultPropertiesLanguage" => self.found.default_language = non_empty(value),
                "LegacyName" => self.found.legacy_name = non_empty(value),
                "MsrcSeverity" => self.found.msrc_severity = Some(msrc_severity(value)),
                "EulaID" => self.found.eula_id = non_empty(value),
                "MaxDownloadSize" => {
                    self.found.max_download_size = Some(value.parse().map_err(|_| {
                        invalid("Properties/@MaxDownloadSize", value, "is not a byte count")
                    })?);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<UpdateMetadata, UpdateXmlError> {
        if !self.has_identity {
            return Err(UpdateXmlError::Missing {
                what: "/Update/UpdateIdentity",
            });
        }
        if !self.has_update_type {
            return Err(UpdateXmlError::Missing {
                what: "/Update/Properties/@UpdateType",
            });
        }
        Ok(self.found)
    }
}

impl Default for Parser {
    fn default() -> Parser {
        Parser {
            seen_root: false,
            found: UpdateMetadata {
                identity: UpdateIdentity {
                    update_id: String::new(),
                    revision_number: 0,
                },
                update_type: UpdateType::Other(String::new()),
                category_type: None,
                publication_state: None,
                creation_date: None,
                default_language: None,
                legacy_name: None,
                localized: Vec::new(),
                kb_article_ids: Vec::new(),
                security_bulletin_ids: Vec::new(),
                cve_ids: Vec::new(),
                msrc_severity: None,
                support_url: None,
                eula_id: None,
                eula_files: Vec::new(),
                prerequisites: Vec::new(),
                bundled_updates: Vec::new(),
                superseded_update_ids: Vec::new(),
                files: Vec::new(),
                install_behaviour: None,
                uninstall_behaviour: None,
                max_download_size: None,
            },
            has_identity: false,
            has_update_type: false,
            collecting: None,
        }
    }
}

/// An attribute's value by local name, entities resolved.
fn attribute(element: &BytesStart<'_>, name: &str) -> Result<Option<String>, UpdateXmlError> {
    for attr in element.attributes() {
        let attr = attr.map_err(|error| syntax_error(&error.to_string()))?;
        if attr.key.local_name().into_inner() == name {
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|error| syntax_error(&error.to_string()))?;
            return Ok(Some(value.trim().to_owned()));
        }
    }
    Ok(None)
}

fn required_attribute(
    element: &BytesStart<'_>,
    name: &str,
    what: &'static str,
) -> Result<String, UpdateXmlError> {
    attribute(element, name)?.ok_or(UpdateXmlError::Missing { what })
}

fn update_id(element: &BytesStart<'_>, what: &'static str) -> Result<String, UpdateXmlError> {
    let text = required_attribute(element, "UpdateID", what)?;
    wire::normalize_guid(&text).ok_or_else(|| invalid(what, &text, "is not a GUID"))
}

/// An UpdateIdentity element's id and, when present, revision number.
fn identity(
    element: &BytesStart<'_>,
    what: &'static str,
) -> Result<(String, Option<i32>), UpdateXmlError> {
    let update_id = update_id(element, what)?;
    let revision_number = match attribute(element, "RevisionNumber")? {
        Some(text) => Some(text.parse().map_err(|_| {
            invalid(
                "UpdateIdentity/@RevisionNumber",
                &text,
                "is not a 32-bit integer",
            )
        })?),
        None => None,
    };
    Ok((update_id, revision_number))
}

fn behaviour(element: &BytesStart<'_>) -> Result<Behaviour, UpdateXmlError> {
    let flag = |name: &str, what: &'static str| -> Result<bool, UpdateXmlError> {
        match attribute(element, name)? {
            Some(text) => {
                wire::parse_bool(&text).ok_or_else(|| invalid(what, &text, "is not a boolean"))
            }
            None => Ok(false),
        }
    };
    let reboot = match attribute(element, "RebootBehavior")?.as_deref() {
        None | Some("NeverReboots") => RebootBehaviour::NeverReboots,
        Some("AlwaysRequiresReboot") => RebootBehaviour::AlwaysRequiresReboot,
        Some("CanRequestReboot") => RebootBehaviour::CanRequestReboot,
        Some(other) => RebootBehaviour::Unknown(other.to_owned()),
    };
    Ok(Behaviour {
        reboot,
        can_request_user_input: flag("CanRequestUserInput", "@CanRequestUserInput")?,
        requires_network: flag(
            "RequiresNetworkConnectivity",
            "@RequiresNetworkConnectivity",
        )?,
    })
}

fn payload_file(element: &BytesStart<'_>) -> Result<PayloadFile, UpdateXmlError> {
    let size = required_attribute(element, "Size", "Files/File/@Size")?;
    Ok(PayloadFile {
        file_name: required_attribute(element, "FileName", "Files/File/@FileName")?,
        size: size
            .parse()
            .map_err(|_| invalid("Files/File/@Size", &size, "is not a byte count"))?,
        sha1: digest(
            &required_attribute(element, "Digest", "Files/File/@Digest")?,
            "Files/File/@Digest",
        )?,
        sha256: None,
        modified: attribute(element, "Modified")?,
        patching_type: attribute(element, "PatchingType")?,
    })
}

fn eula_file(element: &BytesStart<'_>) -> Result<EulaFile, UpdateXmlError> {
    let size = required_attribute(element, "Size", "EulaFile/@Size")?;
    Ok(EulaFile {
        file_name: required_attribute(element, "FileName", "EulaFile/@FileName")?,
        size: size
            .parse()
            .map_err(|_| invalid("EulaFile/@Size", &size, "is not a byte count"))?,
        language: required_attribute(element, "Language", "EulaFile/@Language")?,
        sha1: digest(
            &required_attribute(element, "Digest", "EulaFile/@Digest")?,
            "EulaFile/@Digest",
        )?,
        sha256: None,
    })
}

/// Whether an AdditionalDigest holds SHA-256 (the only algorithm defined so far).
fn is_sha256(element: &BytesStart<'_>) -> Result<bool, UpdateXmlError> {
    Ok(attribute(element, "Algorithm")?
        .is_some_and(|algorithm| algorithm.eq_ignore_ascii_case("SHA256")))
}

fn digest(text: &str, what: &'static str) -> Result<Vec<u8>, UpdateXmlError> {
    wire::decode_base64(text)
        .ok()
        .filter(|bytes| !bytes.is_empty())
        .ok_or_else(|| invalid(what, text, "is not a base64 digest"))
}

fn update_type(text: &str) -> UpdateType {
    match text {
        "Software" => UpdateType::Software,
        "Driver" => UpdateType::Driver,
        "Category" => UpdateType::Category,
        "Detectoid" => UpdateType::Detectoid,
        other => UpdateType::Other(other.to_owned()),
    }
}

fn category_type(text: &str) -> CategoryType {
    match text {
        "Company" => CategoryType::Company,
        "ProductFamily" => CategoryType::ProductFamily,
        "Product" => CategoryType::Product,
        "UpdateClassification" => CategoryType::UpdateClassification,
        other => CategoryType::Other(other.to_owned()),
    }
}

fn msrc_severity(text: &str) -> MsrcSeverity {
    match text {
        "Critical" => MsrcSeverity::Critical,
        "Important" => MsrcSeverity::Important,
        "Moderate" => MsrcSeverity::Moderate,
        "Low" => MsrcSeverity::Low,
        "" | "Unspecified" => MsrcSeverity::Unspecified,
        other => MsrcSeverity::Other(other.to_owned()),
    }
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> UpdateXmlError {
    UpdateXmlError::Invalid {
        what,
        value: clip(value, 80),
        reason,
    }
}

fn syntax_error(reason: &str) -> UpdateXmlError {
    // Attribute errors carry no position of their own; the element is all we know.
    UpdateXmlError::Xml(MalformedXml::Syntax {
        position: 0,
        reason: reason.to_owned(),
    })
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn push_non_empty(list: &mut Vec<String>, text: &str) {
    if !text.is_empty() {
        list.push(text.to_owned());
    }
}
