//! Update metadata XML in the shape Microsoft Update sends: a security update, a product category and an expired revision.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use patchbay_wsus::update_xml::{self, UpdateXmlError};
use patchbay_wsus::{
    Behaviour, CategoryType, MalformedXml, MsrcSeverity, Prerequisite, RebootBehaviour,
    UpdateIdentity, UpdateType,
};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/update")
            .join(name),
    )
    .unwrap()
}

fn b64(text: &str) -> Vec<u8> {
    STANDARD.decode(text).unwrap()
}

fn identity(update_id: &str, revision_number: i32) -> UpdateIdentity {
    UpdateIdentity::new(update_id, revision_number).unwrap()
}

#[test]
fn a_security_update() {
    let update = update_xml::parse(&fixture("software_cumulative.xml")).unwrap();
    assert_eq!(
        update.identity,
        identity("8d1c6f2e-3a55-4b8e-9a0c-6b1f5d2e7a10", 203)
    );
    assert_eq!(update.update_type, UpdateType::Software);
    assert_eq!(update.category_type, None);
    assert_eq!(update.publication_state.as_deref(), Some("Published"));
    assert!(!update.is_expired());
    assert_eq!(
        update.creation_date.as_deref(),
        Some("2024-06-11T17:00:00.000Z")
    );
    assert_eq!(update.default_language.as_deref(), Some("en"));
    assert_eq!(
        update.legacy_name.as_deref(),
        Some("KB5039212-Win11-23H2-x64")
    );
    assert_eq!(update.kb_article_ids, ["5039212"]);
    assert_eq!(update.security_bulletin_ids, ["MS24-JUN"]);
    assert_eq!(update.cve_ids, ["CVE-2024-30080", "CVE-2024-30078"]);
    assert_eq!(update.msrc_severity, Some(MsrcSeverity::Critical));
    assert_eq!(
        update.support_url.as_deref(),
        Some("http://support.microsoft.com")
    );
    assert_eq!(
        update.eula_id.as_deref(),
        Some("04d85ac2-c29f-4414-9cb6-5bcd6c059070")
    );
    assert_eq!(update.max_download_size, Some(412_345_678));

    // Texts: preferred language, its primary subtag, else the default language.
    assert_eq!(update.localized.len(), 2);
    assert!(
        update
            .title(&["de"])
            .unwrap()
            .starts_with("2024-06 Kumulatives Update")
    );
    assert!(
        update
            .title(&["de-AT", "en"])
            .unwrap()
            .starts_with("2024-06 Kumulatives Update")
    );
    assert!(
        update
            .title(&["fr"])
            .unwrap()
            .starts_with("2024-06 Cumulative Update")
    );
    assert!(update.title(&[]).unwrap().ends_with("(KB5039212)"));
    assert!(
        update
            .description(&["DE"])
            .unwrap()
            .contains("beheben & die Sicherheit")
    );

    let eula = &update.eula_files[..];
    assert_eq!(eula.len(), 1);
    assert_eq!(
        eula[0].file_name,
        "04d85ac2-c29f-4414-9cb6-5bcd6c059070.txt"
    );
    assert_eq!((eula[0].size, eula[0].language.as_str()), (3456, "en"));
    assert_eq!(eula[0].sha1, b64("DiJ7q1ZOLqWavNk6MmSgyyQMaHg="));
    assert_eq!(
        eula[0].sha256,
        Some(b64("fREJqoAgqx/s6GZYcSg6idgXBlbFkMZuElD3Xler1rw="))
    );

    assert_eq!(
        update.prerequisites,
        [
            Prerequisite {
                any_of: vec!["3b4b8621-726e-43a6-b43b-37d07ec7019f".into()],
                is_category: false
            },
            Prerequisite {
                any_of: vec!["0fa1201d-4330-4fa8-8ae9-b877473b6441".into()],
                is_category: true
            },
            Prerequisite {
                any_of: vec!["72e7624a-5b00-45d2-b92f-e561c0a6a160".into()],
                is_category: true
            },
            Prerequisite {
                any_of: vec![
                    "1d3a7b4c-5e6f-4a8b-9c0d-1e2f3a4b5c6d".into(),
                    "2e4b8c5d-6f70-4b9c-8d1e-2f3a4b5c6d7e".into()
                ],
                is_category: false
            },
        ]
    );
    assert_eq!(
        update.category_ids(),
        [
            "0fa1201d-4330-4fa8-8ae9-b877473b6441",
            "72e7624a-5b00-45d2-b92f-e561c0a6a160"
        ]
    );
    assert_eq!(
        update.bundled_updates,
        [
            identity("5f1e2d3c-4b5a-4697-8877-665544332211", 1),
            identity("6a2b3c4d-5e6f-4071-8293-a4b5c6d7e8f9", 0),
        ]
    );
    assert_eq!(
        update.superseded_update_ids,
        [
            "9e8d7c6b-5a49-4837-a625-14f3e2d1c0b9",
            "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
        ]
    );

    // Only /Update/Files counts, not the cbsar:Files inside the applicability rules.
    assert_eq!(update.files.len(), 2);
    let cab = &update.files[0];
    assert_eq!(cab.file_name, "windows11.0-kb5039212-x64.cab");
    assert_eq!(cab.size, 412_345_678);
    assert_eq!(cab.sha1, b64("CY6geqTG+vm+QoeXy3KzSrow3XE="));
    assert_eq!(
        cab.sha256,
        Some(b64("ZUjZVXkKIpJcHiNQjsTiv/uORdgCYbSywfnYybDRUrY="))
    );
    assert_eq!(cab.modified.as_deref(), Some("2024-06-07T21:14:36.000Z"));
    assert_eq!(cab.patching_type.as_deref(), Some("SelfContained"));
    let psf = &update.files[1];
    assert_eq!(
        (psf.patching_type.as_deref(), psf.sha256.as_ref()),
        (Some("Express"), None)
    );

    assert_eq!(
        update.install_behaviour,
        Some(Behaviour {
            reboot: RebootBehaviour::CanRequestReboot,
            can_request_user_input: false,
            requires_network: true
        })
    );
    assert_eq!(
        update.uninstall_behaviour.as_ref().map(|b| &b.reboot),
        Some(&RebootBehaviour::AlwaysRequiresReboot)
    );
    assert!(update.uninstallable());
}

#[test]
fn a_product_category() {
    let product = update_xml::parse(&fixture("category_product.xml")).unwrap();
    assert_eq!(
        product.identity,
        identity("72e7624a-5b00-45d2-b92f-e561c0a6a160", 200)
    );
    assert_eq!(product.update_type, UpdateType::Category);
    assert_eq!(product.category_type, Some(CategoryType::Product));
    assert_eq!(product.title(&["en"]), Some("Windows 11"));
    // A product's parent (its product family) is an IsCategory prerequisite.
    assert_eq!(
        product.category_ids(),
        ["6964aab4-c5b5-43bd-a17d-ffb4346a8e1d"]
    );
    assert!(
        product.files.is_empty() && product.install_behaviour.is_none() && !product.uninstallable()
    );
    assert_eq!(product.msrc_severity, None);
}

#[test]
fn an_expired_revision() {
    let expired = update_xml::parse(&fixture("software_expired.xml")).unwrap();
    assert!(expired.is_expired());
    assert_eq!(expired.identity.revision_number, 105);
    assert_eq!(expired.msrc_severity, Some(MsrcSeverity::Important));
    assert!(expired.title(&[]).unwrap().contains("KB5037771"));
}

#[test]
fn classifications_and_unusual_values() {
    let xml = r#"<Update><UpdateIdentity UpdateID="0fa1201d-4330-4fa8-8ae9-b877473b6441" RevisionNumber="1"/>
        <Properties UpdateType="Category" MsrcSeverity="Severe"><InstallationBehavior RebootBehavior="Sometimes"/></Properties>
        <HandlerSpecificData><CategoryInformation CategoryType="UpdateClassification"/></HandlerSpecificData></Update>"#;
    let classification = update_xml::parse(xml).unwrap();
    assert_eq!(
        classification.category_type,
        Some(CategoryType::UpdateClassification)
    );
    assert_eq!(
        classification.msrc_severity,
        Some(MsrcSeverity::Other("Severe".into()))
    );
    assert_eq!(
        classification.install_behaviour.clone().map(|b| b.reboot),
        Some(RebootBehaviour::Unknown("Sometimes".into()))
    );
    assert_eq!(classification.title(&["en"]), None);

    let other = r#"<Update><UpdateIdentity UpdateID="0fa1201d-4330-4fa8-8ae9-b877473b6441" RevisionNumber="1"/><Properties UpdateType="DriverSet"/><Properties/></Update>"#;
    assert_eq!(
        update_xml::parse(other).unwrap().update_type,
        UpdateType::Other("DriverSet".into())
    );
}

#[test]
fn missing_and_invalid_fields_are_named() {
    let no_identity = r#"<upd:Update xmlns:upd="http://schemas.microsoft.com/msus/2002/12/Update"><upd:Properties UpdateType="Software"/></upd:Update>"#;
    assert_eq!(
        update_xml::parse(no_identity),
        Err(UpdateXmlError::Missing {
            what: "/Update/UpdateIdentity"
        })
    );
    let no_revision = r#"<Update><UpdateIdentity UpdateID="0fa1201d-4330-4fa8-8ae9-b877473b6441"/><Properties UpdateType="Software"/></Update>"#;
    assert!(matches!(
        update_xml::parse(no_revision),
        Err(UpdateXmlError::Missing { .. })
    ));
    let no_type = r#"<Update><UpdateIdentity UpdateID="0fa1201d-4330-4fa8-8ae9-b877473b6441" RevisionNumber="1"/></Update>"#;
    assert_eq!(
        update_xml::parse(no_type),
        Err(UpdateXmlError::Missing {
            what: "/Update/Properties/@UpdateType"
        })
    );
    let bad_guid = r#"<Update><UpdateIdentity UpdateID="windows" RevisionNumber="1"/></Update>"#;
    assert!(matches!(
        update_xml::parse(bad_guid),
        Err(UpdateXmlError::Invalid { .. })
    ));
    let bad_size = r#"<Update><UpdateIdentity UpdateID="0fa1201d-4330-4fa8-8ae9-b877473b6441" RevisionNumber="1"/><Properties UpdateType="Software"/>
        <Files><File Digest="CY6geqTG+vm+QoeXy3KzSrow3XE=" FileName="a.cab" Size="-1"/></Files></Update>"#;
    assert!(matches!(
        update_xml::parse(bad_size),
        Err(UpdateXmlError::Invalid {
            what: "Files/File/@Size",
            ..
        })
    ));
    let bad_digest = r#"<Update><UpdateIdentity UpdateID="0fa1201d-4330-4fa8-8ae9-b877473b6441" RevisionNumber="1"/><Properties UpdateType="Software"/>
        <Files><File Digest="not base64!" FileName="a.cab" Size="1"/></Files></Update>"#;
    assert!(matches!(
        update_xml::parse(bad_digest),
        Err(UpdateXmlError::Invalid {
            what: "Files/File/@Digest",
            ..
        })
    ));
    let wrong_root = r#"<Envelope><Update/></Envelope>"#;
    assert_eq!(
        update_xml::parse(wrong_root),
        Err(UpdateXmlError::WrongRoot {
            found: "Envelope".into()
        })
    );
    let truncated = &fixture("software_cumulative.xml")[..2000];
    assert!(matches!(
        update_xml::parse(truncated),
        Err(UpdateXmlError::Xml(
            MalformedXml::Truncated { .. } | MalformedXml::Syntax { .. }
        ))
    ));
    assert_eq!(
        update_xml::parse("  "),
        Err(UpdateXmlError::Xml(MalformedXml::NoRoot))
    );
}

#[test]
fn refuses_dtds_and_unknown_entities() {
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><Update>&lol2;</Update>"#;
    assert!(matches!(
        update_xml::parse(bomb),
        Err(UpdateXmlError::Xml(MalformedXml::DocType { .. }))
    ));
    let entity = r#"<Update><UpdateIdentity UpdateID="0fa1201d-4330-4fa8-8ae9-b877473b6441" RevisionNumber="1"/>
        <LocalizedPropertiesCollection><LocalizedProperties><Title>&xxe;</Title></LocalizedProperties></LocalizedPropertiesCollection></Update>"#;
    assert!(matches!(
        update_xml::parse(entity),
        Err(UpdateXmlError::Xml(MalformedXml::UnknownEntity { name, .. })) if name == "xxe"
    ));
    let in_attribute = r#"<Update><UpdateIdentity UpdateID="&xxe;" RevisionNumber="1"/></Update>"#;
    assert!(matches!(
        update_xml::parse(in_attribute),
        Err(UpdateXmlError::Xml(_))
    ));
    let deep = format!(
        "<Update>{}{}</Update>",
        "<a>".repeat(300),
        "</a>".repeat(300)
    );
    assert!(matches!(
        update_xml::parse(&deep),
        Err(UpdateXmlError::Xml(MalformedXml::TooDeep { .. }))
    ));
}
