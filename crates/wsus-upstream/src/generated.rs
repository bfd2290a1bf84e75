//! Large generated catalogs for benchmarks: the sample's categories plus N seeded pseudo-random software updates of 5–15 KB metadata each.

use std::fmt::Write as _;

use crate::fixture::{
    FixtureCatalog, FixtureFile, FixtureUpdate, LocalizedText, MsrcSeverity, RebootBehavior,
};
use crate::sample::{categories_and_detectoids, ids};

/// splitmix64: small, fast, good enough for fixtures.
struct FixtureRng(u64);

impl FixtureRng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn guid(&mut self) -> String {
        let (high, low) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0x0fff,
            ((low >> 48) & 0x3fff) | 0x8000,
            low & 0xffff_ffff_ffff
        )
    }
}

/// Classifications generated updates get, with weights out of 100.
const CLASSIFICATION_WEIGHTS: [(&str, &str, u64); 8] = [
    (ids::SECURITY_UPDATES, "Security Update", 40),
    (ids::UPDATES, "Update", 25),
    (ids::CRITICAL_UPDATES, "Critical Update", 10),
    (ids::DEFINITION_UPDATES, "Definition Update", 10),
    (ids::FEATURE_PACKS, "Feature Pack", 5),
    (ids::UPDATE_ROLLUPS, "Update Rollup", 5),
    (ids::TOOLS, "Tool", 3),
    (ids::SERVICE_PACKS, "Service Pack", 2),
];

const PRODUCTS: [(&str, &str); 3] = [
    (ids::WINDOWS_11, "Windows 11"),
    (ids::WINDOWS_SERVER_2022, "Windows Server 2022"),
    (ids::MICROSOFT_365_APPS, "Microsoft 365 Apps"),
];

const ENGLISH_SENTENCES: [&str; 6] = [
    "A security issue has been identified in a Microsoft software product that could affect your system. ",
    "You can help protect your system by installing this update from Microsoft. ",
    "For a complete listing of the issues that are included in this update, see the associated Microsoft Knowledge Base article. ",
    "After you install this update, you may have to restart your system. ",
    "This update improves the reliability of the servicing stack and addresses compatibility issues with line-of-business applications. ",
    "Devices that run this update receive fixes for networking, printing, storage and authentication components. ",
];

const GERMAN_SENTENCES: [&str; 4] = [
    "In einem Microsoft-Softwareprodukt wurde ein Sicherheitsproblem festgestellt, das Auswirkungen auf Ihr System haben kann. ",
    "Durch die Installation dieses Updates von Microsoft können Sie zum Schutz Ihres Systems beitragen. ",
    "Eine vollständige Liste der in diesem Update enthaltenen Probleme finden Sie im zugehörigen Microsoft Knowledge Base-Artikel. ",
    "Nach der Installation dieses Updates müssen Sie das System möglicherweise neu starten. ",
];

/// Roughly how many metadata bytes an update has before its descriptions.
const BASE_METADATA_BYTES: usize = 3_200;

fn sentences(rng: &mut FixtureRng, bank: &[&str], target_len: usize) -> String {
    let mut text = String::with_capacity(target_len + 160);
    while text.len() < target_len {
        text.push_str(bank[rng.below(bank.len() as u64) as usize]);
    }
    text.truncate(text.trim_end().len());
    text
}

impl FixtureCatalog {
    /// The sample's categories, classifications and detectoids plus `update_count` generated
    /// software updates (seeded, so the same arguments give the same catalog): spread over the
    /// three products and eight software classifications, 5–15 KB of metadata each, English and
    /// German text, one or two small content files (0.5–4.5 KB, so digests and downloads stay cheap), and about
    /// one in four superseding an earlier generated update.
    pub fn generated(update_count: usize, seed: u64) -> Self {
        let mut rng = FixtureRng(seed ^ 0x5EED_CA7A_1060_0000);
        let mut updates = categories_and_detectoids();
        let first_generated = updates.len();
        updates.reserve(update_count);
        for index in 0..update_count {
            let (product, product_name) = PRODUCTS[rng.below(3) as usize];
            let mut pick = rng.below(100);
            let (classification, label, _) = CLASSIFICATION_WEIGHTS
                .iter()
                .copied()
                .find(|&(_, _, weight)| {
                    let hit = pick < weight;
                    pick = pick.saturating_sub(weight);
                    hit
                })
                .unwrap_or(CLASSIFICATION_WEIGHTS[0]);
            let kb = 5_100_000 + index as u64;
            let month = 1 + index % 12;
            let year = 2020 + (index / 12) % 6;
            let id = rng.guid();
            let title = format!("{year}-{month:02} {label} for {product_name} (KB{kb})");
            let mut update =
                FixtureUpdate::software(&id, &kb.to_string(), &title, product, classification);

            let target = 5_000 + rng.below(10_000) as usize;
            let text_budget = target.saturating_sub(BASE_METADATA_BYTES);
            update.localized[0].description =
                sentences(&mut rng, &ENGLISH_SENTENCES, text_budget * 11 / 20);
            update.localized.push(LocalizedText::new(
                "de",
                &format!("{year}-{month:02} {label} für {product_name} (KB{kb})"),
                &sentences(&mut rng, &GERMAN_SENTENCES, text_budget * 9 / 20),
            ));
            if classification == ids::SECURITY_UPDATES {
                update.msrc_severity = Some(
                    [
                        MsrcSeverity::Critical,
                        MsrcSeverity::Important,
                        MsrcSeverity::Moderate,
                        MsrcSeverity::Low,
                    ][rng.below(4) as usize],
                );
                update.security_bulletin_id = Some(format!("MS{}-{:03}", year % 100, month));
                update.cve_ids = (0..1 + rng.below(6))
                    .map(|n| format!("CVE-{year}-{}", 20_000 + (index as u64 * 7 + n) % 9_000))
                    .collect();
            }
            update.installation_reboot = Some(
                [
                    RebootBehavior::CanRequestReboot,
                    RebootBehavior::NeverReboots,
                    RebootBehavior::AlwaysRequiresReboot,
                ][rng.below(3) as usize],
            );
            if rng.below(3) == 0 {
                update.uninstallation_reboot = Some(RebootBehavior::CanRequestReboot);
            }
            update.prerequisites = match product {
                ids::WINDOWS_11 => vec![ids::DETECTOID_WINDOWS_11_X64.to_owned()],
                ids::MICROSOFT_365_APPS => vec![ids::DETECTOID_M365_INSTALLED.to_owned()],
                _ => Vec::new(),
            };
            update.files = (0..1 + rng.below(2))
                .map(|n| FixtureFile {
                    file_name: format!("kb{kb}-{}-{n}.cab", &id[..8]),
                    size: 512 + rng.below(4 * 1_024),
                    modified: format!("{year}-{month:02}-09T17:00:00Z"),
                })
                .collect();
            let generated_so_far = updates.len() - first_generated;
            if generated_so_far > 0 && rng.below(4) == 0 {
                let back = 1 + rng.below(generated_so_far.min(500) as u64) as usize;
                let superseded = updates[updates.len() - back].update_id.clone();
                update.superseded_update_ids.push(superseded);
            }
            let mut rules = String::with_capacity(256);
            let _ = write!(
                rules,
                "<upd:IsInstalled><bar:RegKeyExists Key=\"HKEY_LOCAL_MACHINE\" Subkey=\"SOFTWARE\\Microsoft\\Updates\\KB{kb}\" /></upd:IsInstalled>\
                 <upd:IsInstallable><lar:And><bar:WindowsVersion Comparison=\"GreaterThanOrEqualTo\" MajorVersion=\"10\" /><bar:Processor Architecture=\"9\" /></lar:And></upd:IsInstallable>"
            );
            update.applicability_rules = rules;
            updates.push(update);
        }
        Self { updates }
    }
}
