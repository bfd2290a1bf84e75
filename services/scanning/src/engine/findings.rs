//! One device's findings as ids into the index and positions in its inventory, read through borrowed views; no string is copied until something needs it owned.
//!
//! A synthetic device that is far behind needs ~90 required updates and ~590 vulnerabilities, which
//! as owned [`DeviceFindings`] are ~2,900 separate strings and vectors. The service only encodes
//! them into a `ScanCompleted` payload (see `crate::scan_payload`), so [`Findings`] keeps four
//! vectors of numbers and lends out `&str`s from the index and the device instead;
//! [`Findings::to_device_findings`] builds the owned form where one is wanted.

use super::evaluate::{Hit, HitKind};
use super::index::{Matching, MatchingIndex};
use super::{DeviceFindings, DeviceInventory, RequiredUpdate, Vulnerability};

/// What one device needs, borrowed from the index it was evaluated against and its inventory.
#[derive(Debug, Clone)]
pub struct Findings<'a> {
    pub(crate) index: &'a MatchingIndex,
    pub(crate) device: &'a DeviceInventory,
    /// In output order (see [`DeviceFindings::required`]); each hit owns a range of `cves`.
    pub(crate) required: Vec<Hit>,
    /// The update id of each of `required`, looked up once: a device's vulnerabilities name them
    /// ~650 times, and each lookup through the update's slot is two cache misses.
    pub(crate) update_ids: Vec<&'a str>,
    /// CVE ids; each hit's range is sorted in CVE order.
    pub(crate) cves: Vec<u32>,
    /// (CVE id, position in `required`) in vulnerability order: a CVE's entries are adjacent,
    /// sorted by update id, one per update.
    pub(crate) exposures: Vec<(u32, u32)>,
    pub(crate) problems: Vec<String>,
}

/// A required update, borrowed (the fields of [`RequiredUpdate`]).
#[derive(Debug, Clone, Copy)]
pub struct RequiredView<'a> {
    pub update_id: &'a str,
    pub package_or_product: &'a str,
    pub installed_version: &'a str,
    pub required_version: &'a str,
    pub architecture: &'a str,
    pub known_exploited: bool,
    index: &'a MatchingIndex,
    cves: &'a [u32],
}

impl<'a> RequiredView<'a> {
    /// Sorted by CVE id, as in [`RequiredUpdate::cve_ids`].
    pub fn cve_ids(&self) -> impl ExactSizeIterator<Item = &'a str> + Clone + 'a {
        let index = self.index;
        self.cves.iter().map(move |&cve| index.cves.name(cve))
    }
}

/// A vulnerability, borrowed (the fields of [`Vulnerability`]).
#[derive(Debug, Clone, Copy)]
pub struct VulnerabilityView<'a> {
    pub cve_id: &'a str,
    pub known_exploited: bool,
    update_ids: &'a [&'a str],
    /// This CVE's run of [`Findings::exposures`].
    exposures: &'a [(u32, u32)],
}

impl<'a> VulnerabilityView<'a> {
    /// Ids of the required updates that fix it, sorted, as in [`Vulnerability::fixed_by`].
    pub fn fixed_by(&self) -> impl ExactSizeIterator<Item = &'a str> + Clone + 'a {
        let update_ids = self.update_ids;
        self.exposures
            .iter()
            .map(move |&(_, position)| update_ids.get(position as usize).copied().unwrap_or(""))
    }
}

impl<'a> VulnerabilityView<'a> {
    /// Positions in [`Findings::required`] of the updates that fix it, in the order of
    /// [`VulnerabilityView::fixed_by`] (what a `ScanCompleted` stores since schema version 2).
    pub fn fixed_by_required(&self) -> impl ExactSizeIterator<Item = u32> + Clone + 'a {
        self.exposures.iter().map(|&(_, position)| position)
    }
}

impl<'a> Findings<'a> {
    /// The required updates, known-exploited first, then by package or product, architecture and
    /// update id.
    pub fn required(&self) -> impl ExactSizeIterator<Item = RequiredView<'_>> + '_ {
        self.required
            .iter()
            .zip(&self.update_ids)
            .map(|(hit, &update_id)| self.view(hit, update_id))
    }

    /// Every CVE of the required updates, known-exploited first, then in CVE id order.
    pub fn vulnerabilities(&self) -> impl Iterator<Item = VulnerabilityView<'_>> + '_ {
        self.exposures.chunk_by(|a, b| a.0 == b.0).map(|exposures| {
            let cve = exposures.first().map_or(0, |e| e.0);
            VulnerabilityView {
                cve_id: self.index.cves.name(cve),
                known_exploited: self.index.is_known_exploited(cve),
                update_ids: &self.update_ids,
                exposures,
            }
        })
    }

    pub fn required_count(&self) -> usize {
        self.required.len()
    }

    /// Distinct CVEs across the required updates.
    pub fn vulnerability_count(&self) -> usize {
        self.vulnerabilities().count()
    }

    /// Inventory entries that could not be evaluated (see [`DeviceFindings::problems`]).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The owned form, every string copied.
    pub fn to_device_findings(&self) -> DeviceFindings {
        DeviceFindings {
            required: self
                .required()
                .map(|r| RequiredUpdate {
                    update_id: r.update_id.to_owned(),
                    package_or_product: r.package_or_product.to_owned(),
                    installed_version: r.installed_version.to_owned(),
                    required_version: r.required_version.to_owned(),
                    architecture: r.architecture.to_owned(),
                    cve_ids: r.cve_ids().map(str::to_owned).collect(),
                    known_exploited: r.known_exploited,
                })
                .collect(),
            vulnerabilities: self
                .vulnerabilities()
                .map(|v| Vulnerability {
                    cve_id: v.cve_id.to_owned(),
                    known_exploited: v.known_exploited,
                    fixed_by: v.fixed_by().map(str::to_owned).collect(),
                })
                .collect(),
            problems: self.problems.clone(),
        }
    }

    fn view<'f>(&'f self, hit: &Hit, update_id: &'f str) -> RequiredView<'f> {
        let index = self.index;
        let (package_or_product, architecture) = hit.label(index, self.device);
        let (installed_version, required_version) = match hit.what {
            HitKind::Debian {
                package,
                name,
                index: candidate,
            } => (
                self.device
                    .packages
                    .get(package)
                    .map_or("", |p| p.version.as_str()),
                index
                    .candidates
                    .get(name as usize)
                    .and_then(|list| list.get(candidate))
                    .map_or("", |c| c.version.as_str()),
            ),
            HitKind::Windows => match index.slots.get(hit.update as usize).map(|s| &s.matching) {
                Some(Matching::Windows(windows)) => ("", &*windows.version),
                _ => ("", ""),
            },
        };
        RequiredView {
            update_id,
            package_or_product,
            installed_version,
            required_version,
            architecture,
            known_exploited: hit.known_exploited,
            index,
            cves: self.cves.get(hit.cves.clone()).unwrap_or(&[]),
        }
    }
}
