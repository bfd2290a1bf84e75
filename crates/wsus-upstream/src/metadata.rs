//! Renders a fixture revision as update-metadata XML (`upd:Update`), the text carried in `XmlUpdateBlob`.

use std::fmt::Write as _;

use crate::content::FileDigests;
use crate::fixture::{FixtureUpdate, UpdateKind};
use crate::soap::{escape_attribute, escape_text};

const UPDATE_NS: &str = "http://schemas.microsoft.com/msus/2002/12/Update";
const CATEGORY_NS: &str = "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/Category";
const BASE_RULES_NS: &str = "http://schemas.microsoft.com/msus/2002/12/BaseApplicabilityRules";
const LOGICAL_RULES_NS: &str =
    "http://schemas.microsoft.com/msus/2002/12/LogicalApplicabilityRules";
const COMMAND_LINE_NS: &str =
    "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/CommandLineInstallation";
const DRIVER_NS: &str = "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers/WindowsDriver";
/// Microsoft's publisher id, as on every Microsoft Update revision.
const MICROSOFT_PUBLISHER_ID: &str = "395392a0-19c0-48b7-a927-f7c15066d905";

/// Renders `update`; `digests(name, size)` gives the digests of each content file.
pub(crate) fn render(
    update: &FixtureUpdate,
    mut digests: impl FnMut(&str, u64) -> FileDigests,
) -> String {
    let mut xml = String::with_capacity(
        3072 + update
            .localized
            .iter()
            .map(|t| t.description.len())
            .sum::<usize>(),
    );
    let handler = match update.kind {
        kind if kind.category_type().is_some() => Some(CATEGORY_NS),
        UpdateKind::Software if !update.files.is_empty() => Some(COMMAND_LINE_NS),
        UpdateKind::Driver => Some(DRIVER_NS),
        _ => None,
    };
    let update_type = match update.kind {
        UpdateKind::Detectoid => "Detectoid",
        UpdateKind::Software => "Software",
        UpdateKind::Driver => "Driver",
        _ => "Category",
    };
    let _ = write!(
        xml,
        "<upd:Update xmlns:upd=\"{UPDATE_NS}\" xmlns:bar=\"{BASE_RULES_NS}\" xmlns:lar=\"{LOGICAL_RULES_NS}\" xmlns:cat=\"{CATEGORY_NS}\" xmlns:cmd=\"{COMMAND_LINE_NS}\" xmlns:drv=\"{DRIVER_NS}\">\
         <upd:UpdateIdentity UpdateID=\"{}\" RevisionNumber=\"{}\" />",
        update.update_id, update.revision_number
    );

    // Properties
    let default_language = update
        .localized
        .first()
        .map_or("en", |t| t.language.as_str());
    let _ = write!(
        xml,
        "<upd:Properties DefaultPropertiesLanguage=\"{}\" UpdateType=\"{update_type}\"",
        escape_attribute(default_language)
    );
    if let Some(handler) = handler {
        let _ = write!(xml, " Handler=\"{handler}\"");
    }
    if !update.explicitly_deployable || update.kind == UpdateKind::Detectoid {
        xml.push_str(" ExplicitlyDeployable=\"false\"");
    }
    let download_size: u64 = update.files.iter().map(|file| file.size).sum();
    if !update.files.is_empty() {
        let _ = write!(
            xml,
            " MaxDownloadSize=\"{download_size}\" MinDownloadSize=\"{download_size}\""
        );
    }
    let _ = write!(
        xml,
        " PublicationState=\"{}\" CreationDate=\"{}\" PublisherID=\"{MICROSOFT_PUBLISHER_ID}\"",
        update.publication_state.as_str(),
        escape_attribute(&update.creation_date)
    );
    if let Some(severity) = update.msrc_severity {
        let _ = write!(xml, " MsrcSeverity=\"{}\"", severity.as_str());
    }
    if let Some(eula) = &update.eula {
        let _ = write!(xml, " EulaID=\"{}\"", escape_attribute(&eula.eula_id));
    }
    xml.push('>');
    text_element(&mut xml, "upd:SupportUrl", update.support_url.as_deref());
    text_element(
        &mut xml,
        "upd:SecurityBulletinID",
        update.security_bulletin_id.as_deref(),
    );
    text_element(&mut xml, "upd:KBArticleID", update.kb_article_id.as_deref());
    for cve in &update.cve_ids {
        text_element(&mut xml, "upd:CveID", Some(cve));
    }
    if let Some(reboot) = update.installation_reboot {
        let _ = write!(
            xml,
            "<upd:InstallationBehavior RebootBehavior=\"{}\" />",
            reboot.as_str()
        );
    }
    if let Some(reboot) = update.uninstallation_reboot {
        let _ = write!(
            xml,
            "<upd:UninstallationBehavior RebootBehavior=\"{}\" />",
            reboot.as_str()
        );
    }
    xml.push_str("</upd:Properties>");

    // LocalizedPropertiesCollection
    xml.push_str("<upd:LocalizedPropertiesCollection>");
    for text in &update.localized {
        xml.push_str("<upd:LocalizedProperties>");
        text_element(&mut xml, "upd:Language", Some(&text.language));
        text_element(&mut xml, "upd:Title", Some(&text.title));
        if !text.description.is_empty() {
            text_element(&mut xml, "upd:Description", Some(&text.description));
        }
        if update.uninstallation_reboot.is_some() {
            text_element(
                &mut xml,
                "upd:UninstallNotes",
                Some(
                    "This software update can be removed via Add or Remove Programs in Control Panel.",
                ),
            );
        }
        if let Some(kb) = &update.kb_article_id {
            let _ = write!(
                xml,
                "<upd:MoreInfoUrl>https://support.microsoft.com/kb/{}</upd:MoreInfoUrl>",
                escape_text(kb)
            );
        }
        xml.push_str("</upd:LocalizedProperties>");
    }
    if let Some(eula) = &update.eula {
        let digest = digests(&eula.file_name, eula.size);
        let _ = write!(
            xml,
            "<upd:EulaFile Digest=\"{}\" DigestAlgorithm=\"SHA1\" FileName=\"{}\" Size=\"{}\" Language=\"{}\">\
             <upd:AdditionalDigest Algorithm=\"SHA256\">{}</upd:AdditionalDigest></upd:EulaFile>",
            digest.sha1_base64(),
            escape_attribute(&eula.file_name),
            eula.size,
            escape_attribute(&eula.language),
            digest.sha256_base64()
        );
    }
    xml.push_str("</upd:LocalizedPropertiesCollection>");

    render_relationships(&mut xml, update);

    if !update.applicability_rules.is_empty() || update.driver.is_some() {
        xml.push_str("<upd:ApplicabilityRules>");
        xml.push_str(&update.applicability_rules);
        if let Some(driver) = &update.driver {
            let _ = write!(
                xml,
                "<upd:Metadata><drv:WindowsDriverMetaData HardwareID=\"{hw}\" Manufacturer=\"{m}\" Company=\"{m}\" Provider=\"{m}\" \
                 DriverVerDate=\"{date}\" DriverVerVersion=\"{version}\" Class=\"{class}\" /></upd:Metadata>",
                hw = escape_attribute(&driver.hardware_id),
                m = escape_attribute(&driver.manufacturer),
                date = escape_attribute(&driver.version_date),
                version = escape_attribute(&driver.version),
                class = escape_attribute(&driver.class),
            );
        }
        xml.push_str("</upd:ApplicabilityRules>");
    }

    if !update.files.is_empty() {
        xml.push_str("<upd:Files>");
        for file in &update.files {
            let digest = digests(&file.file_name, file.size);
            let _ = write!(
                xml,
                "<upd:File Digest=\"{}\" DigestAlgorithm=\"SHA1\" FileName=\"{}\" Size=\"{}\" Modified=\"{}\" PatchingType=\"SelfContained\">\
                 <upd:AdditionalDigest Algorithm=\"SHA256\">{}</upd:AdditionalDigest></upd:File>",
                digest.sha1_base64(),
                escape_attribute(&file.file_name),
                file.size,
                escape_attribute(&file.modified),
                digest.sha256_base64()
            );
        }
        xml.push_str("</upd:Files>");
    }

    if let Some(category_type) = update.kind.category_type() {
        let _ = write!(
            xml,
            "<upd:HandlerSpecificData type=\"cat:Category\"><cat:CategoryInformation CategoryType=\"{category_type}\" \
             ProhibitsSubcategories=\"{}\" ProhibitsUpdates=\"false\" DisplayOrder=\"0\" ExcludedByDefault=\"false\" />\
             </upd:HandlerSpecificData>",
            update.kind == UpdateKind::UpdateClassification || update.kind == UpdateKind::Product
        );
    } else if handler == Some(COMMAND_LINE_NS) {
        let program = update
            .files
            .first()
            .map_or("", |file| file.file_name.as_str());
        let _ = write!(
            xml,
            "<upd:HandlerSpecificData type=\"cmd:CommandLineInstallation\"><cmd:InstallCommand Arguments=\"/quiet /norestart\" \
             Program=\"{}\" RebootByDefault=\"false\" DefaultResult=\"Failed\"><cmd:ReturnCode Reboot=\"false\" Result=\"Succeeded\" Code=\"0\" />\
             <cmd:ReturnCode Reboot=\"true\" Result=\"Succeeded\" Code=\"3010\" /></cmd:InstallCommand></upd:HandlerSpecificData>",
            escape_attribute(program)
        );
    }
    xml.push_str("</upd:Update>");
    xml
}

fn render_relationships(xml: &mut String, update: &FixtureUpdate) {
    let has_prerequisites = !update.prerequisites.is_empty()
        || !update.parent_categories.is_empty()
        || !update.classifications.is_empty()
        || !update.products.is_empty();
    if !has_prerequisites
        && update.bundled_updates.is_empty()
        && update.superseded_update_ids.is_empty()
    {
        return;
    }
    xml.push_str("<upd:Relationships>");
    if has_prerequisites {
        xml.push_str("<upd:Prerequisites>");
        for id in &update.prerequisites {
            identity(xml, id, None);
        }
        for group in [
            &update.parent_categories,
            &update.classifications,
            &update.products,
        ] {
            if !group.is_empty() {
                xml.push_str("<upd:AtLeastOne IsCategory=\"true\">");
                for id in group {
                    identity(xml, id, None);
                }
                xml.push_str("</upd:AtLeastOne>");
            }
        }
        xml.push_str("</upd:Prerequisites>");
    }
    if !update.bundled_updates.is_empty() {
        xml.push_str("<upd:BundledUpdates>");
        if update.bundled_in_at_least_one {
            xml.push_str("<upd:AtLeastOne>");
        }
        for bundled in &update.bundled_updates {
            identity(xml, &bundled.update_id, Some(bundled.revision_number));
        }
        if update.bundled_in_at_least_one {
            xml.push_str("</upd:AtLeastOne>");
        }
        xml.push_str("</upd:BundledUpdates>");
    }
    if !update.superseded_update_ids.is_empty() {
        xml.push_str("<upd:SupersededUpdates>");
        for id in &update.superseded_update_ids {
            identity(xml, id, None);
        }
        xml.push_str("</upd:SupersededUpdates>");
    }
    xml.push_str("</upd:Relationships>");
}

fn identity(xml: &mut String, update_id: &str, revision: Option<u32>) {
    let _ = write!(
        xml,
        "<upd:UpdateIdentity UpdateID=\"{}\"",
        escape_attribute(update_id)
    );
    if let Some(revision) = revision {
        let _ = write!(xml, " RevisionNumber=\"{revision}\"");
    }
    xml.push_str(" />");
}

fn text_element(xml: &mut String, name: &str, text: Option<&str>) {
    if let Some(text) = text {
        let _ = write!(xml, "<{name}>{}</{name}>", escape_text(text));
    }
}
