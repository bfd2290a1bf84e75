//! The applicability engine: a matching index built from catalog events, and the pure evaluation of device inventories against it.
//!
//! [`MatchingIndex`] follows the catalog (`UpdatePublished`/`UpdateRevised` → [`MatchingIndex::upsert`],
//! `UpdateSuperseded` → [`MatchingIndex::supersede`], `UpdateExpired` → [`MatchingIndex::expire`],
//! `VulnerabilityPublished` → [`MatchingIndex::set_known_exploited`]) and answers, for one
//! [`DeviceInventory`], which updates the device requires and which vulnerabilities it is
//! exposed to ([`MatchingIndex::evaluate`]); [`evaluate_fleet`] does the same for many devices
//! on every core. Nothing here does I/O. The rules and the data layout are described in
//! `docs/scanning-engine.md`.

mod evaluate;
mod findings;
mod fleet;
mod index;
mod version;

#[cfg(test)]
mod real_system_tests;
#[cfg(test)]
mod reference_tests;

pub use findings::{Findings, RequiredView, VulnerabilityView};
pub use fleet::{evaluate_fleet, evaluate_fleet_with};
pub use index::{IndexStats, MatchingIndex, Unmatchable};

/// What a device reported about itself, read exactly as the agent sent it (the `Inventory`
/// message, `proto/patchbay/scanning/v1/events.proto`), so a scan copies no inventory: its Debian
/// packages and apt sources, or its Windows products and installed KB articles (a device may have
/// both).
///
/// - `native_architecture`: the dpkg native architecture, e.g. `amd64`; empty when unknown (then
///   `all` packages only match `all` updates).
/// - `packages`: [`InstalledPackage`]s as read from dpkg's `status`: name, a Debian version (one
///   that does not parse is reported in [`DeviceFindings::problems`]) and architecture (`amd64`,
///   `i386` for a foreign-architecture install, or `all`).
/// - `apt_suites`: suites the device's apt sources use, e.g. `bookworm-security`; empty means
///   every suite.
/// - `installed_kbs`: Windows KB articles, e.g. `KB5034441` (the `KB` prefix is optional).
/// - `windows_products`: ids of the Windows products that apply to the device, compared exactly.
/// - `os` is not matched on.
pub use patchbay_proto::scanning::v1::{InstalledPackage, Inventory as DeviceInventory};

/// What a device needs: its required updates, the vulnerabilities they fix, and what could not be
/// evaluated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFindings {
    /// Known-exploited first, then by package or product, architecture and update id.
    pub required: Vec<RequiredUpdate>,
    /// Every CVE of the required updates, known-exploited first, then in CVE id order.
    pub vulnerabilities: Vec<Vulnerability>,
    /// Inventory entries that could not be evaluated, e.g. a version that is not a Debian version.
    pub problems: Vec<String>,
}

/// An update the device needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredUpdate {
    pub update_id: String,
    /// The Debian package name, or the Windows update's KB article (e.g. `KB5034441`).
    pub package_or_product: String,
    /// The installed Debian version as the device reported it; empty for Windows.
    pub installed_version: String,
    /// The candidate Debian version (the update's version); for Windows the update's version
    /// field, often empty.
    pub required_version: String,
    /// The installed package's architecture (`libc6` may be required for `amd64` and `i386`);
    /// empty for Windows.
    pub architecture: String,
    /// CVEs the device is exposed to through this package: those of the candidate and of every
    /// skipped update between the installed version and the candidate. Sorted by CVE id.
    pub cve_ids: Vec<String>,
    /// True when one of `cve_ids` is in CISA's Known Exploited Vulnerabilities catalog.
    pub known_exploited: bool,
}

/// A vulnerability the device is exposed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vulnerability {
    pub cve_id: String,
    pub known_exploited: bool,
    /// Ids of the required updates that fix it, sorted.
    pub fixed_by: Vec<String>,
}
