//! Evaluating one device against the index: the Debian and Windows rules, with per-thread scratch space so that only the output is allocated.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::ops::Range;

use patchbay_debian::Architecture;

use super::findings::Findings;
use super::index::{ALL, Candidate, Matching, MatchingIndex, kb_key};
use super::version::{VersionView, version_error};
use super::{DeviceFindings, DeviceInventory};

/// Architecture slot of a native architecture no update uses.
const UNKNOWN_NATIVE: u32 = u32::MAX;

/// Buffers reused from one device to the next; one per thread.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    hits: Vec<Hit>,
    /// The CVE ids of the hits; each hit owns a range.
    cves: Vec<u32>,
    /// Packed (known-exploited, CVE rank, entry); see [`exposure`].
    exposures: Vec<u64>,
    /// (CVE id, position of a required update) of each exposure; see [`exposure`].
    entries: Vec<(u32, u32)>,
    /// Suite ids the device uses.
    suite_used: Vec<bool>,
    windows: WindowsScratch,
}

/// Per-update and per-product marks for the Windows rules, valid when equal to `stamp`, so that
/// nothing needs clearing between devices.
#[derive(Debug, Default)]
struct WindowsScratch {
    stamp: u32,
    installed: Vec<u32>,
    considered: Vec<u32>,
    product_used: Vec<u32>,
    /// The supersession walk's visited marks, valid when equal to `walk`.
    walk: u32,
    visited: Vec<u32>,
    stack: Vec<u32>,
}

impl WindowsScratch {
    /// Starts a device: sizes the marks to the index and takes a fresh stamp.
    fn begin(&mut self, updates: usize, products: usize) {
        self.installed.resize(updates, 0);
        self.considered.resize(updates, 0);
        self.product_used.resize(products, 0);
        self.stamp = next_stamp(
            self.stamp,
            &mut [
                &mut self.installed,
                &mut self.considered,
                &mut self.product_used,
            ],
        );
    }

    fn begin_walk(&mut self, updates: usize) {
        self.visited.resize(updates, 0);
        self.walk = next_stamp(self.walk, &mut [&mut self.visited]);
        self.stack.clear();
    }
}

/// The stamp after `stamp`, clearing the marks when the counter wraps (stamp 0 is never valid).
fn next_stamp(stamp: u32, marks: &mut [&mut Vec<u32>]) -> u32 {
    match stamp.checked_add(1) {
        Some(next) => next,
        None => {
            for mark in marks {
                mark.fill(0);
            }
            1
        }
    }
}

/// A required update found for the device.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    /// Slot of the update.
    pub(crate) update: u32,
    pub(crate) what: HitKind,
    /// Range of `Scratch::cves` (and then of `Findings::cves`).
    pub(crate) cves: Range<usize>,
    pub(crate) known_exploited: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum HitKind {
    /// The device's package at this position, and the candidate at `index` of its name's list.
    Debian {
        package: usize,
        name: u32,
        index: usize,
    },
    Windows,
}

impl Hit {
    /// The package name and installed architecture, or the Windows update's KB article.
    pub(crate) fn label<'a>(
        &self,
        index: &'a MatchingIndex,
        device: &'a DeviceInventory,
    ) -> (&'a str, &'a str) {
        match self.what {
            HitKind::Debian { package, .. } => device
                .packages
                .get(package)
                .map_or(("", ""), |p| (p.name.as_str(), p.architecture.as_str())),
            HitKind::Windows => match index.slots.get(self.update as usize).map(|s| &s.matching) {
                Some(Matching::Windows(windows)) => (&windows.kb_article, ""),
                _ => ("", ""),
            },
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl MatchingIndex {
    /// The updates `device` requires and the vulnerabilities it is exposed to (see
    /// `docs/scanning-engine.md` for the rules), every string owned.
    pub fn evaluate(&self, device: &DeviceInventory) -> DeviceFindings {
        self.findings(device).to_device_findings()
    }

    /// What [`MatchingIndex::evaluate`] finds, borrowed from the index and the device.
    pub fn findings<'a>(&'a self, device: &'a DeviceInventory) -> Findings<'a> {
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.evaluate_with(device, &mut scratch),
            Err(_) => self.evaluate_with(device, &mut Scratch::default()),
        })
    }

    pub(crate) fn evaluate_with<'a>(
        &'a self,
        device: &'a DeviceInventory,
        scratch: &mut Scratch,
    ) -> Findings<'a> {
        scratch.hits.clear();
        scratch.cves.clear();
        let mut problems = Vec::new();
        self.debian_hits(device, scratch, &mut problems);
        if !device.windows_products.is_empty() {
            self.windows_hits(device, scratch);
        }
        self.collect(device, scratch, problems)
    }

    fn debian_hits(
        &self,
        device: &DeviceInventory,
        scratch: &mut Scratch,
        problems: &mut Vec<String>,
    ) {
        let Scratch {
            hits,
            cves,
            suite_used,
            ..
        } = scratch;
        let every_suite = device.apt_suites.is_empty();
        suite_used.clear();
        suite_used.resize(self.suites.len(), false);
        for suite in &device.apt_suites {
            if let Some(id) = self.suites.get(suite) {
                suite_used[id as usize] = true;
            }
        }
        let native_name = device.native_architecture.as_str();
        let native = (!native_name.is_empty())
            .then(|| self.architecture(native_name).unwrap_or(UNKNOWN_NATIVE));
        // apt files `all` packages under the native architecture (see patchbay_debian::upgrade).
        let slot_of = |architecture: u32| match native {
            Some(native) if architecture == ALL => native,
            _ => architecture,
        };

        for (position, package) in device.packages.iter().enumerate() {
            let found = self.names.lookup(&package.name);
            // Most installed packages are at their newest version, and the name's entry holds it:
            // the version is valid (it is the index's) and nothing is newer, so it is not parsed,
            // and after the architecture check the package is done.
            let at_newest = found.is_some_and(|(_, newest)| package.version.as_bytes() == newest);
            let installed = if at_newest {
                None
            } else {
                let Some(installed) = VersionView::parse(&package.version) else {
                    problems.push(format!(
                        "package {}: version '{}' is not a Debian version: {}",
                        package.name,
                        package.version,
                        version_error(&package.version)
                    ));
                    continue;
                };
                Some(installed)
            };
            let architecture = package.architecture.as_str();
            let installed_slot = if architecture == native_name && native.is_some() {
                native
            } else {
                match self.architecture(architecture) {
                    Some(id) => Some(slot_of(id)),
                    None => {
                        if let Err(error) = architecture.parse::<Architecture>() {
                            problems.push(format!("package {}: {error}", package.name));
                        }
                        // A valid architecture no update uses: nothing can match it.
                        None
                    }
                }
            };
            let (Some(installed), Some(installed_slot), Some((name, _))) =
                (installed, installed_slot, found)
            else {
                continue;
            };
            let Some(list) = self.candidates.get(name as usize) else {
                continue;
            };
            // Most packages are up to date: one comparison with the newest version settles them.
            let is_newer = |c: &Candidate| installed.cmp(&c.version.view()) == Ordering::Less;
            if !list.last().is_some_and(is_newer) {
                continue;
            }
            let newer = list.partition_point(|c| !is_newer(c));
            let first_cve = cves.len();
            let mut best = None;
            let mut known_exploited = false;
            for (index, candidate) in list.iter().enumerate().skip(newer) {
                if candidate.expired
                    || slot_of(candidate.architecture) != installed_slot
                    || !(every_suite
                        || self.suite_sets[candidate.suites as usize]
                            .iter()
                            .any(|&suite| suite_used[suite as usize]))
                {
                    continue;
                }
                best = Some(index);
                for &cve in self.candidate_cves(candidate) {
                    known_exploited |= self.known_exploited[cve as usize];
                    cves.push(cve);
                }
            }
            let Some(index) = best else {
                continue;
            };
            let end = first_cve + sort_dedup(&mut cves[first_cve..]);
            cves.truncate(end);
            hits.push(Hit {
                update: list[index].update,
                what: HitKind::Debian {
                    package: position,
                    name,
                    index,
                },
                cves: first_cve..end,
                known_exploited,
            });
        }
    }

    /// Windows: an update is required when one of its products applies, its KB is not installed,
    /// it has not expired, and no update superseding it (transitively) is installed or itself
    /// applicable; so of a chain of cumulative updates only the newest applicable one is required.
    fn windows_hits(&self, device: &DeviceInventory, scratch: &mut Scratch) {
        let Scratch {
            hits,
            cves,
            windows: marks,
            ..
        } = scratch;
        marks.begin(self.slots.len(), self.products.len());
        let stamp = marks.stamp;
        for kb in &device.installed_kbs {
            if let Some(kb) = self.kbs.get(kb_key(kb)) {
                for &update in &self.kb_updates[kb as usize] {
                    marks.installed[update as usize] = stamp;
                }
            }
        }
        for product in &device.windows_products {
            if let Some(product) = self.products.get(product) {
                marks.product_used[product as usize] = stamp;
            }
        }

        for product in &device.windows_products {
            let Some(product) = self.products.get(product) else {
                continue;
            };
            for &update in &self.product_updates[product as usize] {
                if marks.considered[update as usize] == stamp {
                    continue;
                }
                marks.considered[update as usize] = stamp;
                if !self.windows_applicable(update, marks)
                    || self.superseded_on_device(update, marks)
                {
                    continue;
                }
                let first_cve = cves.len();
                let mut known_exploited = false;
                for &cve in self.slots[update as usize].cves.iter() {
                    known_exploited |= self.known_exploited[cve as usize];
                    cves.push(cve);
                }
                let end = first_cve + sort_dedup(&mut cves[first_cve..]);
                cves.truncate(end);
                hits.push(Hit {
                    update,
                    what: HitKind::Windows,
                    cves: first_cve..end,
                    known_exploited,
                });
            }
        }
    }

    /// A Windows update that applies to the device and is neither installed nor expired.
    fn windows_applicable(&self, update: u32, marks: &WindowsScratch) -> bool {
        let slot = &self.slots[update as usize];
        let Matching::Windows(windows) = &slot.matching else {
            return false;
        };
        !slot.expired
            && marks.installed[update as usize] != marks.stamp
            && windows
                .products
                .iter()
                .any(|&product| marks.product_used[product as usize] == marks.stamp)
    }

    /// True when an update superseding `update`, directly or through others, is installed or
    /// applicable (and so required itself, or superseded by one that is).
    fn superseded_on_device(&self, update: u32, marks: &mut WindowsScratch) -> bool {
        marks.begin_walk(self.slots.len());
        marks.visited[update as usize] = marks.walk;
        marks.stack.push(update);
        while let Some(current) = marks.stack.pop() {
            let slot = &self.slots[current as usize];
            for &by in slot.superseded_by.iter().chain(&slot.superseded_by_details) {
                if marks.visited[by as usize] == marks.walk {
                    continue;
                }
                marks.visited[by as usize] = marks.walk;
                if marks.installed[by as usize] == marks.stamp || self.windows_applicable(by, marks)
                {
                    return true;
                }
                marks.stack.push(by);
            }
        }
        false
    }

    /// Sorts the hits and their CVEs into output order and copies them out of the scratch space:
    /// the only allocations of an evaluation (four vectors, and the problems).
    fn collect<'a>(
        &'a self,
        device: &'a DeviceInventory,
        scratch: &mut Scratch,
        problems: Vec<String>,
    ) -> Findings<'a> {
        let Scratch {
            hits,
            cves,
            exposures,
            entries,
            ..
        } = scratch;
        // Each hit's sort key computed once: comparing them during the sort, as it did, looked
        // up the package and matched on the hit's kind twice per comparison.
        let mut order: Vec<(Reverse<bool>, &str, &str, &str, u32)> = hits
            .iter()
            .enumerate()
            .map(|(position, hit)| {
                let (label, architecture) = hit.label(self, device);
                (
                    Reverse(hit.known_exploited),
                    label,
                    architecture,
                    self.update_id(hit.update),
                    position as u32,
                )
            })
            .collect();
        order.sort_unstable();
        let required: Vec<Hit> = order
            .iter()
            .map(|&(.., position)| hits[position as usize].clone())
            .collect();
        let update_ids: Vec<&str> = order.iter().map(|&(_, _, _, id, _)| id).collect();

        // One integer per exposure: known-exploited first, then the CVE's rank, then the
        // exposure's entry in `entries` (CVE id, position of the required update), numbered in
        // position order, so that sorting compares single integers and reading an exposure back
        // needs no rank-to-CVE table.
        let ranks = self.cve_ranks();
        exposures.clear();
        entries.clear();
        for (position, hit) in required.iter().enumerate() {
            let hit_cves = &mut cves[hit.cves.clone()];
            hit_cves.sort_unstable_by_key(|&cve| ranks[cve as usize]);
            for &cve in hit_cves.iter() {
                let entry = u32::try_from(entries.len()).unwrap_or(u32::MAX);
                entries.push((cve, position as u32));
                exposures.push(exposure(
                    self.known_exploited[cve as usize],
                    ranks[cve as usize],
                    entry,
                ));
            }
        }
        exposures.sort_unstable();
        let entry_of = |exposure: u64| entries[exposure_entry(exposure)];
        // A CVE's entries by update id, one per update (two installed packages can share one).
        let mut vulnerability_order = Vec::with_capacity(exposures.len());
        for same_cve in exposures.chunk_by_mut(|&a, &b| a >> 32 == b >> 32) {
            if same_cve.len() > 1 {
                same_cve.sort_by_key(|&exposure| update_ids[entry_of(exposure).1 as usize]);
            }
            let mut last_update = None;
            for &exposure in same_cve.iter() {
                let (cve, position) = entry_of(exposure);
                let update = required[position as usize].update;
                if last_update != Some(update) {
                    vulnerability_order.push((cve, position));
                    last_update = Some(update);
                }
            }
        }
        Findings {
            index: self,
            device,
            required,
            update_ids,
            cves: cves.as_slice().to_vec(),
            exposures: vulnerability_order,
            problems,
        }
    }
}

/// An exposure of the device to the CVE of rank `rank`, described by `entry` (see `collect`),
/// packed so that integer order is (known-exploited first, rank, entry). Ranks stay below 2^31:
/// they number distinct CVEs.
fn exposure(known_exploited: bool, rank: u32, entry: u32) -> u64 {
    (u64::from(!known_exploited) << 63) | (u64::from(rank & 0x7fff_ffff) << 32) | u64::from(entry)
}

fn exposure_entry(exposure: u64) -> usize {
    (exposure as u32) as usize
}

/// Sorts `items` and moves the distinct values to its front; returns how many there are.
fn sort_dedup(items: &mut [u32]) -> usize {
    items.sort_unstable();
    let mut distinct = 0;
    for read in 0..items.len() {
        if distinct == 0 || items[read] != items[distinct - 1] {
            items[distinct] = items[read];
            distinct += 1;
        }
    }
    distinct
}

/// CVE ids by year, then number (`CVE-2024-9999` before `CVE-2024-10000`); other ids after
/// them, by their text. The engine sorts by the interned keys instead; the tests use this.
#[cfg(test)]
pub(crate) fn cve_order(a: &str, b: &str) -> Ordering {
    use super::index::cve_key;
    (cve_key(a), a).cmp(&(cve_key(b), b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposures_order_known_exploited_first_then_rank_then_entry() {
        assert_eq!(exposure_entry(exposure(false, 51_076, 90)), 90);
        assert!(exposure(true, 51_076, 9) < exposure(false, 0, 0));
        assert!(exposure(false, 3, 9) < exposure(false, 4, 0));
        assert!(exposure(false, 3, 1) < exposure(false, 3, 2));
    }
}
