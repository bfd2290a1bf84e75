//! The fixture catalogs: sample facts, well-formed metadata in the real shape, and generated catalogs for benchmarks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use patchbay_wsus_upstream::{FixtureCatalog, UpdateKind, ids};
use quick_xml::events::Event;
use quick_xml::reader::NsReader;

fn assert_well_formed(xml: &str) {
    let mut reader = NsReader::from_str(xml);
    loop {
        match reader.read_resolved_event() {
            Ok((_, Event::Eof)) => break,
            Ok(_) => {}
            Err(error) => panic!("malformed metadata: {error}\n{xml}"),
        }
    }
}

#[test]
fn sample_catalog_is_valid_and_well_formed() {
    let sample = FixtureCatalog::sample();
    assert_eq!(sample.len(), 33);
    FixtureCatalog::from_updates(sample.updates().to_vec()).expect("unique ids and file names");
    for update in sample.updates() {
        let xml = update.metadata_xml();
        assert_well_formed(&xml);
        assert!(xml.starts_with(
            "<upd:Update xmlns:upd=\"http://schemas.microsoft.com/msus/2002/12/Update\""
        ));
        assert!(xml.contains(&format!(
            "UpdateID=\"{}\" RevisionNumber=\"{}\"",
            update.update_id, update.revision_number
        )));
    }
    let kinds = |kind| {
        sample
            .updates()
            .iter()
            .filter(|update| update.kind == kind)
            .count()
    };
    assert_eq!(kinds(UpdateKind::Product), 3);
    assert_eq!(kinds(UpdateKind::UpdateClassification), 10);
    assert_eq!(kinds(UpdateKind::Detectoid), 2);
    assert_eq!(kinds(UpdateKind::Software), 14);
    assert_eq!(kinds(UpdateKind::Driver), 1);
}

#[test]
fn sample_facts_are_in_the_metadata() {
    let sample = FixtureCatalog::sample();
    let xml = |id: &str| sample.update(id).expect("in sample").metadata_xml();

    let classification = xml(ids::SECURITY_UPDATES);
    assert!(classification.contains("UpdateType=\"Category\""));
    assert!(
        classification.contains("<cat:CategoryInformation CategoryType=\"UpdateClassification\"")
    );
    assert!(xml(ids::WINDOWS_11).contains(&format!(
        "<upd:AtLeastOne IsCategory=\"true\"><upd:UpdateIdentity UpdateID=\"{}\" /></upd:AtLeastOne>",
        ids::WINDOWS_FAMILY
    )));

    let cumulative = xml(ids::KB_CUMULATIVE_NEW);
    for needle in [
        "<upd:KBArticleID>5034123</upd:KBArticleID>",
        "MsrcSeverity=\"Critical\"",
        "<upd:SecurityBulletinID>MS24-JAN</upd:SecurityBulletinID>",
        "<upd:CveID>CVE-2024-20674</upd:CveID>",
        "<upd:Language>de</upd:Language>",
        "<upd:InstallationBehavior RebootBehavior=\"CanRequestReboot\" />",
        "DigestAlgorithm=\"SHA1\"",
        "<upd:AdditionalDigest Algorithm=\"SHA256\">",
        "Modified=\"2024-01-09T17:00:00Z\"",
    ] {
        assert!(
            cumulative.contains(needle),
            "{needle} missing from\n{cumulative}"
        );
    }
    assert!(cumulative.contains(&format!(
        "<upd:SupersededUpdates><upd:UpdateIdentity UpdateID=\"{}\" /></upd:SupersededUpdates>",
        ids::KB_CUMULATIVE_OLD
    )));
    assert!(cumulative.contains(&format!(
        "<upd:Prerequisites><upd:UpdateIdentity UpdateID=\"{}\" />",
        ids::DETECTOID_WINDOWS_11_X64
    )));
    assert!(cumulative.contains(&format!(
        "<upd:AtLeastOne IsCategory=\"true\"><upd:UpdateIdentity UpdateID=\"{}\" /></upd:AtLeastOne>",
        ids::SECURITY_UPDATES
    )));

    assert!(xml(ids::M365_BUNDLE).contains(&format!(
        "<upd:BundledUpdates><upd:UpdateIdentity UpdateID=\"{}\" RevisionNumber=\"200\" />",
        ids::M365_BUNDLE_X86
    )));
    assert!(xml(ids::SERVER_CUMULATIVE).contains(&format!(
        "<upd:BundledUpdates><upd:AtLeastOne><upd:UpdateIdentity UpdateID=\"{}\" RevisionNumber=\"200\" />",
        ids::SERVER_SSU
    )));
    assert!(xml(ids::SERVER_SSU).contains("ExplicitlyDeployable=\"false\""));

    let upgrade = xml(ids::WINDOWS_11_UPGRADE);
    assert!(upgrade.contains(&format!("EulaID=\"{}\"", ids::WINDOWS_11_EULA)));
    assert!(upgrade.contains("<upd:EulaFile Digest=\""));
    assert!(upgrade.contains("RebootBehavior=\"AlwaysRequiresReboot\""));
    assert!(!upgrade.contains("KBArticleID"));

    assert!(
        xml(ids::M365_SECURITY)
            .contains("<upd:UninstallationBehavior RebootBehavior=\"NeverReboots\" />")
    );
    let driver = xml(ids::INTEL_WIFI_DRIVER);
    assert!(driver.contains("UpdateType=\"Driver\""));
    assert!(
        driver.contains("<drv:WindowsDriverMetaData HardwareID=\"pci\\ven_8086&amp;dev_2723\"")
    );
    assert!(xml(ids::DETECTOID_WINDOWS_11_X64).contains("UpdateType=\"Detectoid\""));
}

#[test]
fn generated_catalogs_are_seeded_sized_and_linked() {
    let started = std::time::Instant::now();
    let catalog = FixtureCatalog::generated(1_000, 7);
    eprintln!("generated 1000 updates in {:?}", started.elapsed());
    assert_eq!(catalog, FixtureCatalog::generated(1_000, 7));
    assert_ne!(catalog, FixtureCatalog::generated(1_000, 8));
    assert_eq!(catalog.len(), 18 + 1_000);
    FixtureCatalog::from_updates(catalog.updates().to_vec()).expect("unique ids and file names");

    let generated = &catalog.updates()[18..];
    let sizes: Vec<usize> = generated
        .iter()
        .map(|update| update.metadata_xml().len())
        .collect();
    assert!(
        sizes.iter().all(|&size| (4_500..=16_500).contains(&size)),
        "sizes {:?}",
        (sizes.iter().min(), sizes.iter().max())
    );
    let average = sizes.iter().sum::<usize>() / sizes.len();
    assert!((8_000..=12_000).contains(&average), "average {average}");

    let superseding = generated
        .iter()
        .filter(|update| !update.superseded_update_ids.is_empty())
        .count();
    assert!(
        (150..=350).contains(&superseding),
        "{superseding} supersede"
    );
    for product in [
        ids::WINDOWS_11,
        ids::WINDOWS_SERVER_2022,
        ids::MICROSOFT_365_APPS,
    ] {
        assert!(
            generated
                .iter()
                .filter(|update| update.products[0] == product)
                .count()
                > 250
        );
    }
    assert!(
        generated
            .iter()
            .any(|update| update.classifications[0] == ids::SECURITY_UPDATES)
    );
    assert!(
        generated
            .iter()
            .any(|update| update.classifications[0] == ids::DEFINITION_UPDATES)
    );
    assert_well_formed(&generated[0].metadata_xml());
}
