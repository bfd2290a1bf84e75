//! The sample catalog: Microsoft categories, the ten real classifications, two detectoids and fifteen realistic updates.
//!
//! Facts tests can rely on (ids are in [`ids`]; the product, company and update GUIDs are
//! made-up fixtures, the classification GUIDs are the real ones):
//!
//! | Catalog order | Entry | Facts |
//! |---|---|---|
//! | 1–6 | Company Microsoft; families Windows, Office; products Windows 11, Windows Server 2022 (family Windows), Microsoft 365 Apps (family Office) | revision 1 |
//! | 7–16 | classifications Critical, Security, Definition, Feature Packs, Service Packs, Tools, Update Rollups, Updates, Drivers, Upgrades | revision 1, in that order |
//! | 17–18 | detectoids "Windows 11 x64", "Microsoft 365 Apps installed" | revision 100 |
//! | 19 | [`ids::KB_CUMULATIVE_OLD`] KB5033375, 2023-12 cumulative, Windows 11, Security, Important, CVE-2023-35628 | superseded by 20 |
//! | 20 | [`ids::KB_CUMULATIVE_NEW`] KB5034123, 2024-01 cumulative, Windows 11, Security, Critical, CVE-2024-20674 + CVE-2024-20700, two files | supersedes 19 |
//! | 21 | [`ids::SERVER_SSU`] KB5034439 servicing stack, Windows Server 2022, Security, Low, not explicitly deployable | bundled in 22 |
//! | 22 | [`ids::SERVER_CUMULATIVE`] KB5034129, Windows Server 2022, Security, Critical, no files | bundles 21 as `BundledUpdates/AtLeastOne` |
//! | 23 | [`ids::DEFENDER_DEFINITIONS`] KB2267602, Definition Updates, Windows 11 + Windows Server 2022, NeverReboots | |
//! | 24 | [`ids::M365_SECURITY`] KB5002537, Microsoft 365 Apps, Security, Moderate, uninstallable | |
//! | 25 | [`ids::OUT_OF_BAND_CRITICAL`] KB5034204, Windows 11, Critical Updates, AlwaysRequiresReboot | |
//! | 26 | [`ids::FEATURE_EXPERIENCE_PACK`] KB5034848, Windows 11, Feature Packs | |
//! | 27 | [`ids::MSRT`] KB890830, Windows 11 + Windows Server 2022, Update Rollups | |
//! | 28 | [`ids::WSL_TOOL`] KB5034901, Windows 11, Tools, uninstallable | |
//! | 29–30 | [`ids::M365_BUNDLE_X86`], [`ids::M365_BUNDLE_X64`], Microsoft 365 Apps, Updates, not explicitly deployable | bundled in 31 |
//! | 31 | [`ids::M365_BUNDLE`] KB5002560, Microsoft 365 Apps, Updates, no files | bundles 29 and 30 as `BundledUpdates/UpdateIdentity` |
//! | 32 | [`ids::WINDOWS_11_UPGRADE`] no KB, Windows 11, Upgrades, AlwaysRequiresReboot | EULA [`ids::WINDOWS_11_EULA`] |
//! | 33 | [`ids::INTEL_WIFI_DRIVER`] `UpdateType="Driver"`, Windows 11, Drivers | |
//!
//! Software updates carry the detectoid of their product as a plain prerequisite (Windows 11 →
//! "Windows 11 x64", Microsoft 365 Apps → "Microsoft 365 Apps installed"; Windows Server 2022
//! updates have none). With the default `compress_every` of 3, catalog positions 3, 6, 9, …, 33
//! (Office, Microsoft 365 Apps, Definition Updates, Tools, Drivers, the Microsoft 365 detectoid,
//! the servicing stack, the Microsoft 365 security update, the MSRT, the x64 bundle child and the
//! driver) are sent as `XmlUpdateBlobCompressed`. Every update has English and German titles.

use crate::fixture::{
    DriverInfo, FixtureCatalog, FixtureEula, FixtureFile, FixtureUpdate, LocalizedText,
    MsrcSeverity, RebootBehavior, RevisionRef, UpdateKind,
};

/// Ids of the sample catalog.
pub mod ids {
    /// Company "Microsoft Corporation".
    pub const MICROSOFT: &str = "908c9d42-53c6-4602-aa4f-6649f93cc092";
    /// Product family "Windows".
    pub const WINDOWS_FAMILY: &str = "0184bb94-0edb-4fe3-9d2c-3a3ed5b5b530";
    /// Product family "Office".
    pub const OFFICE_FAMILY: &str = "6f909099-6ee8-4942-915a-72ad5b1b8243";
    /// Product "Windows 11".
    pub const WINDOWS_11: &str = "df23b794-d06b-4a1e-8549-f5aa50ef8f2c";
    /// Product "Windows Server 2022".
    pub const WINDOWS_SERVER_2022: &str = "4aa915f0-298e-4e01-9f11-f440f34a6f9f";
    /// Product "Microsoft 365 Apps".
    pub const MICROSOFT_365_APPS: &str = "6bef0eda-84aa-43ac-b5f5-5e11e52d5e9d";

    /// Classification "Critical Updates" (real id).
    pub const CRITICAL_UPDATES: &str = "e6cf1350-c01b-414d-a61f-263d14d133b4";
    /// Classification "Security Updates" (real id).
    pub const SECURITY_UPDATES: &str = "0fa1201d-4330-4fa8-8ae9-b877473b6441";
    /// Classification "Definition Updates" (real id).
    pub const DEFINITION_UPDATES: &str = "e0789628-ce08-4437-be74-2495b842f43b";
    /// Classification "Feature Packs" (real id).
    pub const FEATURE_PACKS: &str = "b54e7d24-7add-428f-8b75-90a396fa584f";
    /// Classification "Service Packs" (real id).
    pub const SERVICE_PACKS: &str = "68c5b0a3-d1a6-4553-ae49-01d3a7827828";
    /// Classification "Tools" (real id).
    pub const TOOLS: &str = "b4832bd8-e735-4761-8daf-37f882276dab";
    /// Classification "Update Rollups" (real id).
    pub const UPDATE_ROLLUPS: &str = "28bc880e-0592-4cbf-8f95-c79b17911d5f";
    /// Classification "Updates" (real id).
    pub const UPDATES: &str = "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83";
    /// Classification "Drivers" (real id).
    pub const DRIVERS: &str = "ebfc1fc5-71a4-4f7b-9aca-3b9a503104a0";
    /// Classification "Upgrades" (real id).
    pub const UPGRADES: &str = "3689bdc8-b205-4af4-8d4a-a63924c5e9d5";

    /// Detectoid "Windows 11 x64".
    pub const DETECTOID_WINDOWS_11_X64: &str = "d8b308f5-6daf-4627-8e90-5bbceae5cfa8";
    /// Detectoid "Microsoft 365 Apps installed".
    pub const DETECTOID_M365_INSTALLED: &str = "b25e1cfb-77a4-4088-b515-3ee5c67f4b94";

    /// KB5033375, superseded by [`KB_CUMULATIVE_NEW`].
    pub const KB_CUMULATIVE_OLD: &str = "7f035e2e-d1bb-4ff3-a215-71322e20cc41";
    /// KB5034123, supersedes [`KB_CUMULATIVE_OLD`].
    pub const KB_CUMULATIVE_NEW: &str = "4148bb5e-2b1b-456d-a13e-db8d6d33c3e8";
    /// KB5034439 servicing stack, bundled in [`SERVER_CUMULATIVE`].
    pub const SERVER_SSU: &str = "e48bf7f1-71bb-4de0-8917-0f7c808b78da";
    /// KB5034129, bundle parent of [`SERVER_SSU`].
    pub const SERVER_CUMULATIVE: &str = "a185b249-2ed9-4697-bcac-cc01a19d1e98";
    /// KB2267602 Defender definitions.
    pub const DEFENDER_DEFINITIONS: &str = "c88b0477-3a15-4bd8-af69-e15f4345572c";
    /// KB5002537 Microsoft 365 Apps security update.
    pub const M365_SECURITY: &str = "97689dee-08cd-490c-ad37-57d58ff75424";
    /// KB5034204 critical (non-security) update.
    pub const OUT_OF_BAND_CRITICAL: &str = "2e339acf-77b9-4549-8139-278ece823523";
    /// KB5034848 feature pack.
    pub const FEATURE_EXPERIENCE_PACK: &str = "fb0ccb59-6bd3-4f1c-9b93-bb9ccbf120d4";
    /// KB890830 Malicious Software Removal Tool.
    pub const MSRT: &str = "60f86da0-29d0-4ec3-92c2-3d1a5b457311";
    /// KB5034901 tool.
    pub const WSL_TOOL: &str = "4e0fba2d-4dea-4b44-b95b-95a8f182257c";
    /// KB5002560 bundle parent of the two children below.
    pub const M365_BUNDLE: &str = "c2bb1cb6-9140-4475-a7f5-0d7c8e87eeb0";
    /// x86 child of [`M365_BUNDLE`].
    pub const M365_BUNDLE_X86: &str = "534d23de-d4be-471a-abb9-44f5e31563e1";
    /// x64 child of [`M365_BUNDLE`].
    pub const M365_BUNDLE_X64: &str = "afc5f21c-3ac7-496a-98b7-ddbbacde91ff";
    /// Windows 11 23H2 feature update, needs [`WINDOWS_11_EULA`].
    pub const WINDOWS_11_UPGRADE: &str = "c91d5e72-048d-492f-bed5-b8b78fc04914";
    /// The EulaID of [`WINDOWS_11_UPGRADE`].
    pub const WINDOWS_11_EULA: &str = "0e4f8e70-4c20-4e61-af9b-96233cb780bc";
    /// Intel Wi-Fi driver.
    pub const INTEL_WIFI_DRIVER: &str = "d69cf1d5-8f4b-4790-a8d9-7396d6bd9ad4";
}

/// (id, English, German) of the ten classifications, in catalog order.
pub(crate) const CLASSIFICATIONS: [(&str, &str, &str); 10] = [
    (
        ids::CRITICAL_UPDATES,
        "Critical Updates",
        "Kritische Updates",
    ),
    (
        ids::SECURITY_UPDATES,
        "Security Updates",
        "Sicherheitsupdates",
    ),
    (
        ids::DEFINITION_UPDATES,
        "Definition Updates",
        "Definitionsupdates",
    ),
    (ids::FEATURE_PACKS, "Feature Packs", "Feature Packs"),
    (ids::SERVICE_PACKS, "Service Packs", "Service Packs"),
    (ids::TOOLS, "Tools", "Tools"),
    (ids::UPDATE_ROLLUPS, "Update Rollups", "Updaterollups"),
    (ids::UPDATES, "Updates", "Updates"),
    (ids::DRIVERS, "Drivers", "Treiber"),
    (ids::UPGRADES, "Upgrades", "Upgrades"),
];

/// Company, families, products, classifications and detectoids (catalog positions 1–18).
pub(crate) fn categories_and_detectoids() -> Vec<FixtureUpdate> {
    let category = |kind, id: &str, en: &str, de: &str, parent: Option<&str>| {
        let mut category = FixtureUpdate::category(kind, id, en, parent);
        category.localized.push(LocalizedText::new("de", de, ""));
        category
    };
    let mut entries = vec![
        category(
            UpdateKind::Company,
            ids::MICROSOFT,
            "Microsoft Corporation",
            "Microsoft Corporation",
            None,
        ),
        category(
            UpdateKind::ProductFamily,
            ids::WINDOWS_FAMILY,
            "Windows",
            "Windows",
            Some(ids::MICROSOFT),
        ),
        category(
            UpdateKind::ProductFamily,
            ids::OFFICE_FAMILY,
            "Office",
            "Office",
            Some(ids::MICROSOFT),
        ),
        category(
            UpdateKind::Product,
            ids::WINDOWS_11,
            "Windows 11",
            "Windows 11",
            Some(ids::WINDOWS_FAMILY),
        ),
        category(
            UpdateKind::Product,
            ids::WINDOWS_SERVER_2022,
            "Windows Server 2022",
            "Windows Server 2022",
            Some(ids::WINDOWS_FAMILY),
        ),
        category(
            UpdateKind::Product,
            ids::MICROSOFT_365_APPS,
            "Microsoft 365 Apps",
            "Microsoft 365 Apps",
            Some(ids::OFFICE_FAMILY),
        ),
    ];
    for (id, en, de) in CLASSIFICATIONS {
        entries.push(category(UpdateKind::UpdateClassification, id, en, de, None));
    }
    let detectoid = |id: &str, en: &str, de: &str, rules: &str| {
        let mut detectoid = category(UpdateKind::Detectoid, id, en, de, None);
        detectoid.revision_number = 100;
        detectoid.applicability_rules = rules.to_owned();
        detectoid
    };
    entries.push(detectoid(
        ids::DETECTOID_WINDOWS_11_X64,
        "Windows 11 x64",
        "Windows 11 x64",
        "<upd:IsInstalled><lar:And><bar:WindowsVersion Comparison=\"GreaterThanOrEqualTo\" MajorVersion=\"10\" MinorVersion=\"0\" BuildNumber=\"22000\" /><bar:Processor Architecture=\"9\" /></lar:And></upd:IsInstalled>",
    ));
    entries.push(detectoid(
        ids::DETECTOID_M365_INSTALLED,
        "Microsoft 365 Apps installed",
        "Microsoft 365 Apps installiert",
        "<upd:IsInstalled><bar:RegKeyExists Key=\"HKEY_LOCAL_MACHINE\" Subkey=\"SOFTWARE\\Microsoft\\Office\\ClickToRun\\Configuration\" /></upd:IsInstalled>",
    ));
    entries
}

/// A software update with English and German text, one file and its product's detectoid.
#[allow(clippy::too_many_arguments)]
fn update(
    id: &str,
    kb: &str,
    en: &str,
    de: &str,
    product: &str,
    classification: &str,
    file_size: u64,
    reboot: RebootBehavior,
) -> FixtureUpdate {
    let mut update = FixtureUpdate::software(id, kb, en, product, classification);
    update.localized[0].description = format!(
        "Install this update to resolve issues in {}. For a complete listing of the issues that are included in this update, see the associated Microsoft Knowledge Base article. After you install this item, you may have to restart your computer.",
        product_name(product)
    );
    update.localized.push(LocalizedText::new(
        "de",
        de,
        "Installieren Sie dieses Update, um Probleme zu beheben. Eine vollständige Liste der Probleme finden Sie im zugehörigen Microsoft Knowledge Base-Artikel. Nach der Installation müssen Sie den Computer möglicherweise neu starten.",
    ));
    update.files[0].size = file_size;
    update.installation_reboot = Some(reboot);
    update.prerequisites = match product {
        ids::WINDOWS_11 => vec![ids::DETECTOID_WINDOWS_11_X64.to_owned()],
        ids::MICROSOFT_365_APPS => vec![ids::DETECTOID_M365_INSTALLED.to_owned()],
        _ => Vec::new(),
    };
    update
}

fn product_name(product: &str) -> &'static str {
    match product {
        ids::WINDOWS_11 => "Windows 11",
        ids::WINDOWS_SERVER_2022 => "Windows Server 2022",
        _ => "Microsoft 365 Apps",
    }
}

fn security(
    mut update: FixtureUpdate,
    severity: MsrcSeverity,
    bulletin: &str,
    cves: &[&str],
) -> FixtureUpdate {
    update.msrc_severity = Some(severity);
    update.security_bulletin_id = Some(bulletin.to_owned());
    update.cve_ids = cves.iter().map(|cve| (*cve).to_owned()).collect();
    update
}

impl FixtureCatalog {
    /// The sample catalog described in the [`crate::sample`] module docs.
    pub fn sample() -> Self {
        use MsrcSeverity::*;
        use RebootBehavior::*;
        let mut updates = categories_and_detectoids();

        updates.push(security(
            update(ids::KB_CUMULATIVE_OLD, "5033375",
                "2023-12 Cumulative Update for Windows 11 Version 23H2 for x64-based Systems (KB5033375)",
                "2023-12 Kumulatives Update für Windows 11 Version 23H2 für x64-basierte Systeme (KB5033375)",
                ids::WINDOWS_11, ids::SECURITY_UPDATES, 245_771, CanRequestReboot),
            Important, "MS23-DEC", &["CVE-2023-35628"],
        ));
        let mut cumulative = security(
            update(
                ids::KB_CUMULATIVE_NEW,
                "5034123",
                "2024-01 Cumulative Update for Windows 11 Version 23H2 for x64-based Systems (KB5034123)",
                "2024-01 Kumulatives Update für Windows 11 Version 23H2 für x64-basierte Systeme (KB5034123)",
                ids::WINDOWS_11,
                ids::SECURITY_UPDATES,
                312_577,
                CanRequestReboot,
            ),
            Critical,
            "MS24-JAN",
            &["CVE-2024-20674", "CVE-2024-20700"],
        );
        cumulative.superseded_update_ids = vec![ids::KB_CUMULATIVE_OLD.to_owned()];
        cumulative.files.push(FixtureFile {
            file_name: "windows11.0-kb5034123-x64.psf".to_owned(),
            size: 98_305,
            modified: "2024-01-09T17:00:00Z".to_owned(),
        });
        updates.push(cumulative);

        let mut ssu = security(
            update(
                ids::SERVER_SSU,
                "5034439",
                "2024-01 Servicing Stack Update for Microsoft server operating system version 21H2 for x64-based Systems (KB5034439)",
                "2024-01 Wartungsstapelupdate für Microsoft Server-Betriebssystem, Version 21H2 für x64-basierte Systeme (KB5034439)",
                ids::WINDOWS_SERVER_2022,
                ids::SECURITY_UPDATES,
                65_537,
                NeverReboots,
            ),
            Low,
            "MS24-JAN",
            &["CVE-2024-21302"],
        );
        ssu.explicitly_deployable = false;
        updates.push(ssu);
        let mut server_cumulative = security(
            update(
                ids::SERVER_CUMULATIVE,
                "5034129",
                "2024-01 Cumulative Update for Microsoft server operating system version 21H2 for x64-based Systems (KB5034129)",
                "2024-01 Kumulatives Update für Microsoft Server-Betriebssystem, Version 21H2 für x64-basierte Systeme (KB5034129)",
                ids::WINDOWS_SERVER_2022,
                ids::SECURITY_UPDATES,
                0,
                CanRequestReboot,
            ),
            Critical,
            "MS24-JAN",
            &["CVE-2024-20674"],
        );
        server_cumulative.files.clear();
        server_cumulative.bundled_updates = vec![RevisionRef {
            update_id: ids::SERVER_SSU.to_owned(),
            revision_number: 200,
        }];
        server_cumulative.bundled_in_at_least_one = true;
        updates.push(server_cumulative);

        let mut definitions = update(
            ids::DEFENDER_DEFINITIONS,
            "2267602",
            "Security Intelligence Update for Microsoft Defender Antivirus - KB2267602 (Version 1.403.1234.0)",
            "Security Intelligence-Update für Microsoft Defender Antivirus – KB2267602 (Version 1.403.1234.0)",
            ids::WINDOWS_11,
            ids::DEFINITION_UPDATES,
            131_071,
            NeverReboots,
        );
        definitions
            .products
            .push(ids::WINDOWS_SERVER_2022.to_owned());
        updates.push(definitions);

        let mut m365_security = security(
            update(
                ids::M365_SECURITY,
                "5002537",
                "Security Update for Microsoft 365 Apps (KB5002537)",
                "Sicherheitsupdate für Microsoft 365 Apps (KB5002537)",
                ids::MICROSOFT_365_APPS,
                ids::SECURITY_UPDATES,
                77_777,
                CanRequestReboot,
            ),
            Moderate,
            "MS24-JAN",
            &["CVE-2024-20677"],
        );
        m365_security.uninstallation_reboot = Some(NeverReboots);
        updates.push(m365_security);

        updates.push(update(
            ids::OUT_OF_BAND_CRITICAL,
            "5034204",
            "Update for Windows 11 Version 23H2 for x64-based Systems (KB5034204)",
            "Update für Windows 11 Version 23H2 für x64-basierte Systeme (KB5034204)",
            ids::WINDOWS_11,
            ids::CRITICAL_UPDATES,
            54_321,
            AlwaysRequiresReboot,
        ));
        updates.push(update(
            ids::FEATURE_EXPERIENCE_PACK,
            "5034848",
            "Windows Feature Experience Pack 1000.22681.1000.0 for Windows 11 (KB5034848)",
            "Windows Feature Experience Pack 1000.22681.1000.0 für Windows 11 (KB5034848)",
            ids::WINDOWS_11,
            ids::FEATURE_PACKS,
            40_960,
            CanRequestReboot,
        ));
        let mut msrt = update(
            ids::MSRT,
            "890830",
            "Windows Malicious Software Removal Tool x64 - v5.120 (KB890830)",
            "Windows-Tool zum Entfernen bösartiger Software x64 – v5.120 (KB890830)",
            ids::WINDOWS_11,
            ids::UPDATE_ROLLUPS,
            81_920,
            CanRequestReboot,
        );
        msrt.products.push(ids::WINDOWS_SERVER_2022.to_owned());
        updates.push(msrt);
        let mut tool = update(
            ids::WSL_TOOL,
            "5034901",
            "Windows Subsystem for Linux Update Tool for Windows 11 (KB5034901)",
            "Windows-Subsystem für Linux Updatetool für Windows 11 (KB5034901)",
            ids::WINDOWS_11,
            ids::TOOLS,
            20_481,
            NeverReboots,
        );
        tool.uninstallation_reboot = Some(NeverReboots);
        updates.push(tool);

        for (id, arch, size) in [
            (ids::M365_BUNDLE_X86, "x86", 150_001),
            (ids::M365_BUNDLE_X64, "x64", 160_002),
        ] {
            let mut child = update(
                id,
                "5002560",
                &format!(
                    "Microsoft 365 Apps Update - Current Channel Version 2312 (Build 17126.20132) {arch}"
                ),
                &format!(
                    "Microsoft 365 Apps-Update – Aktueller Kanal Version 2312 (Build 17126.20132) {arch}"
                ),
                ids::MICROSOFT_365_APPS,
                ids::UPDATES,
                size,
                NeverReboots,
            );
            child.files[0].file_name = format!("m365apps-2312-17126.20132-{arch}.cab");
            child.explicitly_deployable = false;
            updates.push(child);
        }
        let mut bundle = update(
            ids::M365_BUNDLE,
            "5002560",
            "Microsoft 365 Apps Update - Current Channel Version 2312 (Build 17126.20132)",
            "Microsoft 365 Apps-Update – Aktueller Kanal Version 2312 (Build 17126.20132)",
            ids::MICROSOFT_365_APPS,
            ids::UPDATES,
            0,
            NeverReboots,
        );
        bundle.files.clear();
        bundle.bundled_updates = [ids::M365_BUNDLE_X86, ids::M365_BUNDLE_X64]
            .map(|child| RevisionRef {
                update_id: child.to_owned(),
                revision_number: 200,
            })
            .to_vec();
        updates.push(bundle);

        let mut upgrade = update(
            ids::WINDOWS_11_UPGRADE,
            "",
            "Windows 11, version 23H2 x64 2024-01B",
            "Windows 11, Version 23H2 x64 2024-01B",
            ids::WINDOWS_11,
            ids::UPGRADES,
            524_287,
            AlwaysRequiresReboot,
        );
        upgrade.kb_article_id = None;
        upgrade.files[0].file_name = "windows11.0-23h2-x64-en-us.esd".to_owned();
        upgrade.eula = Some(FixtureEula {
            eula_id: ids::WINDOWS_11_EULA.to_owned(),
            file_name: "eula-windows11-23h2-en.txt".to_owned(),
            size: 12_289,
            language: "en".to_owned(),
        });
        updates.push(upgrade);

        let mut driver = update(
            ids::INTEL_WIFI_DRIVER,
            "",
            "Intel Corporation - Net - 22.250.0.2",
            "Intel Corporation - Net - 22.250.0.2",
            ids::WINDOWS_11,
            ids::DRIVERS,
            2_097_153,
            CanRequestReboot,
        );
        driver.kind = UpdateKind::Driver;
        driver.kb_article_id = None;
        driver.files[0].file_name = "netwtw08-22.250.0.2.cab".to_owned();
        driver.applicability_rules.clear();
        driver.driver = Some(DriverInfo {
            hardware_id: "pci\\ven_8086&dev_2723".to_owned(),
            manufacturer: "Intel".to_owned(),
            class: "Net".to_owned(),
            version_date: "2023-10-10".to_owned(),
            version: "22.250.0.2".to_owned(),
        });
        updates.push(driver);

        Self { updates }
    }
}
